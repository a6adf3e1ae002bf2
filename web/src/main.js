/**
 * medico's web annotator: wires the page's controls to the annotator (app.js), the NiiVue viewer
 * (viewer.js), the layer drawn over it (overlay.js) and the mouse gestures (interaction.js).
 *
 * The server is the page's own origin unless `?api=http://HOST:PORT` says otherwise (that server must then
 * be started with `--allowed-origin` naming this page's origin).
 */

import { Annotator } from './app.js';
import { Api } from './api.js';
import { installTestHooks } from './hooks.js';
import { PromptInput } from './interaction.js';
import { Overlay } from './overlay.js';
import { $, Messages, Progress, askKey, renderSegments } from './ui.js';
import { Viewer } from './viewer.js';

/** What the segment list's controls do. */
const SEGMENT_ACTIONS = {
  activate: (id) => app.activate(id),
  rename: (id, name) => app.renameSegment(id, name),
  recolor: (id, color) => app.recolorSegment(id, color),
  remove: (id) => app.removeSegment(id),
};

/** CT window presets: [level, width] in HU. */
const CT_WINDOWS = { soft: [40, 400], lung: [-600, 1500], bone: [300, 1500] };

const api = new Api(new URLSearchParams(location.search).get('api') || '');
const messages = new Messages($('message'));
const progress = new Progress($('progress'));
const viewer = new Viewer($('gl'), { drawn: () => app.redraw(), changed: () => showControls() });
const overlay = new Overlay($('overlay'));
const app = new Annotator({ api, viewer, overlay, messages, progress, changed: () => showControls() });
new PromptInput($('view'), viewer, {
  tool: () => document.querySelector('input[name="tool"]:checked').value,
  grid: () => app.grid,
  prompt: (prompt, timeStamp) => app.prompt(prompt, timeStamp),
  drag: (dragging) => app.drag(dragging),
});

const ready = start();
installTestHooks(app, ready);
ready.catch(() => {}); // reported in the message bar; the rejection is for the tests

async function start() {
  try {
    await viewer.attach();
  } catch (e) {
    messages.error(`the viewer cannot start (it needs WebGL2): ${e.message}`);
    throw e;
  }
  try {
    const info = await app.connect((check) => askKey($('auth'), check));
    $('server').textContent = `${info.name} ${info.version} at ${api.base || location.origin}`;
    bindControls();
    showControls();
    return info;
  } catch (e) {
    messages.error(`connecting to the server: ${e.message}`);
    throw e;
  }
}

function bindControls() {
  const models = $('model');
  models.replaceChildren(...app.models2D().map((name) => new Option(name, name)));
  models.value = app.model;
  models.addEventListener('change', () => app.setModel(models.value));
  $('scan').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = ''; // choosing the same file again opens it again
    app.open(files);
  });
  if (app.dataScans && app.dataScans.length) {
    $('data-scans').replaceChildren(...app.dataScans.map((rel) => new Option(rel, rel)));
    $('data').hidden = false;
    $('open-data').addEventListener('click', () => app.openFromServer($('data-scans').value));
  }
  $('layout').addEventListener('change', (e) => app.setLayout(e.target.value));
  for (const input of [$('slice'), $('slice-number')]) input.addEventListener('input', (e) => app.setK(Number(e.target.value)));
  $('window').addEventListener('change', (e) => applyWindowPreset(e.target.value));
  for (const id of ['level', 'width']) {
    $(id).addEventListener('change', () => {
      $('window').value = '';
      setWindow(Number($('level').value), Number($('width').value));
    });
  }
  $('zoom-in').addEventListener('click', () => viewer.zoom(1.25));
  $('zoom-out').addEventListener('click', () => viewer.zoom(0.8));
  $('zoom-reset').addEventListener('click', () => viewer.zoom(0));
  $('undo').addEventListener('click', (e) => app.undo(e.timeStamp));
  $('clear').addEventListener('click', (e) => app.clear(e.timeStamp));
  $('add-segment').addEventListener('click', () => app.addSegment());
  $('propagate').addEventListener('click', () => app.propagate());
  $('label-all').addEventListener('click', () => app.labelAll());
  $('save-nifti').addEventListener('click', async () => offer(await app.maskFile()));
  $('save-seg').addEventListener('click', async () => offer(await app.dicomSegFile()));
  $('save-data').addEventListener('click', () => app.saveNextToScan());
  window.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'z' && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement)) {
      e.preventDefault();
      app.undo(e.timeStamp);
    }
  });
}

function applyWindowPreset(preset) {
  if (!viewer.image) return;
  if (preset === 'mr') {
    const [lo, hi] = viewer.percentiles(0.01, 0.99);
    setWindow((lo + hi) / 2, hi - lo);
  } else if (CT_WINDOWS[preset]) setWindow(...CT_WINDOWS[preset]);
}

/** Sets the display window from a level (centre) and a width. */
function setWindow(level, width) {
  if (!viewer.image || !(width > 0)) return;
  viewer.setWindow(level - width / 2, level + width / 2);
  showControls();
}

/** Offers a file for download. */
function offer(file) {
  if (!file) return;
  const url = URL.createObjectURL(new Blob([file.bytes], { type: 'application/octet-stream' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: file.name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Brings the controls and read-outs up to date with the annotator. */
function showControls() {
  const { session, grid, segments } = app;
  $('scan-info').textContent = session
    ? `${session.name}: ${session.meta.shape.join(' x ')} voxels, ${session.meta.spacing.map((s) => +s.toFixed(3)).join(' x ')} mm, ${session.meta.orientation}, ${session.meta.format}`
    : 'no scan open';
  $('model').value = app.model || '';
  $('model').disabled = app.busy;
  const k = app.k;
  for (const input of [$('slice'), $('slice-number')]) {
    input.disabled = !grid;
    input.max = grid ? grid.shape[2] - 1 : 0;
    if (k !== null && Number(input.value) !== k) input.value = k;
  }
  $('slice-of').textContent = grid ? `of ${grid.shape[2]} (k, ${grid.promptView} view)` : '';
  if (viewer.image) {
    const [lo, hi] = viewer.window;
    $('level').value = +((lo + hi) / 2).toFixed(1);
    $('width').value = +(hi - lo).toFixed(1);
  }
  for (const id of ['undo', 'clear', 'propagate', 'add-segment', 'save-nifti']) $(id).disabled = !grid;
  $('label-all').hidden = !app.labelModel;
  $('label-all').disabled = !grid || Boolean(app.labelling);
  $('label-all').title = app.labelModel
    ? `${app.labelModel} on every slice: one segment per class (${Object.keys(app.models[app.labelModel].labels || {}).join(', ')})`
    : '';
  $('save-seg').hidden = !app.isDicom;
  $('save-data').hidden = !(session && session.scan);
  $('save-data').disabled = !grid || app.busy;
  $('save-status').textContent = app.lastSaved ? `saved as ${app.lastSaved}` : '';
  $('open-data').disabled = app.busy;
  if (segments) renderSegments($('segments'), segments, SEGMENT_ACTIONS);
  else $('segments').replaceChildren();
  const r = app.result;
  $('result').textContent = r
    ? `predicted IoU ${r.score == null ? '–' : r.score.toFixed(3)} · ${Math.round(r.latencyMs)} ms in the page (server ${Math.round(r.serverMs)} ms)`
    : '';
  document.body.classList.toggle('busy', app.busy);
}
