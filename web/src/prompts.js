/**
 * Prompts of one segment on one slice, and the `params` of `POST /infer` built from them.
 * Coordinates are the uploaded file's voxel indices; a slice is a constant k (the server's slicing axis).
 */

/** The prompts placed on one slice, in the order placed: undo takes back the last one. */
export class SlicePrompts {
  constructor() {
    /** @type {({type: 'box', from: number[], to: number[]} | {type: 'click', at: number[], positive: boolean})[]} */
    this.events = [];
  }

  /** A box from the voxel where the drag started to the one where it ended ([i, j] each, inclusive). */
  addBox(from, to) {
    this.events.push({ type: 'box', from, to });
  }

  /** A click on voxel [i, j]: positive (part of the object) or negative (not). */
  addClick(at, positive) {
    this.events.push({ type: 'click', at, positive });
  }

  /** Takes back the last prompt; returns it, or null when there was none. */
  undo() {
    return this.events.pop() || null;
  }

  /** Removes every prompt. */
  clear() {
    this.events = [];
  }

  /** Whether no prompt is left. */
  get empty() {
    return this.events.length === 0;
  }

  /** The box in force (the last one drawn), or null. */
  get box() {
    for (let n = this.events.length - 1; n >= 0; n--) if (this.events[n].type === 'box') return this.events[n];
    return null;
  }

  /** The clicks, in order. */
  get clicks() {
    return this.events.filter((e) => e.type === 'click');
  }
}

/**
 * The `params` of a request segmenting slice `k` from its prompts.
 * @param {SlicePrompts} prompts
 * @param {number} k the slice
 * @param {string} label the segment's name
 * The box goes as an ROI one slice thick ([i0, i1, j0, j1, k, k]): a 2D request's box, and for a 3D request
 * (`MODEL-3d`) the box on the prompted slice without bounding the walk (the server bounds a walk only by a
 * thicker ROI, as 3D Slicer's), so the same params serve both.
 */
export function inferParams(prompts, k, label) {
  const clicks = prompts.clicks;
  const params = {
    // In the order they were made: with a model that feeds each round's mask back, every click corrects
    // the mask the clicks before it gave (docs/corrections.md).
    clicks: clicks.map((c) => [c.at[0], c.at[1], k, c.positive ? 1 : 0]),
  };
  const box = prompts.box;
  if (box) params.roi = [box.from[0], box.to[0], box.from[1], box.to[1], k, k];
  return Object.assign(params, { slice: k, result_extension: '.nii.gz', label });
}
