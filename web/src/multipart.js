/**
 * A reader for the multipart/form-data replies of `POST /infer` (MONAI Label's: a `params` JSON part and
 * the mask file part). Binary-safe: parts are cut at the boundary bytes, never decoded as text.
 */

/** The boundary of a `multipart/...; boundary=X` content type, or null. */
export function boundaryOf(contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType || '');
  return m ? m[1] || m[2] : null;
}

/**
 * Splits a multipart body into its parts.
 * @param {Uint8Array} body
 * @param {string} boundary
 * @returns {{name: string|null, filename: string|null, headers: Object<string,string>, body: Uint8Array}[]}
 */
export function parseMultipart(body, boundary) {
  const delimiter = new TextEncoder().encode(`--${boundary}`);
  const parts = [];
  let at = indexOf(body, delimiter, 0);
  if (at < 0) throw new Error('multipart reply without its boundary');
  for (;;) {
    const start = at + delimiter.length;
    if (body[start] === 0x2d && body[start + 1] === 0x2d) break; // "--": the closing delimiter
    const headEnd = indexOf(body, CRLFCRLF, start);
    if (headEnd < 0) throw new Error('multipart part without the end of its headers');
    const next = indexOf(body, delimiter, headEnd + 4);
    if (next < 0) throw new Error('multipart reply cut short (no closing boundary)');
    const headers = parseHeaders(new TextDecoder().decode(body.subarray(start, headEnd)));
    const disposition = headers['content-disposition'] || '';
    parts.push({
      name: param(disposition, 'name'),
      filename: param(disposition, 'filename'),
      headers,
      body: body.subarray(headEnd + 4, next - 2), // the CRLF before a delimiter belongs to it
    });
    at = next;
  }
  return parts;
}

const CRLFCRLF = new Uint8Array([13, 10, 13, 10]);

function indexOf(haystack, needle, from) {
  const first = needle[0];
  for (let i = haystack.indexOf(first, from); i >= 0 && i + needle.length <= haystack.length; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

function parseHeaders(text) {
  const headers = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

function param(header, key) {
  const m = new RegExp(`(?:^|;)\\s*${key}="([^"]*)"`, 'i').exec(header);
  return m ? m[1] : null;
}
