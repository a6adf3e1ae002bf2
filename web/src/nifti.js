/**
 * Just enough NIfTI for masks: read the server's mask files (NIfTI-1 or -2, gzip or not, either byte
 * order), whole or one slice, and write a mask back with the header of one of them. Gzip goes through
 * the browser's (De)CompressionStream.
 */

const GZIP_MAGIC = [0x1f, 0x8b];

/** Whether bytes start with the gzip magic. */
function isGzip(bytes) {
  return bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
}

/** Deflates bytes into one gzip member. */
export async function gzip(bytes) {
  return new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer());
}

/**
 * The first `n` bytes of a file's content (all of it when shorter), inflating gzip only as far as needed:
 * a mask's slice k lies in its first k + 1 slabs.
 */
async function head(bytes, n) {
  if (!isGzip(bytes)) return bytes.subarray(0, n);
  const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip')).getReader();
  const chunks = [];
  let length = 0;
  while (length < n) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
  }
  reader.cancel().catch(() => {});
  const out = new Uint8Array(Math.min(n, length));
  let at = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, out.length - at);
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Field offsets of the two header versions. */
const LAYOUT = {
  1: { dim: 40, datatype: 70, bitpix: 72, voxOffset: 108, slope: 112, inter: 116 },
  2: { dim: 16, datatype: 12, bitpix: 14, voxOffset: 168, slope: 176, inter: 184 },
};

/** Voxel readers by NIfTI datatype code. */
const TYPES = {
  2: [1, 'getUint8'], 4: [2, 'getInt16'], 8: [4, 'getInt32'], 16: [4, 'getFloat32'], 64: [8, 'getFloat64'],
  256: [1, 'getInt8'], 512: [2, 'getUint16'], 768: [4, 'getUint32'],
};

/**
 * Parses an uncompressed NIfTI file's header.
 * @returns {{version: 1|2, littleEndian: boolean, shape: number[], datatype: number, voxOffset: number}}
 */
export function readHeader(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const littleEndian of [true, false]) {
    const size = view.getInt32(0, littleEndian);
    const version = size === 348 ? 1 : size === 540 ? 2 : 0;
    if (!version) continue;
    const L = LAYOUT[version];
    const dim = (d) => (version === 1 ? view.getInt16(L.dim + 2 * d, littleEndian) : Number(view.getBigInt64(L.dim + 8 * d, littleEndian)));
    const shape = [1, 2, 3].map((d) => (d <= dim(0) ? Math.max(1, dim(d)) : 1));
    return {
      version,
      littleEndian,
      shape,
      datatype: view.getInt16(L.datatype, littleEndian),
      voxOffset: version === 1 ? view.getFloat32(L.voxOffset, littleEndian) : Number(view.getBigInt64(L.voxOffset, littleEndian)),
    };
  }
  throw new Error('not a NIfTI file (sizeof_hdr is neither 348 nor 540)');
}

/**
 * Reads a NIfTI mask (gzip or not) as 0/1 values in file order (i fastest): the whole volume, or only
 * slice k (the k-th slab of ni x nj voxels; the file is inflated no further than that).
 * @param {Uint8Array} bytes
 * @param {number} [k]
 * @returns {Promise<{shape: number[], mask: Uint8Array, header: Uint8Array}>} header: the bytes before
 *   the voxel data (header and extensions), uncompressed
 */
export async function readMask(bytes, k) {
  const hdr = readHeader(await head(bytes, 540));
  const type = TYPES[hdr.datatype];
  if (!type) throw new Error(`mask file: NIfTI datatype ${hdr.datatype} is not read here`);
  const [size, getter] = type;
  const slab = hdr.shape[0] * hdr.shape[1];
  if (k !== undefined && !(k >= 0 && k < hdr.shape[2])) throw new Error(`mask file: no slice ${k} in ${hdr.shape.join(' x ')}`);
  const [first, count] = k === undefined ? [0, slab * hdr.shape[2]] : [k * slab, slab];
  const end = hdr.voxOffset + (first + count) * size;
  const raw = await head(bytes, end);
  if (raw.length < end) throw new Error('mask file: shorter than its header declares');
  const mask = new Uint8Array(count);
  const at = hdr.voxOffset + first * size;
  if (size === 1) {
    for (let n = 0; n < count; n++) mask[n] = raw[at + n] !== 0 ? 1 : 0;
  } else {
    const view = new DataView(raw.buffer, raw.byteOffset + at, count * size);
    for (let n = 0; n < count; n++) mask[n] = view[getter](n * size, hdr.littleEndian) !== 0 ? 1 : 0;
  }
  return { shape: hdr.shape, mask, header: raw.slice(0, hdr.voxOffset) };
}

/**
 * Reads a NIfTI label map (gzip or not): the whole volume's voxel values in file order (i fastest), rounded
 * to integers (a semantic reply's classes: 0 background, k class k).
 * @param {Uint8Array} bytes
 * @returns {Promise<{shape: number[], values: Int32Array, header: Uint8Array}>} header as in readMask
 */
export async function readLabels(bytes) {
  const hdr = readHeader(await head(bytes, 540));
  const type = TYPES[hdr.datatype];
  if (!type) throw new Error(`label map: NIfTI datatype ${hdr.datatype} is not read here`);
  const [size, getter] = type;
  const count = hdr.shape[0] * hdr.shape[1] * hdr.shape[2];
  const end = hdr.voxOffset + count * size;
  const raw = await head(bytes, end);
  if (raw.length < end) throw new Error('label map: shorter than its header declares');
  const values = new Int32Array(count);
  if (size === 1 && getter === 'getUint8') {
    values.set(raw.subarray(hdr.voxOffset, end));
  } else {
    const view = new DataView(raw.buffer, raw.byteOffset + hdr.voxOffset, count * size);
    for (let n = 0; n < count; n++) values[n] = Math.round(view[getter](n * size, hdr.littleEndian));
  }
  return { shape: hdr.shape, values, header: raw.slice(0, hdr.voxOffset) };
}

/**
 * A NIfTI file of a 0/1 mask with the header (and extensions) of a mask file read by `readMask`, set to
 * uint8 with no scaling: the same grid, affine and orientation as the server's masks.
 * @param {Uint8Array} header the header bytes returned by readMask
 * @param {Uint8Array} mask values in file order
 * @returns {Promise<Uint8Array>} gzip-compressed .nii.gz bytes
 */
export async function writeMask(header, mask) {
  const hdr = readHeader(header);
  const count = hdr.shape[0] * hdr.shape[1] * hdr.shape[2];
  if (count !== mask.length) throw new Error(`mask of ${mask.length} voxels for a ${hdr.shape.join('x')} header`);
  const out = new Uint8Array(header.length + count);
  out.set(header);
  out.set(mask, header.length);
  const view = new DataView(out.buffer);
  const L = LAYOUT[hdr.version];
  view.setInt16(L.datatype, 2, hdr.littleEndian); // DT_UINT8
  view.setInt16(L.bitpix, 8, hdr.littleEndian);
  if (hdr.version === 1) {
    view.setFloat32(L.slope, 1, hdr.littleEndian);
    view.setFloat32(L.inter, 0, hdr.littleEndian);
  } else {
    view.setFloat64(L.slope, 1, hdr.littleEndian);
    view.setFloat64(L.inter, 0, hdr.littleEndian);
  }
  return gzip(out);
}
