// Drives the web annotator in the system's headless Chromium like a user, against a running server, and
// writes what it got for comparison with `medico-cli segment`:
//
//   node web/tests/drive.mjs URL SCAN OUTDIR [DICOM_ZIP]
//
// URL: the page (e.g. http://127.0.0.1:8080/?api=http://127.0.0.1:8000); SCAN: a NIfTI file (the MNI152
// T1). Steps: open SCAN; axial slice 82; a real mouse box from voxel (27, 28) to (169, 207) -> box.json;
// a right click (negative) at (98, 60) -> box_neg.json; "propagate 3D" -> propagated.json; the mask
// download -> download.nii.gz; 20 positive clicks at (98, 130) -> latency.json; annotator.png (1280x800,
// taken right after the box's mask is drawn); with DICOM_ZIP (a zip of a DICOM series), a box from voxel (2, 2)
// to (13, 13) on its slice 2 in a fresh page and the page's DICOM SEG download -> seg.dcm. Mask files: {shape: [ni, nj, nk], order: "i-fastest",
// voxels, ones: [flat indices i + ni * (j + nj * k) of the 1-voxels, ascending], params: the request's
// params}. With DATA_SCAN=REL (a scan of the server's --data folder, as GET /annotator/scans lists it), last,
// in a fresh page: REL chosen in "scans on the server" and opened, the same box on its axial slice 82,
// "save next to scan" -> data.json ({scan: REL, saved: the path the server wrote, box: the box's mask file}).
// With LABELS_MODEL=NAME (a 2D model of the page's list whose NAME-labels sibling /info/ offers), after the
// main part and in its page: NAME picked, "label all slices" -> labels.json ({model: "NAME-labels", shape,
// order: "i-fastest", classes: {class: {voxels, ones}}}, the classes of /info/'s labels), the model picked
// before restored.
// Exits 1 with a message on any failure. CHROMIUM=/path overrides /usr/bin/chromium; MODEL and
// DICOM_MODEL pick the model (of the page's list) for the scan (and DATA_SCAN) and for the DICOM series.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const [url, scan, outDir, dicomZip] = process.argv.slice(2);
if (!url || !scan || !outDir) {
  console.error('usage: node web/tests/drive.mjs URL SCAN OUTDIR [DICOM_ZIP]');
  process.exit(2);
}
const SLICE = 82;
const BOX = [[27, 28], [169, 207]];
const NEGATIVE = [98, 60];
const POSITIVE = [98, 130];
const LATENCY_CLICKS = 20;

const step = (text) => console.log(`[drive] ${text}`);

async function main() {
  mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && console.log(`[page] ${m.text()}`));
    const check = async () => {
      if (pageErrors.length) throw new Error(`uncaught error in the page: ${pageErrors.join('; ')}`);
      const error = await page.evaluate(() => window.medicoAnnotator.state().error);
      if (error) throw new Error(`the page reports: ${error}`);
    };

    step(`open ${url}`);
    await openPage(page, process.env.MODEL);
    const model = await page.evaluate(() => window.medicoAnnotator.state().model);
    step(`ready, model ${model}`);

    step(`upload ${scan}`);
    await page.setInputFiles('#scan', resolve(scan));
    await waitForSession(page);
    await check();
    const { shape, sessionId } = await page.evaluate(() => window.medicoAnnotator.state());
    step(`session ${sessionId}, ${shape.join(' x ')}`);

    await page.fill('#slice-number', String(SLICE));
    await page.waitForFunction((k) => window.medicoAnnotator.state().slice === k, SLICE);

    // A box dragged with the real mouse, from voxel centre to voxel centre.
    await dragBox(page, BOX[0], BOX[1], SLICE);
    await check();
    const boxParams = await lastParams(page);
    const wanted = [BOX[0][0], BOX[1][0], BOX[0][1], BOX[1][1], SLICE, SLICE];
    if (JSON.stringify(boxParams.roi) !== JSON.stringify(wanted)) throw new Error(`the dragged box became roi ${JSON.stringify(boxParams.roi)}, not ${JSON.stringify(wanted)}`);
    await saveMask(page, 'box.json', boxParams);
    await page.screenshot({ path: join(outDir, 'annotator.png') });

    step(`negative click at (${NEGATIVE}) with the right button`);
    const neg = await voxel(page, ...NEGATIVE);
    await settle(page, () => page.mouse.click(neg.x, neg.y, { button: 'right' }));
    await check();
    await saveMask(page, 'box_neg.json', await lastParams(page));

    step('propagate');
    await settle(page, () => page.click('#propagate'), 600_000);
    await check();
    await saveMask(page, 'propagated.json', await lastParams(page));

    step('download the mask');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-nifti')]);
    await download.saveAs(join(outDir, 'download.nii.gz'));
    await check();

    step(`${LATENCY_CLICKS} positive clicks at (${POSITIVE})`);
    await page.check('input[name="tool"][value="click"]');
    const pos = await voxel(page, ...POSITIVE);
    const latencies = [];
    const server = [];
    for (let n = 0; n < LATENCY_CLICKS; n++) {
      await settle(page, () => page.mouse.click(pos.x, pos.y));
      await check();
      const { result } = await page.evaluate(() => window.medicoAnnotator.state());
      latencies.push(await page.evaluate(() => window.medicoAnnotator.lastLatencyMs()));
      server.push(result.serverMs);
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    const latency = {
      clicks: LATENCY_CLICKS,
      voxel: [...POSITIVE, SLICE],
      model,
      click_to_overlay_ms: latencies.map(round),
      server_latency_ms: server.map(round),
      median_ms: round(sorted[Math.floor(sorted.length / 2)]),
      max_ms: round(sorted[sorted.length - 1]),
    };
    writeFileSync(join(outDir, 'latency.json'), JSON.stringify(latency, null, 1));
    step(`click -> overlay: median ${latency.median_ms} ms, max ${latency.max_ms} ms`);
    if (process.env.LABELS_MODEL) await labelAll(page, process.env.LABELS_MODEL, check);
    if (dicomZip) await dicomSeg(browser, dicomZip);
    if (process.env.DATA_SCAN) await dataScan(browser, process.env.DATA_SCAN);
  } finally {
    await browser.close();
  }
}

/** Waits until the page holds a session (or shows an error). */
function waitForSession(page) {
  return page.waitForFunction(() => {
    const s = window.medicoAnnotator.state();
    return (s.sessionId && s.shape && !s.busy) || s.error;
  }, null, { timeout: 120_000 });
}

/** Opens the page at URL, waits until it is ready and picks `model` when given. */
async function openPage(page, model) {
  await page.goto(url);
  await page.waitForFunction(() => window.medicoAnnotator);
  await page.evaluate(() => window.medicoAnnotator.ready);
  if (model) await page.selectOption('#model', model);
}

/** Page coordinates of voxel (i, j) on slice k (default the test's slice). */
function voxel(page, i, j, k = SLICE) {
  return page.evaluate(([i, j, k]) => window.medicoAnnotator.voxelToCanvas(i, j, k), [i, j, k]);
}

/** Drags a real mouse box from voxel `from` to voxel `to` (each [i, j]) on slice k. */
async function dragBox(page, from, to, k) {
  const [a, b] = await Promise.all([voxel(page, ...from, k), voxel(page, ...to, k)]);
  await settle(page, async () => {
    await page.mouse.move(a.x, a.y);
    await page.mouse.down();
    await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, { steps: 5 });
    await page.mouse.move(b.x, b.y, { steps: 5 });
    await page.mouse.up();
  });
}

/**
 * In the main part's page (its scan open): LABELS_MODEL picked in the model list (when it is not the
 * current model), "label all slices" (its `-labels` sibling), then OUTDIR/labels.json = {model, shape,
 * order: "i-fastest", classes: {name: {voxels, ones}}} (each class of /info/'s labels, its segment's mask
 * as in the mask files); the previous model is picked again after.
 */
async function labelAll(page, model, check) {
  const previous = await page.evaluate(() => window.medicoAnnotator.state().model);
  const options = await page.$$eval('#model option', (os) => os.map((o) => o.value));
  if (!options.includes(model)) throw new Error(`labels: ${model} is not among the page's models ${JSON.stringify(options)}`);
  if (model !== previous) await page.selectOption('#model', model);
  const { labelModel } = await page.evaluate(() => window.medicoAnnotator.state());
  if (labelModel !== `${model}-labels`) throw new Error(`labels: the page finds no ${model}-labels in /info/ (labelModel ${labelModel})`);
  const info = await page.evaluate(async (base) => (await fetch(`${base}/info/`)).json(), apiBase());
  const labels = info.models[labelModel].labels;
  if (!labels || typeof labels !== 'object' || Array.isArray(labels) || !Object.keys(labels).length) throw new Error(`labels: /info/ gives ${labelModel} no classes: ${JSON.stringify(labels)}`);
  if (!(await page.isVisible('#label-all'))) throw new Error('labels: the "label all slices" button is not shown');
  step(`labels: label all slices with ${labelModel} (${Object.keys(labels).join(', ')})`);
  const t0 = Date.now();
  await settle(page, () => page.click('#label-all'), 600_000);
  await check();
  const { lastLabels, segments, shape } = await page.evaluate(() => window.medicoAnnotator.state());
  if (!lastLabels || lastLabels.model !== labelModel) throw new Error(`labels: the page did not finish labelling (lastLabels ${JSON.stringify(lastLabels)})`);
  const classes = {};
  for (const name of Object.keys(labels)) {
    const listed = segments.filter((s) => s.name === name);
    if (listed.length !== 1) throw new Error(`labels: ${listed.length} segments named ${name} in ${JSON.stringify(segments)}`);
    const mask = await page.evaluate((n) => window.medicoAnnotator.segmentMask(n), name);
    const { ones, voxels } = onesOf(mask);
    if (voxels !== listed[0].voxels) throw new Error(`labels: ${name}'s mask has ${voxels} voxels, the segment list says ${listed[0].voxels}`);
    if (mask.shape.join() !== shape.join()) throw new Error(`labels: ${name}'s mask is ${mask.shape.join(' x ')}, the scan ${shape.join(' x ')}`);
    classes[name] = { voxels, ones };
  }
  writeFileSync(join(outDir, 'labels.json'), JSON.stringify({ model: labelModel, shape, order: 'i-fastest', classes }));
  step(`labels.json: ${Object.entries(classes).map(([n, c]) => `${n} ${c.voxels}`).join(', ')} voxels, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (model !== previous) {
    await page.selectOption('#model', previous);
    await page.waitForFunction((m) => window.medicoAnnotator.state().model === m, previous);
  }
  await check();
}

/** The server's base URL as the page uses it (`?api=` or the page's origin). */
function apiBase() {
  const page = new URL(url);
  return (page.searchParams.get('api') || page.origin).replace(/\/+$/, '');
}

/** The flat indices of a segmentMask's 1-voxels, ascending, and their count. */
function onesOf({ base64 }) {
  const mask = Buffer.from(base64, 'base64');
  const ones = [];
  for (let n = 0; n < mask.length; n++) if (mask[n]) ones.push(n);
  return { ones, voxels: ones.length };
}

/**
 * A DICOM series (a zip) in a fresh page: a box from voxel (2, 2) to (13, 13) on slice 2, then the DICOM SEG
 * download -> OUTDIR/seg.dcm (the CLI's equivalent: `segment SERIES --axis 2 --slice 2 --box 2,2,14,14`).
 */
async function dicomSeg(browser, zip) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  step(`DICOM: open ${zip}`);
  await openPage(page, process.env.DICOM_MODEL);
  await page.setInputFiles('#scan', resolve(zip));
  await waitForSession(page);
  await page.fill('#slice-number', '2');
  await page.waitForFunction(() => window.medicoAnnotator.state().slice === 2);
  await dragBox(page, [2, 2], [13, 13], 2);
  const { error } = await page.evaluate(() => window.medicoAnnotator.state());
  if (errors.length || error) throw new Error(`DICOM: ${errors.concat(error ? [error] : []).join('; ')}`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-seg')]);
  await download.saveAs(join(outDir, 'seg.dcm'));
  step('DICOM: seg.dcm saved');
  await page.close();
}

/**
 * A scan of the server's --data folder in a fresh page: chosen in the select and opened, the main part's
 * box on slice 82, then "save next to scan" -> OUTDIR/data.json {scan, saved, box}.
 */
async function dataScan(browser, rel) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && console.log(`[page] ${m.text()}`));
  const check = async () => {
    const { error } = await page.evaluate(() => window.medicoAnnotator.state());
    if (errors.length || error) throw new Error(`data scan ${rel}: ${errors.concat(error ? [error] : []).join('; ')}`);
  };
  step(`data scan: open ${url}`);
  await openPage(page, process.env.MODEL);
  await check();
  const { dataScans } = await page.evaluate(() => window.medicoAnnotator.state());
  if (!dataScans) throw new Error('data scan: the server lists no --data folder (GET /annotator/scans: 404)');
  if (!dataScans.includes(rel)) throw new Error(`data scan: ${rel} is not among the server's scans ${JSON.stringify(dataScans)}`);
  step(`data scan: ${dataScans.length} scans on the server; open ${rel}`);
  await page.selectOption('#data-scans', rel);
  await page.click('#open-data');
  await waitForSession(page);
  await check();
  const { shape, sessionId } = await page.evaluate(() => window.medicoAnnotator.state());
  step(`data scan: session ${sessionId}, ${shape.join(' x ')}`);
  await page.fill('#slice-number', String(SLICE));
  await page.waitForFunction((k) => window.medicoAnnotator.state().slice === k, SLICE);
  await dragBox(page, BOX[0], BOX[1], SLICE);
  await check();
  const params = await lastParams(page);
  const wanted = [BOX[0][0], BOX[1][0], BOX[0][1], BOX[1][1], SLICE, SLICE];
  if (JSON.stringify(params.roi) !== JSON.stringify(wanted)) throw new Error(`data scan: the dragged box became roi ${JSON.stringify(params.roi)}, not ${JSON.stringify(wanted)}`);
  const box = await maskFile(page, params);
  step(`data scan: box ${box.voxels} voxels; save next to scan`);
  await page.click('#save-data');
  await page.waitForFunction(() => {
    const s = window.medicoAnnotator.state();
    return (s.lastSaved && !s.busy) || s.error;
  }, null, { timeout: 120_000 });
  await check();
  const { lastSaved } = await page.evaluate(() => window.medicoAnnotator.state());
  const shown = await page.textContent('#save-status');
  if (shown !== `saved as ${lastSaved}`) throw new Error(`data scan: the page says "${shown}", not "saved as ${lastSaved}"`);
  writeFileSync(join(outDir, 'data.json'), JSON.stringify({ scan: rel, saved: lastSaved, box }));
  step(`data scan: saved as ${lastSaved} -> data.json`);
  await page.close();
}

/** Runs an action that starts a request and waits until it has been answered. */
async function settle(page, action, timeout = 120_000) {
  const before = await page.evaluate(() => window.medicoAnnotator.state().completed);
  await action();
  await page.waitForFunction((n) => {
    const s = window.medicoAnnotator.state();
    return (s.completed > n && !s.busy) || s.error;
  }, before, { timeout, polling: 20 });
}

function lastParams(page) {
  return page.evaluate(() => window.medicoAnnotator.state().lastParams);
}

/** The first ("segment 1") mask as {shape, order, voxels, ones, params}. */
async function maskFile(page, params) {
  const { shape, base64 } = await page.evaluate(() => window.medicoAnnotator.segmentMask(window.medicoAnnotator.state().segments[0].name));
  const mask = Buffer.from(base64, 'base64');
  const ones = [];
  for (let n = 0; n < mask.length; n++) if (mask[n]) ones.push(n);
  return { shape, order: 'i-fastest', voxels: ones.length, ones, params };
}

/** Writes the first ("segment 1") mask as {shape, order, voxels, ones, params}. */
async function saveMask(page, name, params) {
  const file = await maskFile(page, params);
  writeFileSync(join(outDir, name), JSON.stringify(file));
  step(`${name}: ${file.voxels} voxels`);
}

const round = (x) => Math.round(x * 10) / 10;

main().catch((e) => {
  console.error(`[drive] FAILED: ${e.message}`);
  process.exit(1);
});
