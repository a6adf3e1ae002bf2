/**
 * Labelled segments: each has a name, a colour, its prompts by slice and its full mask on the volume's
 * grid (a Uint8Array of 0/1 in file order, i fastest), merged from the server's replies.
 */

import { SlicePrompts } from './prompts.js';

const PALETTE = ['#ff5a5a', '#4da3ff', '#ffd23f', '#5fdc7a', '#c77dff', '#ff9f43', '#3fe0d0', '#ff6fb5'];

export class Segment {
  /**
   * @param {number} id
   * @param {string} name
   * @param {string} color CSS hex colour
   * @param {number[]} shape the volume's [ni, nj, nk]
   */
  constructor(id, name, color, shape) {
    this.id = id;
    this.name = name;
    this.color = color;
    this.shape = shape;
    this.mask = new Uint8Array(shape[0] * shape[1] * shape[2]);
    this.voxels = 0;
    /** Incremented on every change of the mask (for caches). */
    this.version = 0;
    /** @type {Map<number, SlicePrompts>} */
    this.prompts = new Map();
    /** The last reply: {model, params, header (NIfTI header bytes of its mask), score, serverMs}, or null. */
    this.last = null;
  }

  /** The prompts of slice k (created empty on first use). */
  promptsOn(k) {
    if (!this.prompts.has(k)) this.prompts.set(k, new SlicePrompts());
    return this.prompts.get(k);
  }

  /** Replaces slice k with `values` (ni x nj, i fastest; null: clears it). */
  replaceSlice(k, values) {
    const n = this.shape[0] * this.shape[1];
    const [from, to] = [k * n, (k + 1) * n];
    this.voxels -= count(this.mask, from, to);
    if (values) this.mask.set(values, from);
    else this.mask.fill(0, from, to);
    this.voxels += count(this.mask, from, to);
    this.version++;
  }

  /** Replaces the whole mask. */
  replaceAll(source) {
    this.mask.set(source);
    this.voxels = count(this.mask, 0, this.mask.length);
    this.version++;
  }
}

function count(mask, from, to) {
  let n = 0;
  for (let i = from; i < to; i++) n += mask[i];
  return n;
}

/** The segments of a session and which one is active. */
export class SegmentList {
  /** @param {number[]} shape the volume's [ni, nj, nk] */
  constructor(shape) {
    this.shape = shape;
    /** @type {Segment[]} */
    this.items = [];
    this.activeId = null;
    this.nextId = 1;
  }

  /** Adds a segment (named "segment N" unless a name is given), makes it active and returns it. */
  add(name) {
    const id = this.nextId++;
    const segment = new Segment(id, this.uniqueName(name || `segment ${id}`), PALETTE[(id - 1) % PALETTE.length], this.shape);
    this.items.push(segment);
    this.activeId = id;
    return segment;
  }

  /** Deletes a segment; the active one becomes the last remaining (or none). */
  remove(id) {
    this.items = this.items.filter((s) => s.id !== id);
    if (this.activeId === id) this.activeId = this.items.length ? this.items[this.items.length - 1].id : null;
  }

  /** Renames a segment; a name already taken gets a suffix. Returns the name given. */
  rename(id, name) {
    const segment = this.get(id);
    segment.name = this.uniqueName(name.trim() || segment.name, id);
    return segment.name;
  }

  /** The segment with this id, or undefined. */
  get(id) {
    return this.items.find((s) => s.id === id);
  }

  /** The segment with this name, or undefined. */
  byName(name) {
    return this.items.find((s) => s.name === name);
  }

  /** The active segment, or undefined. */
  get active() {
    return this.get(this.activeId);
  }

  /** `name`, or `name (2)`, `name (3)`... when another segment than `exceptId` has it. */
  uniqueName(name, exceptId) {
    const taken = (candidate) => this.items.some((s) => s.name === candidate && s.id !== exceptId);
    let candidate = name;
    for (let n = 2; taken(candidate); n++) candidate = `${name} (${n})`;
    return candidate;
  }
}

/**
 * Splits a label map into one 0/1 mask per class.
 * @param {ArrayLike<number>} values the label map's voxel values (0: background, k: class k)
 * @param {Record<string, number>} labels class name -> its value k (a reply's `label_names`)
 * @returns {{name: string, value: number, mask: Uint8Array, voxels: number}[]} in the order of `labels`;
 *   values of no class are ignored
 */
export function splitLabels(values, labels) {
  const classes = Object.entries(labels).map(([name, value]) => ({ name, value: Number(value), mask: new Uint8Array(values.length), voxels: 0 }));
  const byValue = new Map();
  for (const c of classes) {
    if (!Number.isInteger(c.value) || c.value <= 0) throw new Error(`class ${c.name}: label value ${c.value} is not a positive integer`);
    if (byValue.has(c.value)) throw new Error(`classes ${byValue.get(c.value).name} and ${c.name} share the label value ${c.value}`);
    byValue.set(c.value, c);
  }
  for (let n = 0; n < values.length; n++) {
    const v = values[n];
    if (v === 0) continue;
    const c = byValue.get(v);
    if (c) {
      c.mask[n] = 1;
      c.voxels++;
    }
  }
  return classes;
}
