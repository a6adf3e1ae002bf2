/**
 * The annotator's state and actions: connect to the server, open a scan (upload it as a session and show
 * it), turn prompts into 2D requests, propagate in 3D, save. Every failure ends up in the message bar.
 */

import { dicomToNifti } from './dicom.js';
import { VoxelGrid } from './grid.js';
import { readLabels, readMask, writeMask } from './nifti.js';
import { inferParams } from './prompts.js';
import { SegmentList, splitLabels } from './segments.js';

/** Volume files NiiVue reads itself; anything else is taken for DICOM (dicom.js reads it for NiiVue). */
const VOLUME_FILE = /\.(nii|nii\.gz|nrrd)$/i;

export class Annotator {
  /**
   * @param {object} parts
   * @param {import('./api.js').Api} parts.api
   * @param {import('./viewer.js').Viewer} parts.viewer
   * @param {import('./overlay.js').Overlay} parts.overlay
   * @param {import('./ui.js').Messages} parts.messages
   * @param {import('./ui.js').Progress} parts.progress
   * @param {() => void} parts.changed called after every change the controls show
   */
  constructor({ api, viewer, overlay, messages, progress, changed }) {
    Object.assign(this, { api, viewer, overlay, messages, progress, changed });
    /** @type {{id: string, name: string, meta: {shape: number[], spacing: number[], orientation: string, format: string}}|null} */
    this.session = null;
    /** @type {VoxelGrid|null} null until a scan is shown */
    this.grid = null;
    /** @type {SegmentList|null} */
    this.segments = null;
    this.models = {};
    this.model = null;
    this.layout = 'multiplanar';
    this.inFlight = 0;
    this.completed = 0;
    this.lastLatencyMs = null;
    /** The last reply's read-outs: {score, serverMs, latencyMs, slices}. */
    this.result = null;
    this.lastParams = null;
    this.dragging = null;
    /** 2D requests in flight by segment id (a newer prompt aborts the older request). */
    this.pending = new Map();
    /** The propagation in flight: {segmentId, controller}, or null. */
    this.walk = null;
    /** The scans of the server's `--data` folder (paths relative to it), or null when it has none. */
    this.dataScans = null;
    /** Where the last "save next to scan" wrote the mask (its path in the server's folder), or null. */
    this.lastSaved = null;
    /** The "label all slices" request in flight: {controller}, or null. */
    this.labelling = null;
    /** The last "label all slices": {model, classes: [{name, voxels}], seconds}, or null. */
    this.lastLabels = null;
  }

  /**
   * Connects: asks for the API key when the server wants one (`GET /auth/`), reads the models
   * (`GET /info/`) and picks the first 2D one, then lists the scans of the server's `--data` folder
   * (`GET /annotator/scans`; none without the option, and a failure there is shown but leaves the page
   * working).
   * @param {(check: (key: string) => Promise<boolean>) => Promise<void>} askKey
   */
  async connect(askKey) {
    const auth = await this.api.auth();
    if (auth.enabled) await askKey((key) => this.api.tryKey(key));
    const info = await this.api.info();
    this.models = info.models || {};
    const names = this.models2D();
    if (!names.length) throw new Error('the server offers no 2D model');
    this.model = names[0];
    try {
      this.dataScans = await this.api.scans();
    } catch (e) {
      this.messages.error(`listing the scans on the server: ${e.message}`);
    }
    this.changed();
    return info;
  }

  /** Names of the 2D models (each has a `-3d` twin for propagation). */
  models2D() {
    return Object.keys(this.models).filter((name) => this.models[name].dimension === 2);
  }

  /** Picks the model prompts go to. */
  setModel(name) {
    this.model = name;
    this.changed();
  }

  /** Whether a request is in flight. */
  get busy() {
    return this.inFlight > 0;
  }

  /**
   * Opens a scan: uploads the files as a session (`PUT /session/`) and shows the file in the viewer.
   * @param {File[]} files one .nii/.nii.gz/.nrrd, a .zip of a DICOM series, or DICOM files
   */
  async open(files) {
    if (!files.length) return;
    const name = files.length === 1 ? files[0].name : `${files.length} DICOM files`;
    await this.openWith({
      label: `uploading ${name}`,
      what: files.map((f) => f.name).join(', '),
      name,
      scan: null,
      session: () => this.api.openSession(files),
      shown: () => this.showFiles(files),
    });
  }

  /**
   * Opens a scan of the server's `--data` folder (`PUT /annotator/open`) and shows it from its bytes
   * (`GET /annotator/scan`: a DICOM series folder comes as a zip of its files, read as an uploaded zip).
   * @param {string} rel its path in the folder, as `GET /annotator/scans` lists it
   */
  async openFromServer(rel) {
    if (!rel) return;
    await this.openWith({
      label: `opening ${rel} on the server`,
      what: rel,
      name: rel,
      scan: rel,
      session: () => this.api.openScan(rel),
      shown: async () => {
        const { bytes } = await this.api.scanBytes(rel);
        const fileName = rel.split('/').pop() || rel;
        if (VOLUME_FILE.test(fileName)) return this.viewer.show(bytes, fileName);
        // DICOM: a series folder (sent as a zip) or a single file
        const isZip = bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
        return this.viewer.show(await dicomToNifti([new File([bytes], isZip ? `${fileName}.zip` : fileName)]), 'dicom.nii');
      },
    });
  }

  /** Shows local files in the viewer: a volume file as it is, DICOM through dicom.js. */
  async showFiles(files) {
    if (files.length === 1 && VOLUME_FILE.test(files[0].name)) {
      return this.viewer.show(new Uint8Array(await files[0].arrayBuffer()), files[0].name);
    }
    return this.viewer.show(await dicomToNifti(files), 'dicom.nii');
  }

  /**
   * Replaces the session: closes the previous one, opens a new one (`session()`, the server's reply to
   * `PUT /session/` or its like) while the viewer reads the scan (`shown()`, the viewer's answer), then
   * sets up the segments and the grid the prompts go through.
   * @param {{label: string, what: string, name: string, scan: string|null, session: () => Promise<object>, shown: () => Promise<{shape: number[], permRAS: number[]}>}} how
   *   label: the progress label; what: the scan named in errors; name: the session's name; scan: its path
   *   in the server's folder, or null for an upload
   */
  async openWith({ label, what, name, scan, session, shown }) {
    for (const controller of this.pending.values()) controller.abort();
    this.walk?.controller.abort(); // the server stops walking when the connection closes
    this.labelling?.controller.abort();
    this.lastLabels = null;
    const previous = this.session;
    this.session = null;
    this.grid = null;
    this.segments = null;
    this.result = null;
    this.lastSaved = null;
    this.viewer.clear();
    this.changed();
    if (previous) this.api.closeSession(previous.id).catch((e) => this.messages.note(`closing the previous session: ${e.message}`));
    this.progress.start(label);
    this.inFlight++;
    try {
      const [sent, read] = await Promise.allSettled([session(), shown()]);
      if (sent.status === 'rejected') throw sent.reason; // the server's reason first: it says more
      const reply = sent.value;
      const meta = reply.session_info.meta;
      this.session = { id: reply.session_id, name, scan, meta };
      this.segments = new SegmentList(meta.shape);
      this.segments.add();
      const view = read.value;
      if (read.status === 'rejected') {
        this.messages.error(`${name} (${meta.format}): the server opened it, but the viewer cannot show it, so it cannot be prompted here: ${read.reason.message}`);
      } else if (view.shape.join() !== meta.shape.join()) {
        this.messages.error(`the viewer reads ${view.shape.join(' x ')} voxels but the server ${meta.shape.join(' x ')}: prompts are off for this scan`);
      } else {
        this.grid = new VoxelGrid(meta.shape, view.permRAS);
        this.setLayout(this.layout);
        this.setK(Math.floor(meta.shape[2] / 2));
      }
    } catch (e) {
      this.messages.error(`opening ${what}: ${e.message}`);
    } finally {
      this.inFlight--;
      this.progress.stop();
      this.changed();
      this.redraw();
    }
  }

  /** 'multiplanar' (the prompted view large, the other two beside it) or one view. */
  setLayout(layout) {
    this.layout = layout;
    this.viewer.setLayout(layout, this.grid ? this.grid.promptView : 'axial');
  }

  /** The server slice (k) shown in the prompted view, or null without a scan. */
  get k() {
    return this.grid && this.grid.kOfRAS(this.viewer.sliceAlong(this.grid.rasAxisOf(2)));
  }

  /** Shows server slice k in the prompted view. */
  setK(k) {
    if (this.grid) this.viewer.setSliceAlong(this.grid.rasAxisOf(2), this.grid.kOfRAS(k));
    this.changed();
  }

  /** Redraws the masks and prompts over the viewer. */
  redraw() {
    const segments = this.segments;
    this.overlay.draw({
      viewer: this.viewer,
      grid: this.grid,
      segments: segments ? segments.items : [],
      active: segments && segments.active,
      k: this.k,
      dragging: this.dragging,
    });
  }

  /** Shows (or hides, null) the box being dragged. */
  drag(dragging) {
    this.dragging = dragging;
    this.redraw();
  }

  /**
   * A prompt placed on the prompted view (see interaction.js) for the active segment on the slice shown;
   * segments the slice again.
   * @param {number} timeStamp the mouse event's (latency is measured from it)
   */
  prompt(prompt, timeStamp) {
    const segment = this.promptable();
    if (!segment) return;
    const prompts = segment.promptsOn(this.k);
    if (prompt.type === 'box') prompts.addBox(prompt.from, prompt.to);
    else prompts.addClick(prompt.at, prompt.positive);
    this.redraw();
    this.segmentSlice(segment, this.k, timeStamp);
  }

  /** Takes back the active segment's last prompt on the slice shown. */
  undo(timeStamp = performance.now()) {
    const segment = this.promptable();
    if (!segment) return;
    if (!segment.promptsOn(this.k).undo()) {
      this.messages.note(`no prompt of ${segment.name} on slice ${this.k} to undo`);
      return;
    }
    this.segmentSlice(segment, this.k, timeStamp);
  }

  /** Removes the active segment's prompts on the slice shown, and its mask there. */
  clear(timeStamp = performance.now()) {
    const segment = this.promptable();
    if (!segment) return;
    segment.promptsOn(this.k).clear();
    this.segmentSlice(segment, this.k, timeStamp);
  }

  /** The active segment when prompts can be placed (a scan is shown, the segment is not propagating). */
  promptable() {
    if (!this.grid) {
      this.messages.error('open a scan the viewer shows first');
      return null;
    }
    const segment = this.segments.active || this.addSegment();
    if (this.walk && this.walk.segmentId === segment.id) {
      this.messages.error(`${segment.name} is being propagated: wait for it or cancel it before prompting it again`);
      return null;
    }
    return segment;
  }

  /**
   * Segments slice k of a segment from all its prompts there (`POST /infer/{model}`) and replaces that
   * slice of its mask; without prompts, clears the slice. A newer request for the segment aborts this one.
   */
  async segmentSlice(segment, k, t0) {
    this.pending.get(segment.id)?.abort();
    const prompts = segment.promptsOn(k);
    if (prompts.empty) {
      segment.replaceSlice(k, null);
      this.changed();
      this.redraw();
      return;
    }
    const params = inferParams(prompts, k, segment.name);
    const controller = new AbortController();
    this.pending.set(segment.id, controller);
    this.lastParams = params;
    this.inFlight++;
    this.changed();
    try {
      const reply = await this.api.infer(this.model, this.session.id, params, 'all', controller.signal);
      const { mask, header } = await this.readReplyMask(reply.file.bytes, k);
      if (controller.signal.aborted || this.segments.get(segment.id) !== segment) return;
      segment.replaceSlice(k, mask);
      segment.last = { model: this.model, params, header };
      this.redraw();
      await nextFrame();
      this.lastLatencyMs = performance.now() - t0;
      this.result = { score: reply.params.score, serverMs: reply.params.latency_ms, latencyMs: this.lastLatencyMs, slices: reply.params.slices };
    } catch (e) {
      if (e.name !== 'AbortError') this.messages.error(`segmenting slice ${k} of ${segment.name}: ${e.message}`);
    } finally {
      if (this.pending.get(segment.id) === controller) this.pending.delete(segment.id);
      this.inFlight--;
      this.completed++;
      this.changed();
    }
  }

  /** Reads a reply's mask file (only slice k, when given) and checks it is on the session's grid. */
  async readReplyMask(bytes, k) {
    const read = await readMask(bytes, k);
    if (read.shape.join() !== this.session.meta.shape.join()) {
      throw new Error(`the mask returned is ${read.shape.join(' x ')}, the scan ${this.session.meta.shape.join(' x ')}`);
    }
    return read;
  }

  /**
   * Propagates the active segment from its prompts on the slice shown through the volume
   * (`POST /infer/{model}-3d`, the same params as the slice's 2D request: the walk is bounded only by the
   * model's stop rule and the server's limits) and replaces its whole mask with the result.
   */
  async propagate() {
    const segment = this.promptable();
    if (!segment) return;
    const k = this.k;
    const prompts = segment.promptsOn(k);
    const model = `${this.model}-3d`;
    if (prompts.empty) {
      this.messages.error(`propagating ${segment.name}: place a box or clicks on slice ${k} first`);
      return;
    }
    if (!this.models[model]) {
      this.messages.error(`propagating: the server has no ${model}`);
      return;
    }
    const params = inferParams(prompts, k, segment.name);
    const controller = new AbortController();
    this.walk = { segmentId: segment.id, controller };
    this.lastParams = params;
    this.inFlight++;
    this.progress.start(`propagating ${segment.name} from slice ${k}`, () => controller.abort()); // the server stops walking when the connection closes
    this.changed();
    const t0 = performance.now();
    try {
      const reply = await this.api.infer(model, this.session.id, params, 'all', controller.signal);
      const { mask, header } = await this.readReplyMask(reply.file.bytes);
      if (this.segments.get(segment.id) !== segment) return;
      segment.replaceAll(mask);
      segment.last = { model, params, header };
      this.redraw();
      const slices = reply.params.slices || [];
      this.result = { score: reply.params.score, serverMs: reply.params.latency_ms, latencyMs: performance.now() - t0, slices };
      this.messages.note(`${segment.name}: propagated to ${slices.length} slices${slices.length ? ` (${slices[0]}–${slices[slices.length - 1]})` : ''}, ${segment.voxels.toLocaleString('en')} voxels, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      if (e.name === 'AbortError') this.messages.note(`propagation of ${segment.name} cancelled`);
      else this.messages.error(`propagating ${segment.name}: ${e.message}`);
    } finally {
      this.walk = null;
      this.inFlight--;
      this.completed++;
      this.progress.stop();
      this.changed();
    }
  }

  /** The semantic model of the current model (`{model}-labels` in `/info/`), or null when it has none. */
  get labelModel() {
    const name = this.model && `${this.model}-labels`;
    return name && this.models[name] ? name : null;
  }

  /**
   * Labels every slice with the current model's semantic head (`POST /infer/{model}-labels`, no prompts)
   * and turns the label map into one segment per class, named by the class, its mask the voxels of that
   * class. A segment of the same name is replaced (its mask and prompts); the active segment stays active.
   */
  async labelAll() {
    if (!this.grid) {
      this.messages.error('open a scan the viewer shows first');
      return;
    }
    const model = this.labelModel;
    if (!model) {
      this.messages.error(`labelling: the server has no ${this.model}-labels`);
      return;
    }
    if (this.labelling) {
      this.messages.error('labelling: already running (wait for it or cancel it)');
      return;
    }
    const session = this.session;
    const params = { result_extension: '.nii.gz' };
    const controller = new AbortController();
    this.labelling = { controller };
    this.lastParams = params;
    this.inFlight++;
    this.progress.start(`labelling all ${this.grid.shape[2]} slices with ${model}`, () => controller.abort()); // the server stops when the connection closes
    this.changed();
    const t0 = performance.now();
    try {
      const reply = await this.api.infer(model, session.id, params, 'all', controller.signal);
      const labels = reply.params.label_names || this.models[model].labels;
      if (!labels || typeof labels !== 'object') throw new Error('the reply names no classes (label_names)');
      const { shape, values, header } = await readLabels(reply.file.bytes);
      if (shape.join() !== session.meta.shape.join()) throw new Error(`the label map returned is ${shape.join(' x ')}, the scan ${session.meta.shape.join(' x ')}`);
      if (this.session !== session) return;
      const classes = splitLabels(values, labels);
      const activeId = this.segments.activeId;
      for (const c of classes) {
        let segment = this.segments.byName(c.name);
        if (segment) {
          this.pending.get(segment.id)?.abort();
          if (this.walk && this.walk.segmentId === segment.id) this.walk.controller.abort();
          segment.prompts.clear();
        } else segment = this.segments.add(c.name);
        segment.replaceAll(c.mask);
        segment.last = { model, params, header };
      }
      if (this.segments.get(activeId)) this.segments.activeId = activeId;
      this.redraw();
      const seconds = (performance.now() - t0) / 1000;
      this.lastLabels = { model, classes: classes.map((c) => ({ name: c.name, voxels: c.voxels })), seconds };
      this.result = { score: null, serverMs: reply.params.latency_ms, latencyMs: performance.now() - t0, slices: reply.params.slices };
      this.messages.note(`labelled ${classes.length} classes in ${seconds.toFixed(1)} s: ${classes.map((c) => `${c.name} ${c.voxels.toLocaleString('en')} vx`).join(', ')}`);
    } catch (e) {
      if (e.name === 'AbortError') this.messages.note('labelling cancelled');
      else this.messages.error(`labelling all slices with ${model}: ${e.message}`);
    } finally {
      this.labelling = null;
      this.inFlight--;
      this.completed++;
      this.progress.stop();
      this.changed();
    }
  }

  /** Adds a segment and makes it active. */
  addSegment() {
    const segment = this.segments.add();
    this.changed();
    this.redraw();
    return segment;
  }

  /** Makes a segment the active one. */
  activate(id) {
    this.segments.activeId = id;
    this.changed();
    this.redraw();
  }

  /** Renames a segment (a name another segment has gets a suffix); the name is the label sent. */
  renameSegment(id, name) {
    this.segments.rename(id, name);
    this.changed();
  }

  /** Changes a segment's colour. */
  recolorSegment(id, color) {
    this.segments.get(id).color = color;
    this.redraw();
  }

  /** Deletes a segment (aborting its requests). */
  removeSegment(id) {
    this.pending.get(id)?.abort();
    if (this.walk && this.walk.segmentId === id) this.walk.controller.abort();
    this.segments.remove(id);
    this.overlay.forget(id);
    this.changed();
    this.redraw();
  }

  /**
   * The active segment's full mask as a .nii.gz: its Uint8Array (every slice merged) written with the
   * header of the server's last mask for it, which is the scan's grid and affine.
   * @returns {Promise<{name: string, bytes: Uint8Array}|null>}
   */
  async maskFile() {
    const segment = this.segments && this.segments.active;
    if (!segment || !segment.last) {
      this.messages.error('saving: the active segment has no mask yet');
      return null;
    }
    return { name: `${baseName(this.session.name)}_${fileSafe(segment.name)}.nii.gz`, bytes: await writeMask(segment.last.header, segment.mask) };
  }

  /**
   * Saves the active segment's mask (the bytes of `maskFile()`) next to the session's scan in the server's
   * folder (`POST /annotator/save`, labelled with the segment's name); sessions opened from the folder only.
   * @returns {Promise<string|null>} the new file's path in the folder, or null when it failed
   */
  async saveNextToScan() {
    const session = this.session;
    if (!session || !session.scan) {
      this.messages.error('saving next to the scan: this scan was not opened from the server\'s folder');
      return null;
    }
    const segment = this.segments.active;
    const file = await this.maskFile();
    if (!file) return null;
    this.inFlight++;
    this.progress.start(`saving ${segment.name} next to ${session.scan}`);
    this.changed();
    try {
      const { saved } = await this.api.saveNextToScan(session.id, segment.name, file.bytes);
      if (typeof saved !== 'string') throw new Error('the server did not say where it saved the mask');
      if (this.session === session) this.lastSaved = saved;
      return saved;
    } catch (e) {
      this.messages.error(`saving ${segment.name} next to ${session.scan}: ${e.message}`);
      return null;
    } finally {
      this.inFlight--;
      this.progress.stop();
      this.changed();
    }
  }

  /** A DICOM SEG of the active segment's last request (`output=dicom_seg`; DICOM sessions only). */
  async dicomSegFile() {
    const segment = this.segments && this.segments.active;
    if (!segment || !segment.last) {
      this.messages.error('saving a DICOM SEG: the active segment has no mask yet');
      return null;
    }
    this.inFlight++;
    this.progress.start(`writing the DICOM SEG of ${segment.name}`);
    try {
      const file = await this.api.infer(segment.last.model, this.session.id, segment.last.params, 'dicom_seg');
      return { name: `${fileSafe(segment.name)}.seg.dcm`, bytes: file.bytes };
    } catch (e) {
      this.messages.error(`saving a DICOM SEG: ${e.message}`);
      return null;
    } finally {
      this.inFlight--;
      this.progress.stop();
    }
  }

  /** Whether the session holds a DICOM series (a DICOM SEG can be written). */
  get isDicom() {
    return Boolean(this.session && /^DICOM/i.test(this.session.meta.format));
  }
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

function baseName(name) {
  return name.split('/').pop().replace(/\.(nii\.gz|nii|nrrd|zip|dcm)$/i, '');
}

function fileSafe(name) {
  return name.replace(/[^\w.-]+/g, '_');
}
