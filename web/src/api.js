/**
 * The HTTP API of `medico-cli serve` (MONAI Label's subset: docs/serve.md). Every failure becomes an
 * ApiError whose message is the server's `detail` with the status, or says why the server was not reached.
 */

import { boundaryOf, parseMultipart } from './multipart.js';

export class ApiError extends Error {
  /** @param {number} status HTTP status (0: no answer) @param {string} message */
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export class Api {
  /** @param {string} base the server's origin, '' for the page's own */
  constructor(base) {
    this.base = base.replace(/\/+$/, '');
    /** The API key sent as X-API-Key, when the server asks for one. */
    this.key = null;
  }

  /** `GET /auth/`: {enabled, client_id, realm}. */
  auth() {
    return this.json('GET', '/auth/');
  }

  /** Whether `key` is accepted (`GET /auth/token/valid` with it); keeps it when it is. */
  async tryKey(key) {
    const previous = this.key;
    this.key = key;
    try {
      await this.request('GET', '/auth/token/valid');
      return true;
    } catch (e) {
      this.key = previous;
      if (e instanceof ApiError && e.status === 401) return false;
      throw e;
    }
  }

  /** `GET /info/`: the app's description, with `models`. */
  info() {
    return this.json('GET', '/info/');
  }

  /**
   * `PUT /session/`: uploads a volume (one NIfTI/NRRD file, a zip of a DICOM series or its files).
   * @param {File[]} files
   * @returns {Promise<{session_id: string, session_info: {meta: {shape: number[], spacing: number[], orientation: string, format: string}}}>}
   */
  openSession(files) {
    const form = new FormData();
    for (const f of files) form.append('files', f, f.name);
    return this.json('PUT', '/session/', form);
  }

  /**
   * `GET /annotator/scans`: the scans in the server's `--data` folder (paths relative to it, '/'-separated;
   * a folder is a DICOM series), or null when the server has no such folder (404).
   * @returns {Promise<string[]|null>}
   */
  async scans() {
    try {
      const { scans } = await this.json('GET', '/annotator/scans');
      if (!Array.isArray(scans) || !scans.every((s) => typeof s === 'string')) throw new ApiError(200, 'GET /annotator/scans: the reply has no list of scans');
      return scans;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }

  /**
   * `PUT /annotator/open?scan=REL`: opens a scan of the server's folder as a session; the same reply as
   * `PUT /session/`.
   */
  openScan(rel) {
    return this.json('PUT', scanPath('open', rel));
  }

  /**
   * `GET /annotator/scan?scan=REL`: the scan's bytes (a NIfTI/NRRD file as it is; a DICOM series folder as
   * a zip of its files).
   * @returns {Promise<{bytes: Uint8Array, contentType: string}>}
   */
  async scanBytes(rel) {
    const response = await this.request('GET', scanPath('scan', rel));
    return { bytes: new Uint8Array(await response.arrayBuffer()), contentType: response.headers.get('content-type') || '' };
  }

  /**
   * `POST /annotator/save?session_id=ID&label=NAME`, the body a mask file (.nii.gz): the server writes it
   * next to the session's scan in its folder.
   * @returns {Promise<{saved: string}>} the new file's path relative to the folder
   */
  saveNextToScan(sessionId, label, bytes) {
    return this.json('POST', savePath(sessionId, label), new Blob([bytes]), { 'Content-Type': 'application/octet-stream' });
  }

  /** `DELETE /session/{id}`. */
  async closeSession(id) {
    await this.request('DELETE', `/session/${encodeURIComponent(id)}`);
  }

  /**
   * `POST /infer/{model}?session_id=ID&output=OUTPUT` with the multipart field `params`.
   * @param {string} output 'all' (the default reply: {params, file: {name, bytes}}), or 'image' /
   *   'dicom_seg' (the file alone: {name, bytes})
   * @param {AbortSignal} [signal] aborting the request closes the connection; the server then stops
   */
  async infer(model, sessionId, params, output, signal) {
    const form = new FormData();
    form.append('params', JSON.stringify(params));
    const query = `session_id=${encodeURIComponent(sessionId)}&output=${output}`;
    const response = await this.request('POST', `/infer/${encodeURIComponent(model)}?${query}`, form, signal);
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (output !== 'all') return { name: filenameOf(response.headers.get('content-disposition')), bytes };
    const boundary = boundaryOf(response.headers.get('content-type'));
    if (!boundary) throw new ApiError(response.status, 'the inference reply is not multipart');
    const parts = parseMultipart(bytes, boundary);
    const paramsPart = parts.find((p) => p.name === 'params');
    const filePart = parts.find((p) => p.filename !== null);
    if (!paramsPart || !filePart) throw new ApiError(response.status, 'the inference reply lacks its params or its mask');
    return { params: JSON.parse(new TextDecoder().decode(paramsPart.body)), file: { name: filePart.filename, bytes: filePart.body } };
  }

  async json(method, path, body, headers) {
    return (await this.request(method, path, body, undefined, headers)).json();
  }

  /** One request; resolves to the Response when its status is 2xx, otherwise throws ApiError. */
  async request(method, path, body, signal, extraHeaders = {}) {
    const headers = { ...extraHeaders, ...(this.key ? { 'X-API-Key': this.key } : {}) };
    let response;
    try {
      response = await fetch(`${this.base}${path}`, { method, body, headers, signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, `${method} ${path}: no answer from the server at ${this.base || location.origin} (is it running${
        this.base ? `, started with --allowed-origin ${location.origin}` : ''}?)`);
    }
    if (response.ok) return response;
    let detail = response.statusText;
    try {
      const payload = await response.json();
      if (payload && payload.detail !== undefined) detail = typeof payload.detail === 'string' ? payload.detail : JSON.stringify(payload.detail);
    } catch {
      // not JSON (hyper's own refusals have no body): the status text stands
    }
    throw new ApiError(response.status, `${method} ${path.split('?')[0]}: ${response.status} ${detail}`);
  }
}

/** The path of `/annotator/{what}?scan=REL` (`open` or `scan`) for a scan of the server's folder. */
export function scanPath(what, rel) {
  return `/annotator/${what}?scan=${encodeURIComponent(rel)}`;
}

/** The path of `POST /annotator/save` for a session's mask labelled `label`. */
export function savePath(sessionId, label) {
  return `/annotator/save?session_id=${encodeURIComponent(sessionId)}&label=${encodeURIComponent(label)}`;
}

function filenameOf(disposition) {
  const m = /filename="([^"]*)"/i.exec(disposition || '');
  return m ? m[1] : null;
}
