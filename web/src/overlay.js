/**
 * The layer drawn over NiiVue's canvas: every segment's mask on every 2D view, the active segment's
 * prompts on the prompted view, and the box being dragged. A 2D canvas redrawn after each NiiVue redraw,
 * positioned with NiiVue's own tile geometry (viewer.js); masks are drawn voxel for voxel from the
 * segments' Uint8Arrays, so a reply shows at once (re-uploading a NiiVue overlay volume costs seconds
 * under software WebGL).
 */

import { VIEW_AXES } from './grid.js';

const MASK_ALPHA = 0.45;

export class Overlay {
  /** @param {HTMLCanvasElement} canvas the layer, stacked over NiiVue's canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    /** Rendered mask slices by `segment id:view`: {key, image}. */
    this.cache = new Map();
  }

  /**
   * Redraws the layer.
   * @param {object} scene
   * @param {import('./viewer.js').Viewer} scene.viewer
   * @param {import('./grid.js').VoxelGrid} scene.grid
   * @param {import('./segments.js').Segment[]} scene.segments
   * @param {import('./segments.js').Segment} [scene.active]
   * @param {number} scene.k the server slice shown in the prompted view
   * @param {{from: number[], to: number[]}} [scene.dragging] the box being dragged ([i, j] corners)
   */
  draw({ viewer, grid, segments, active, k, dragging }) {
    const gl = viewer.canvas;
    if (this.canvas.width !== gl.width || this.canvas.height !== gl.height) {
      this.canvas.width = gl.width;
      this.canvas.height = gl.height;
    }
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!grid) return;
    for (const tile of viewer.tiles()) {
      ctx.save();
      const [l, t, w, h] = tile.ltwh;
      ctx.beginPath();
      ctx.rect(Math.min(l, l + w), t, Math.abs(w), h);
      ctx.clip();
      this.drawMasks(viewer, grid, tile, segments, active);
      if (tile.view === grid.promptView && active) {
        const prompts = active.prompts.get(k);
        if (prompts) this.drawPrompts(viewer, grid, tile, k, prompts, active.color);
        if (dragging) this.drawBox(viewer, grid, tile, k, dragging, '#ffffff', true);
      }
      ctx.restore();
    }
  }

  drawMasks(viewer, grid, tile, segments, active) {
    const { u, v, w } = VIEW_AXES[tile.view];
    const [nu, nv] = [grid.rasShape[u], grid.rasShape[v]];
    const slice = viewer.sliceAlong(w);
    const [x0, y0] = viewer.rasToCanvas(tile, 0, 0);
    const [x1, y1] = viewer.rasToCanvas(tile, nu, nv);
    const ctx = this.ctx;
    ctx.imageSmoothingEnabled = false;
    for (const segment of segments) {
      if (segment.voxels === 0) continue;
      ctx.globalAlpha = segment === active ? MASK_ALPHA + 0.1 : MASK_ALPHA;
      ctx.setTransform((x1 - x0) / nu, 0, 0, (y1 - y0) / nv, x0, y0);
      ctx.drawImage(this.maskImage(grid, segment, tile.view, slice), 0, 0);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
  }

  /** One view slice of a segment's mask as an image (cached until the mask, slice or colour changes). */
  maskImage(grid, segment, view, slice) {
    const key = `${segment.version}:${slice}:${segment.color}`;
    const cached = this.cache.get(`${segment.id}:${view}`);
    if (cached && cached.key === key) return cached.image;
    const { u, v } = VIEW_AXES[view];
    const [nu, nv] = [grid.rasShape[u], grid.rasShape[v]];
    const values = grid.viewSlice(segment.mask, view, slice);
    const [r, g, b] = rgb(segment.color);
    const pixels = new ImageData(nu, nv);
    for (let n = 0; n < values.length; n++) {
      if (!values[n]) continue;
      pixels.data.set([r, g, b, 255], 4 * n);
    }
    const image = new OffscreenCanvas(nu, nv);
    image.getContext('2d').putImageData(pixels, 0, 0);
    this.cache.set(`${segment.id}:${view}`, { key, image });
    return image;
  }

  /** Forgets a deleted segment's images. */
  forget(segmentId) {
    for (const key of [...this.cache.keys()]) if (key.startsWith(`${segmentId}:`)) this.cache.delete(key);
  }

  drawPrompts(viewer, grid, tile, k, prompts, color) {
    const box = prompts.box;
    if (box) this.drawBox(viewer, grid, tile, k, box, color, false);
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    const radius = 4 * dpr;
    for (const click of prompts.clicks) {
      const [x, y] = this.voxelCentre(viewer, grid, tile, [click.at[0], click.at[1], k]);
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.fillStyle = click.positive ? '#35d46a' : '#ff4040';
      ctx.fill();
      ctx.lineWidth = 1.5 * dpr;
      ctx.strokeStyle = '#ffffff';
      ctx.stroke();
    }
  }

  /** A box from voxel [i, j] `from` to `to`, inclusive: drawn along the outer edges of both corner voxels. */
  drawBox(viewer, grid, tile, k, { from, to }, color, dashed) {
    const { u, v } = VIEW_AXES[tile.view];
    const a = grid.toRAS([from[0], from[1], k]);
    const b = grid.toRAS([to[0], to[1], k]);
    const [x0, y0] = viewer.rasToCanvas(tile, Math.min(a[u], b[u]), Math.min(a[v], b[v]));
    const [x1, y1] = viewer.rasToCanvas(tile, Math.max(a[u], b[u]) + 1, Math.max(a[v], b[v]) + 1);
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    ctx.setLineDash(dashed ? [6 * dpr, 4 * dpr] : []);
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = color;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  }

  voxelCentre(viewer, grid, tile, file) {
    const { u, v } = VIEW_AXES[tile.view];
    const ras = grid.toRAS(file);
    return viewer.rasToCanvas(tile, ras[u] + 0.5, ras[v] + 0.5);
  }
}

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
