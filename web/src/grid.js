/**
 * The volume's voxel grid as the server and the viewer index it.
 *
 * The server takes prompts and writes masks in the uploaded file's voxel indices (i, j, k), i fastest in
 * memory, and segments slices along k. NiiVue keeps the file's voxels as they are but displays them
 * reoriented to RAS: its `permRAS` says, for each RAS axis x/y/z, which file axis runs along it (1-based)
 * and whether it runs backwards (negative). Both are exact integer permutations and flips, so the two
 * index spaces map onto each other voxel for voxel, whatever the file's orientation.
 */

/** NiiVue's 2D views, by the RAS axis they look along: x (sagittal), y (coronal), z (axial). */
export const VIEW_OF_AXIS = ['sagittal', 'coronal', 'axial'];

/** For each view, the RAS axes running across (u) and up (v) the screen, and the one it looks along (w). */
export const VIEW_AXES = {
  axial: { u: 0, v: 1, w: 2 },
  coronal: { u: 0, v: 2, w: 1 },
  sagittal: { u: 1, v: 2, w: 0 },
};

export class VoxelGrid {
  /**
   * @param {number[]} shape the file's dimensions [ni, nj, nk]
   * @param {number[]} permRAS NiiVue's permutation, e.g. [1, 2, 3] (RAS file) or [-1, 2, 3] (LAS file)
   */
  constructor(shape, permRAS) {
    const axes = permRAS.map((p) => Math.abs(p) - 1);
    if ([...axes].sort().join() !== '0,1,2') throw new Error(`not a permutation of the axes: ${permRAS}`);
    this.shape = shape.slice(0, 3);
    this.fileAxisOf = axes;
    this.flipped = permRAS.map((p) => p < 0);
    this.rasShape = axes.map((a) => this.shape[a]);
    const fileStrides = [1, this.shape[0], this.shape[0] * this.shape[1]];
    // File index of RAS voxel (x, y, z) = start + x * step[0] + y * step[1] + z * step[2].
    this.step = axes.map((a, p) => (this.flipped[p] ? -fileStrides[a] : fileStrides[a]));
    this.start = axes.reduce((s, a, p) => s + (this.flipped[p] ? fileStrides[a] * (this.shape[a] - 1) : 0), 0);
  }

  /** The RAS axis along which the file's axis `fileAxis` (0, 1, 2) runs. */
  rasAxisOf(fileAxis) {
    return this.fileAxisOf.indexOf(fileAxis);
  }

  /** The view whose slices are the server's slices (constant k): the one looking along file axis k. */
  get promptView() {
    return VIEW_OF_AXIS[this.rasAxisOf(2)];
  }

  /** The server slice k shown at RAS index `r` along the prompted view's axis, and back (the same map). */
  kOfRAS(r) {
    const p = this.rasAxisOf(2);
    return this.flipped[p] ? this.shape[2] - 1 - r : r;
  }

  /** File indices [i, j, k] of RAS voxel indices [x, y, z]. */
  fromRAS(ras) {
    const file = [0, 0, 0];
    ras.forEach((r, p) => {
      const a = this.fileAxisOf[p];
      file[a] = this.flipped[p] ? this.shape[a] - 1 - r : r;
    });
    return file;
  }

  /** RAS voxel indices [x, y, z] of file indices [i, j, k]. */
  toRAS(file) {
    return this.fileAxisOf.map((a, p) => (this.flipped[p] ? this.shape[a] - 1 - file[a] : file[a]));
  }

  /**
   * One slice of a file-ordered mask as seen in `view` at RAS index `w`: a Uint8Array of
   * rasShape[u] x rasShape[v] values, u fastest, v = 0 first (the bottom of the screen).
   */
  viewSlice(mask, view, w) {
    const { u, v, w: axis } = VIEW_AXES[view];
    const [nu, nv] = [this.rasShape[u], this.rasShape[v]];
    const out = new Uint8Array(nu * nv);
    const [su, sv] = [this.step[u], this.step[v]];
    let row = this.start + w * this.step[axis];
    for (let y = 0, o = 0; y < nv; y++, row += sv) {
      for (let x = 0, idx = row; x < nu; x++, idx += su, o++) out[o] = mask[idx];
    }
    return out;
  }
}
