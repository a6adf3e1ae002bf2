/**
 * DICOM for the viewer: a series (its files, or one .zip of them) read into a NIfTI-1 file in the
 * server's voxel order, so the page shows and prompts the very grid the server segments (medico's
 * io/src/dicom_io.rs: i along a row (the columns), j down the rows, k the slices sorted along the normal
 * of their orientation, modality rescale applied). Uncompressed transfer syntaxes only (implicit and
 * explicit VR little endian) and single-frame files; anything else is refused with the reason. The server
 * reads more (JPEG, JPEG-LS, JPEG 2000, RLE, multi-frame): such a session is still segmented, only not
 * shown here.
 */

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
/** VRs whose explicit encoding has 2 reserved bytes and a 4-byte length. */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQUENCE_END = 0xfffee0dd;
const PIXEL_DATA = 0x7fe00010;
/** The attributes read, by tag: [name, kind]. */
const WANTED = {
  0x00020010: ['transferSyntax', 'text'],
  0x00180050: ['sliceThickness', 'number'],
  0x00180088: ['sliceSpacing', 'number'],
  0x0020000e: ['seriesUid', 'text'],
  0x00200032: ['position', 'numbers'],
  0x00200037: ['orientation', 'numbers'],
  0x00280002: ['samplesPerPixel', 'us'],
  0x00280008: ['frames', 'number'],
  0x00280010: ['rows', 'us'],
  0x00280011: ['columns', 'us'],
  0x00280030: ['spacing', 'numbers'],
  0x00280100: ['bitsAllocated', 'us'],
  0x00280103: ['pixelRepresentation', 'us'],
  0x00281052: ['intercept', 'number'],
  0x00281053: ['slope', 'number'],
};

/**
 * A DICOM series as a NIfTI-1 file (float32 voxels) on the server's grid.
 * @param {File[]} files the series' files, or one .zip holding them
 * @returns {Promise<Uint8Array>}
 */
export async function dicomToNifti(files) {
  const entries = files.length === 1 && /\.zip$/i.test(files[0].name)
    ? await unzip(new Uint8Array(await files[0].arrayBuffer()))
    : await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
  const images = entries
    .filter((e) => !/(^|\/)\./.test(e.name) && !/(^|\/)DICOMDIR$/i.test(e.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => parseImage(e.bytes, e.name));
  if (!images.length) throw new Error('no DICOM files');
  return niftiOf(assemble(images));
}

/** The attributes and pixel data of one single-frame image. */
function parseImage(bytes, name) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = {};
  let at = 0;
  let syntax = IMPLICIT_LE;
  if (bytes.length > 132 && text(bytes, 128, 4) === 'DICM') {
    at = read(view, bytes, 132, true, found, (tag) => tag >>> 16 !== 0x0002);
    syntax = found.transferSyntax || EXPLICIT_LE;
  } else if (/^[A-Z]{2}$/.test(text(bytes, 4, 2))) syntax = EXPLICIT_LE; // no preamble, explicit VR
  if (syntax !== IMPLICIT_LE && syntax !== EXPLICIT_LE) {
    throw new Error(`${name}: transfer syntax ${syntax} (compressed or big endian) is not shown here`);
  }
  read(view, bytes, at, syntax === EXPLICIT_LE, found, () => false);
  if (!found.pixels) throw new Error(`${name}: no pixel data`);
  for (const key of ['rows', 'columns', 'bitsAllocated']) if (!found[key]) throw new Error(`${name}: no ${key}`);
  if ((found.samplesPerPixel || 1) !== 1) throw new Error(`${name}: colour images are not shown here`);
  if ((found.frames || 1) !== 1) throw new Error(`${name}: multi-frame DICOM is not shown here`);
  return { name, ...found };
}

/**
 * Reads elements from `at` into `found` until the pixel data (kept as `pixels`) or `stop(tag)`.
 * @returns {number} where it stopped
 */
function read(view, bytes, at, explicit, found, stop) {
  while (at + 8 <= bytes.length) {
    const tag = tagAt(view, at);
    if (stop(tag)) return at;
    const el = element(view, bytes, at, explicit);
    if (tag === PIXEL_DATA) {
      if (el.length === 0xffffffff) throw new Error('encapsulated (compressed) pixel data is not shown here');
      found.pixels = bytes.subarray(el.value, el.value + el.length);
      return el.next;
    }
    const wanted = WANTED[tag];
    if (wanted && el.length !== 0xffffffff) found[wanted[0]] = decode(view, bytes, el.value, el.length, wanted[1]);
    at = el.next;
  }
  return at;
}

/** One element's header at `at`: {value (offset), length, next (offset after it)}. */
function element(view, bytes, at, explicit) {
  const tag = tagAt(view, at);
  let value;
  let length;
  if (tag === ITEM || tag === ITEM_END || tag === SEQUENCE_END || !explicit) {
    length = view.getUint32(at + 4, true);
    value = at + 8;
  } else {
    const vr = text(bytes, at + 4, 2);
    if (LONG_VRS.has(vr)) {
      length = view.getUint32(at + 8, true);
      value = at + 12;
    } else {
      length = view.getUint16(at + 6, true);
      value = at + 8;
    }
  }
  const next = length === 0xffffffff ? (tag === PIXEL_DATA ? value : skipUndefined(view, bytes, value, explicit)) : value + length;
  return { value, length, next };
}

/** Skips a value of undefined length (a sequence, or an item): returns the offset after its delimiter. */
function skipUndefined(view, bytes, at, explicit) {
  while (at + 8 <= bytes.length) {
    const tag = tagAt(view, at);
    if (tag === SEQUENCE_END || tag === ITEM_END) return at + 8;
    at = element(view, bytes, at, explicit).next;
  }
  throw new Error('a sequence runs past the end of the file');
}

function tagAt(view, at) {
  return ((view.getUint16(at, true) << 16) | view.getUint16(at + 2, true)) >>> 0;
}

function text(bytes, at, length) {
  return String.fromCharCode(...bytes.subarray(at, at + length));
}

function decode(view, bytes, at, length, kind) {
  if (kind === 'us') return view.getUint16(at, true);
  const value = text(bytes, at, length).replace(/[\0\s]+$/, '').trim();
  if (kind === 'text') return value;
  const numbers = value.split('\\').map(Number);
  return kind === 'number' ? numbers[0] : numbers;
}

/** The slices sorted along the normal, the affine (RAS) and the float voxels, as the server builds them. */
function assemble(images) {
  const first = images[0];
  for (const image of images) {
    if (image.seriesUid !== first.seriesUid) throw new Error(`${image.name}: another series than ${first.name}'s`);
    if (image.rows !== first.rows || image.columns !== first.columns) throw new Error(`${image.name}: ${image.columns}x${image.rows} in a series of ${first.columns}x${first.rows}`);
  }
  const orientation = first.orientation || [1, 0, 0, 0, 1, 0];
  const row = orientation.slice(0, 3);
  const col = orientation.slice(3, 6);
  const normal = [row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2], row[0] * col[1] - row[1] * col[0]];
  const along = (image) => image.position.reduce((s, p, n) => s + p * normal[n], 0);
  if (images.length > 1) {
    if (images.some((image) => !image.position)) throw new Error('slices without Image Position (Patient)');
    images.sort((a, b) => along(a) - along(b));
  }
  const [rowSpacing, colSpacing] = first.spacing || [1, 1];
  const origin = first.position || [0, 0, 0];
  const n = images.length;
  const step = n > 1
    ? images[n - 1].position.map((p, a) => (p - origin[a]) / (n - 1))
    : normal.map((v) => v * (first.sliceSpacing || first.sliceThickness || 1));
  const columnsLPS = [row.map((v) => v * colSpacing), col.map((v) => v * rowSpacing), step, origin];
  const affine = [0, 1, 2].map((r) => columnsLPS.map((c) => (r < 2 ? -c[r] : c[r]) + 0)); // LPS -> RAS rows
  const slab = first.rows * first.columns;
  const voxels = new Float32Array(slab * n);
  images.forEach((image, k) => voxels.set(pixelValues(image, slab), k * slab));
  return { shape: [first.columns, first.rows, n], affine, voxels };
}

/** One image's values, rescaled; rows of `columns` pixels as stored, so i = column and j = row. */
function pixelValues(image, count) {
  const bytes = image.pixels;
  const size = image.bitsAllocated / 8;
  if (![1, 2, 4].includes(size) || bytes.length < count * size) throw new Error(`${image.name}: ${image.bitsAllocated}-bit pixels, ${bytes.length} bytes for ${count} pixels`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * size);
  const signed = image.pixelRepresentation === 1;
  const get = { 1: signed ? 'getInt8' : 'getUint8', 2: signed ? 'getInt16' : 'getUint16', 4: signed ? 'getInt32' : 'getUint32' }[size];
  const [slope, intercept] = [image.slope ?? 1, image.intercept ?? 0];
  const out = new Float32Array(count);
  for (let n = 0; n < count; n++) out[n] = view[get](n * size, true) * slope + intercept;
  return out;
}

/** A NIfTI-1 file of float32 voxels with `affine` as its sform. */
function niftiOf({ shape, affine, voxels }) {
  const out = new Uint8Array(352 + voxels.byteLength);
  const view = new DataView(out.buffer);
  view.setInt32(0, 348, true);
  [3, ...shape, 1, 1, 1, 1].forEach((d, n) => view.setInt16(40 + 2 * n, d, true));
  view.setInt16(70, 16, true); // DT_FLOAT32
  view.setInt16(72, 32, true);
  const lengths = [0, 1, 2].map((c) => Math.hypot(affine[0][c], affine[1][c], affine[2][c]));
  [1, ...lengths, 1, 1, 1, 1].forEach((d, n) => view.setFloat32(76 + 4 * n, d, true));
  view.setFloat32(108, 352, true);
  view.setFloat32(112, 1, true);
  view.setInt16(254, 1, true); // sform_code: scanner
  affine.forEach((r, n) => r.forEach((v, c) => view.setFloat32(280 + 16 * n + 4 * c, v, true)));
  out.set([0x6e, 0x2b, 0x31, 0], 344); // "n+1"
  out.set(new Uint8Array(voxels.buffer), 352);
  return out;
}

/** The files of a zip archive (stored or deflated; not zip64). */
async function unzip(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = bytes.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) throw new Error('not a zip archive');
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  if (at === 0xffffffff) throw new Error('zip64 archives are not read here');
  const files = [];
  for (let n = 0; n < count; n++) {
    if (view.getUint32(at, true) !== 0x02014b50) throw new Error('a broken zip directory');
    const method = view.getUint16(at + 10, true);
    const compressed = view.getUint32(at + 20, true);
    const nameLength = view.getUint16(at + 28, true);
    const local = view.getUint32(at + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
    if (name.endsWith('/')) continue;
    const data = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const raw = bytes.subarray(data, data + compressed);
    if (method === 0) files.push({ name, bytes: raw });
    else if (method === 8) files.push({ name, bytes: new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new DecompressionStream('deflate-raw'))).arrayBuffer()) });
    else throw new Error(`${name}: zip method ${method} is not read here`);
  }
  return files;
}
