// Unit tests of the page's modules that need no browser: node --test web/tests/unit.mjs
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import test from 'node:test';
import { Api, ApiError, savePath, scanPath } from '../src/api.js';
import { VoxelGrid } from '../src/grid.js';
import { boundaryOf, parseMultipart } from '../src/multipart.js';
import { readHeader, readLabels, readMask, writeMask } from '../src/nifti.js';
import { SlicePrompts, inferParams } from '../src/prompts.js';
import { SegmentList, splitLabels } from '../src/segments.js';

test('the grid maps file and RAS voxel indices both ways, flips and permutations included', () => {
  const shape = [4, 5, 6];
  for (const perm of [[1, 2, 3], [-1, 2, 3], [-1, -2, 3], [2, 3, 1], [-3, 1, -2]]) {
    const grid = new VoxelGrid(shape, perm);
    for (const file of [[0, 0, 0], [3, 4, 5], [1, 2, 3]]) {
      const ras = grid.toRAS(file);
      assert.deepEqual(grid.fromRAS(ras), file);
      const index = file[0] + 4 * (file[1] + 5 * file[2]);
      assert.equal(grid.start + ras.reduce((s, r, p) => s + r * grid.step[p], 0), index, `${perm} ${file}`);
    }
    assert.equal(grid.kOfRAS(grid.toRAS([0, 0, 2])[grid.rasAxisOf(2)]), 2);
  }
  assert.equal(new VoxelGrid(shape, [1, 2, 3]).promptView, 'axial');
  assert.equal(new VoxelGrid(shape, [1, 3, 2]).promptView, 'coronal');
  assert.equal(new VoxelGrid(shape, [3, 1, 2]).promptView, 'sagittal');
});

test('a view slice reads the mask along the view axes', () => {
  const grid = new VoxelGrid([2, 3, 4], [-1, 2, 3]); // LAS: i runs right to left
  const mask = new Uint8Array(24);
  mask[0 + 2 * (1 + 3 * 2)] = 1; // i 0, j 1, k 2
  const axial = grid.viewSlice(mask, 'axial', 2);
  assert.equal(axial.length, 6);
  assert.deepEqual([...axial.keys()].filter((n) => axial[n]), [1 + 2 * 1]); // RAS x = 1 - 0 = 1, y = 1
});

test('multipart replies are split at their boundary, binary parts intact', () => {
  const boundary = 'medico-abc';
  const binary = Uint8Array.from([0, 13, 10, 45, 45, 255, 1]);
  const text = (s) => new TextEncoder().encode(s);
  const body = new Uint8Array([
    ...text(`--${boundary}\r\nContent-Disposition: form-data; name="params"\r\nContent-Type: application/json\r\n\r\n{"score":0.5}\r\n`),
    ...text(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="m.nii.gz"\r\n\r\n`),
    ...binary,
    ...text(`\r\n--${boundary}--\r\n`),
  ]);
  assert.equal(boundaryOf(`multipart/form-data; boundary=${boundary}`), boundary);
  const parts = parseMultipart(body, boundary);
  assert.equal(parts.length, 2);
  assert.equal(parts[0].name, 'params');
  assert.equal(parts[0].filename, null);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(parts[0].body)), { score: 0.5 });
  assert.equal(parts[1].filename, 'm.nii.gz');
  assert.deepEqual([...parts[1].body], [...binary]);
  assert.throws(() => parseMultipart(body.subarray(0, body.length - 20), boundary), /cut short/);
});

/** A NIfTI-1 file of `shape` with uint8 or int16 voxels. */
function nifti1(shape, values, datatype = 2) {
  const size = datatype === 2 ? 1 : 2;
  const out = new Uint8Array(352 + values.length * size);
  const view = new DataView(out.buffer);
  view.setInt32(0, 348, true);
  view.setInt16(40, 3, true);
  shape.forEach((d, n) => view.setInt16(42 + 2 * n, d, true));
  view.setInt16(70, datatype, true);
  view.setInt16(72, 8 * size, true);
  view.setFloat32(108, 352, true);
  view.setFloat32(112, 2.5, true); // a scale that saving must reset
  values.forEach((v, n) => (size === 1 ? view.setUint8(352 + n, v) : view.setInt16(352 + 2 * n, v, true)));
  return out;
}

test('NIfTI masks read whole or by slice, gzip or not, and write back with their header', async () => {
  const shape = [3, 2, 4];
  const values = Array.from({ length: 24 }, (_, n) => (n % 5 === 0 ? 1 : 0));
  for (const bytes of [nifti1(shape, values), new Uint8Array(gzipSync(nifti1(shape, values))), nifti1(shape, values.map((v) => v * 7), 4)]) {
    const whole = await readMask(bytes);
    assert.deepEqual(whole.shape, shape);
    assert.deepEqual([...whole.mask], values);
    const slice = await readMask(bytes, 2);
    assert.deepEqual([...slice.mask], values.slice(12, 18));
    assert.equal(slice.header.length, 352);
  }
  const { header } = await readMask(nifti1(shape, values, 4));
  const written = await writeMask(header, Uint8Array.from(values));
  const again = await readMask(written);
  assert.deepEqual([...again.mask], values);
  const hdr = readHeader(again.header);
  assert.equal(hdr.datatype, 2);
  assert.equal(new DataView(again.header.buffer).getFloat32(112, true), 1);
  await assert.rejects(readMask(nifti1(shape, values).subarray(0, 360)), /shorter/);
});

test('a label map splits into one mask per class, gzip or not, uint8 or int16', async () => {
  const shape = [3, 2, 4];
  const values = Array.from({ length: 24 }, (_, n) => [0, 1, 2, 0, 2, 3][n % 6]); // 3: a value of no class
  for (const bytes of [nifti1(shape, values), new Uint8Array(gzipSync(nifti1(shape, values))), nifti1(shape, values, 4)]) {
    const map = await readLabels(bytes);
    assert.deepEqual(map.shape, shape);
    assert.deepEqual([...map.values], values);
    assert.equal(map.header.length, 352);
    const classes = splitLabels(map.values, { 'grey matter': 1, 'white matter': 2 });
    assert.deepEqual(classes.map((c) => [c.name, c.value, c.voxels]), [['grey matter', 1, 4], ['white matter', 2, 8]]);
    for (const c of classes) assert.deepEqual([...c.mask], values.map((v) => (v === c.value ? 1 : 0)));
  }
  assert.deepEqual(splitLabels(new Int32Array(4), { empty: 5 }).map((c) => c.voxels), [0]);
  assert.throws(() => splitLabels(new Int32Array(4), { a: 1, b: 1 }), /share/);
  assert.throws(() => splitLabels(new Int32Array(4), { background: 0 }), /positive/);
  await assert.rejects(readLabels(nifti1(shape, values).subarray(0, 360)), /shorter/);

  // Segments of the classes' names are found by name, their masks replaced whole.
  const list = new SegmentList(shape);
  const grey = list.add('grey matter');
  grey.replaceAll(splitLabels(values, { 'grey matter': 1 })[0].mask);
  assert.equal(list.byName('grey matter').voxels, 4);
});

test('prompts become the server params: clicks in their order on the slice, the last box as an inclusive roi', () => {
  const prompts = new SlicePrompts();
  prompts.addBox([27, 28], [169, 207]);
  prompts.addClick([98, 60], false);
  prompts.addBox([169, 207], [27, 28]);
  prompts.addClick([98, 130], true);
  assert.deepEqual(inferParams(prompts, 82, 'brain'), {
    clicks: [
      [98, 60, 82, 0],
      [98, 130, 82, 1],
    ],
    roi: [169, 27, 207, 28, 82, 82],
    slice: 82,
    result_extension: '.nii.gz',
    label: 'brain',
  });
  prompts.undo();
  prompts.undo();
  assert.deepEqual(prompts.box.from, [27, 28]);
  prompts.clear();
  assert.ok(prompts.empty);
  assert.equal(inferParams(prompts, 3, 'x').roi, undefined);
});

test('segments keep unique names and their voxel counts', () => {
  const list = new SegmentList([2, 2, 3]);
  const a = list.add('liver');
  const b = list.add('liver');
  assert.equal(b.name, 'liver (2)');
  assert.equal(list.rename(b.id, 'liver'), 'liver (2)');
  a.replaceSlice(1, Uint8Array.from([1, 0, 1, 1]));
  assert.equal(a.voxels, 3);
  a.replaceSlice(1, null);
  assert.equal(a.voxels, 0);
  a.replaceAll(new Uint8Array(12).fill(1));
  assert.equal(a.voxels, 12);
  list.remove(b.id);
  assert.equal(list.active, a);
});

test('the --data endpoints: paths encoded into the query, no folder (404) is null, the key and the body sent', async () => {
  assert.equal(scanPath('open', 'sub dir/scan #1.nii.gz'), '/annotator/open?scan=sub%20dir%2Fscan%20%231.nii.gz');
  assert.equal(scanPath('scan', 'series_ct5n'), '/annotator/scan?scan=series_ct5n');
  assert.equal(savePath('a+b', 'liver & spleen (2)'), '/annotator/save?session_id=a%2Bb&label=liver%20%26%20spleen%20(2)');
  const calls = [];
  const replies = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    calls.push({ url, init });
    return replies.shift();
  };
  try {
    const api = new Api('http://h:1/');
    api.key = 'k';
    const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    replies.push(json(200, { scans: ['a.nii.gz', 'sub/b.nrrd', 'series_ct5n'] }));
    assert.deepEqual(await api.scans(), ['a.nii.gz', 'sub/b.nrrd', 'series_ct5n']);
    assert.equal(calls[0].url, 'http://h:1/annotator/scans');
    assert.equal(calls[0].init.headers['X-API-Key'], 'k');
    replies.push(json(404, { detail: 'GET /annotator/scans: not served' }));
    assert.equal(await api.scans(), null);
    replies.push(json(500, { detail: 'broken' }));
    await assert.rejects(api.scans(), (e) => e instanceof ApiError && e.status === 500 && /broken/.test(e.message));
    replies.push(json(422, { detail: 'a DICOM series folder' }));
    await assert.rejects(api.scanBytes('series_ct5n'), (e) => e instanceof ApiError && e.status === 422);
    replies.push(new Response(Uint8Array.from([1, 2, 3]), { headers: { 'content-type': 'application/octet-stream' } }));
    assert.deepEqual([...(await api.scanBytes('a.nii.gz')).bytes], [1, 2, 3]);
    replies.push(json(200, { session_id: 's', session_info: { meta: {} } }));
    await api.openScan('sub/b.nrrd');
    assert.equal(calls.at(-1).url, 'http://h:1/annotator/open?scan=sub%2Fb.nrrd');
    assert.equal(calls.at(-1).init.method, 'PUT');
    replies.push(json(200, { saved: 'sub/b_liver.nii.gz' }));
    assert.deepEqual(await api.saveNextToScan('s', 'liver', Uint8Array.from([31, 139])), { saved: 'sub/b_liver.nii.gz' });
    const save = calls.at(-1);
    assert.equal(save.url, 'http://h:1/annotator/save?session_id=s&label=liver');
    assert.equal(save.init.method, 'POST');
    assert.equal(save.init.headers['Content-Type'], 'application/octet-stream');
    assert.equal(save.init.headers['X-API-Key'], 'k');
    assert.deepEqual([...new Uint8Array(await new Response(save.init.body).arrayBuffer())], [31, 139]);
  } finally {
    globalThis.fetch = realFetch;
  }
});
