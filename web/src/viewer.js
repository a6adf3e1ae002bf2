/**
 * The NiiVue viewer: shows the scan in 2D views, moves through slices, zooms, sets the window, and maps
 * between canvas pixels and RAS voxel indices through NiiVue's own tile geometry (so what the page draws
 * over the canvas and where it reads clicks are exactly where NiiVue draws the voxels).
 *
 * Coordinates: "canvas" = NiiVue's canvas pixels (device pixels), "page" = CSS pixels relative to the
 * viewport; "RAS voxel" = NiiVue's reoriented voxel indices (see grid.js for the file's own indices).
 */

import { Niivue, NVImage, SLICE_TYPE } from '@niivue/niivue';
import { VIEW_AXES } from './grid.js';

const VIEW_TYPES = { axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL };
const VIEW_OF_TYPE = ['axial', 'coronal', 'sagittal'];

export class Viewer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{drawn: () => void, changed: () => void}} on `drawn` after every NiiVue redraw (NiiVue has no
   *   such event; its drawScene is wrapped), `changed` when the user moves the crosshair (slices) or drags
   *   the window in NiiVue
   */
  constructor(canvas, on) {
    this.canvas = canvas;
    this.nv = new Niivue({
      backColor: [0, 0, 0, 1],
      isNearestInterpolation: true, // voxels as they are: the grid prompts and masks live on
      dragAndDropEnabled: false,
      isColorbar: false,
      crosshairWidth: 0.5,
      logLevel: 'warn',
    });
    this.on = on;
    this.image = null;
  }

  /** Attaches NiiVue to the canvas (WebGL2). */
  async attach() {
    await this.nv.attachToCanvas(this.canvas);
    const draw = this.nv.drawScene.bind(this.nv);
    this.nv.drawScene = () => {
      const result = draw();
      this.on.drawn();
      return result;
    };
    this.nv.onLocationChange = () => {
      this.snapCrosshair();
      this.on.changed();
    };
    this.nv.onIntensityChange = () => this.on.changed();
  }

  /** Shows nothing. */
  clear() {
    while (this.nv.volumes.length) this.nv.removeVolume(this.nv.volumes[0]);
    this.image = null;
    this.nv.drawScene();
  }

  /**
   * Shows a NIfTI or NRRD file (replacing what was shown).
   * @returns {Promise<{shape: number[], permRAS: number[]}>} the file's dimensions and NiiVue's
   *   reorientation (see grid.js)
   */
  async show(bytes, name) {
    const image = await NVImage.new(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), name);
    this.clear();
    this.image = image;
    this.nv.addVolume(image);
    this.nv.setPan2Dxyzmm([0, 0, 0, 1]);
    this.snapCrosshair();
    return { shape: image.hdr.dims.slice(1, 4), permRAS: image.permRAS.slice() };
  }

  /**
   * Shows one view ('axial', 'coronal', 'sagittal') or all three ('multiplanar': `main` large on the left,
   * the other two stacked on the right).
   */
  setLayout(layout, main = 'axial') {
    if (layout !== 'multiplanar') {
      this.nv.clearCustomLayout();
      this.nv.setSliceType(VIEW_TYPES[layout]);
      return;
    }
    const [first, second] = VIEW_OF_TYPE.filter((v) => v !== main);
    this.nv.setCustomLayout([
      { sliceType: VIEW_TYPES[main], position: [0, 0, 0.62, 1] },
      { sliceType: VIEW_TYPES[first], position: [0.62, 0, 0.38, 0.5] },
      { sliceType: VIEW_TYPES[second], position: [0.62, 0.5, 0.38, 0.5] },
    ]);
  }

  /** The RAS dimensions [nx, ny, nz] of the image shown. */
  get rasShape() {
    return this.image.dimsRAS.slice(1, 4);
  }

  /** The RAS voxel index shown along RAS axis `axis` (the slice of the view looking along it). */
  sliceAlong(axis) {
    const n = this.rasShape[axis];
    return Math.min(n - 1, Math.max(0, Math.round(this.nv.scene.crosshairPos[axis] * n - 0.5)));
  }

  /** Shows RAS voxel index `index` along RAS axis `axis`. */
  setSliceAlong(axis, index) {
    const n = this.rasShape[axis];
    this.nv.scene.crosshairPos[axis] = (Math.min(n - 1, Math.max(0, index)) + 0.5) / n;
    this.nv.drawScene();
  }

  /** Moves the crosshair to voxel centres, so every view shows whole voxels of one slice. */
  snapCrosshair() {
    const pos = this.nv.scene.crosshairPos;
    const moved = this.rasShape.some((n, a) => {
      const centre = (Math.min(n - 1, Math.max(0, Math.floor(pos[a] * n))) + 0.5) / n;
      const off = Math.abs(pos[a] - centre) > 1e-9;
      pos[a] = centre;
      return off;
    });
    if (moved) this.nv.drawScene();
  }

  /** The 2D tiles on the canvas: [{index, view, ltwh: [left, top, width, height] in canvas pixels}]. */
  tiles() {
    return this.nv.screenSlices
      .map((s, index) => ({ index, view: VIEW_OF_TYPE[s.axCorSag], ltwh: s.leftTopWidthHeight, slice: s }))
      .filter((t) => t.view && t.slice.leftTopMM.length >= 2);
  }

  /** The tile showing `view`, or undefined. */
  tile(view) {
    return this.tiles().find((t) => t.view === view);
  }

  /**
   * Canvas position of a point given in continuous RAS voxel coordinates on a tile's plane: (u, v) along
   * the tile's across and up axes (voxel n spans [n, n + 1); its centre is n + 0.5).
   */
  rasToCanvas(tile, u, v) {
    const axes = VIEW_AXES[tile.view];
    const frac = [...this.nv.scene.crosshairPos];
    frac[axes.u] = u / this.rasShape[axes.u];
    frac[axes.v] = v / this.rasShape[axes.v];
    const mm = this.nv.frac2mm(frac);
    const s = tile.slice;
    const fracX = (mm[axes.u] - s.leftTopMM[0]) / s.fovMM[0];
    const fracY = (mm[axes.v] - s.leftTopMM[1]) / s.fovMM[1];
    let [left, top, width, height] = s.leftTopWidthHeight;
    let x = fracX;
    if (width < 0) {
      // radiological (mirrored) tiles have a negative width
      left += width;
      width = -width;
      x = 1 - fracX;
    }
    return [left + x * width, top + (1 - fracY) * height];
  }

  /**
   * The RAS voxel [x, y, z] under a canvas position on a tile (through-plane: the slice shown); null
   * outside the volume, unless `clamp`: then the nearest voxel of the slice.
   */
  canvasToRAS(tile, x, y, clamp = false) {
    if (clamp) {
      const [l, t, w, h] = tile.ltwh;
      x = Math.min(Math.max(l, l + w) - 1e-3, Math.max(Math.min(l, l + w), x));
      y = Math.min(t + h - 1e-3, Math.max(t, y));
    }
    const frac = this.nv.screenXY2TextureFrac(x, y, tile.index, false);
    if (frac[0] === -1 && frac[1] === -1 && frac[2] === -1) return null;
    const ras = this.rasShape.map((n, a) => {
      const r = Math.floor(frac[a] * n);
      return clamp ? Math.min(n - 1, Math.max(0, r)) : r;
    });
    ras[VIEW_AXES[tile.view].w] = this.sliceAlong(VIEW_AXES[tile.view].w);
    return ras.every((r, a) => r >= 0 && r < this.rasShape[a]) ? ras : null;
  }

  /** Canvas position of a page position (CSS pixels relative to the viewport). */
  pageToCanvas(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const scale = this.canvas.width / rect.width;
    return [(clientX - rect.left) * scale, (clientY - rect.top) * scale];
  }

  /** Page position (CSS pixels relative to the viewport) of a canvas position. */
  canvasToPage(x, y) {
    const rect = this.canvas.getBoundingClientRect();
    const scale = rect.width / this.canvas.width;
    return [rect.left + x * scale, rect.top + y * scale];
  }

  /** The tile under a canvas position, or undefined. */
  tileAt(x, y) {
    return this.tiles().find(({ ltwh: [l, t, w, h] }) => x >= Math.min(l, l + w) && x < Math.max(l, l + w) && y >= t && y < t + h);
  }

  /** Display window: intensities [lo, hi] map to black..white. */
  setWindow(lo, hi) {
    this.image.cal_min = lo;
    this.image.cal_max = hi;
    this.nv.updateGLVolume();
  }

  /** The display window [lo, hi]. */
  get window() {
    return [this.image.cal_min, this.image.cal_max];
  }

  /**
   * The `lo` and `hi` quantiles (fractions) of the image's non-zero intensities, in its calibrated units
   * (from a sample of at most a million voxels): MR's automatic window.
   */
  percentiles(lo, hi) {
    const img = this.image.img;
    const stride = Math.max(1, Math.floor(img.length / 1e6));
    const sample = [];
    for (let n = 0; n < img.length; n += stride) if (img[n] !== 0) sample.push(img[n]);
    if (!sample.length) return [0, 1];
    const sorted = Float64Array.from(sample).sort();
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    const slope = this.image.hdr.scl_slope || 1;
    const inter = this.image.hdr.scl_inter || 0;
    return [at(lo), at(hi)].map((v) => v * slope + inter).sort((a, b) => a - b);
  }

  /** Multiplies the 2D zoom by `factor` (about the crosshair); factor 0 resets zoom and pan. */
  zoom(factor) {
    const [x, y, z, zoom] = this.nv.scene.pan2Dxyzmm;
    this.nv.setPan2Dxyzmm(factor === 0 ? [0, 0, 0, 1] : [x, y, z, Math.min(16, Math.max(0.25, zoom * factor))]);
  }
}
