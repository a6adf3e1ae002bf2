/**
 * `window.medicoAnnotator`: what a browser test reads and drives besides the real mouse and controls
 * (web/tests/drive.mjs).
 */

/**
 * @param {import('./app.js').Annotator} app
 * @param {Promise<unknown>} ready resolves once `/info/` is read
 */
export function installTestHooks(app, ready) {
  window.medicoAnnotator = {
    /** Resolves when the page has read `/info/` (rejects with the reason when it could not). */
    ready,

    /**
     * {sessionId, model, shape, slice, segments: [{name, voxels}], busy, completed, error, lastParams,
     * result, dataScans (the server's --data scans, or null), lastSaved (the last "save next to scan"
     * file's path in that folder, or null), labelModel (the current model's `-labels` sibling, or null),
     * lastLabels (the last "label all slices": {model, classes: [{name, voxels}], seconds}, or null)}.
     */
    state() {
      return {
        sessionId: app.session && app.session.id,
        model: app.model,
        shape: app.grid && app.grid.shape,
        slice: app.k,
        segments: app.segments ? app.segments.items.map((s) => ({ name: s.name, voxels: s.voxels })) : [],
        busy: app.busy,
        completed: app.completed,
        error: app.messages.lastError,
        lastParams: app.lastParams,
        result: app.result,
        dataScans: app.dataScans,
        lastSaved: app.lastSaved,
        labelModel: app.labelModel,
        lastLabels: app.lastLabels,
      };
    },

    /**
     * A segment's full mask: {shape: [ni, nj, nk], base64}: the Uint8Array of 0/1 in file order (i
     * fastest), base64-encoded; null for an unknown name.
     */
    segmentMask(name) {
      const segment = app.segments && app.segments.byName(name);
      if (!segment) return null;
      let text = '';
      const chunk = 0x8000;
      for (let at = 0; at < segment.mask.length; at += chunk) text += String.fromCharCode(...segment.mask.subarray(at, at + chunk));
      return { shape: segment.shape.slice(), base64: btoa(text) };
    },

    /**
     * Page coordinates {x, y} (CSS pixels relative to the viewport) of the centre of voxel (i, j) of slice
     * k in the prompted (axial, for an axial scan) view, rounded to whole pixels (mouse events carry whole
     * pixels: Chromium truncates fractions); k must be the slice shown.
     */
    voxelToCanvas(i, j, k) {
      const grid = app.grid;
      if (!grid) throw new Error('no scan shown');
      if (k !== app.k) throw new Error(`slice ${k} is not shown (slice ${app.k} is)`);
      const tile = app.viewer.tile(grid.promptView);
      if (!tile) throw new Error(`the ${grid.promptView} view is not shown`);
      const [x, y] = app.overlay.voxelCentre(app.viewer, grid, tile, [i, j, k]);
      const [px, py] = app.viewer.canvasToPage(x, y);
      return { x: Math.round(px), y: Math.round(py) };
    },

    /** Milliseconds from the last prompt's mouse event to its mask drawn, or null. */
    lastLatencyMs() {
      return app.lastLatencyMs;
    },

    /** Whether a request is in flight. */
    busy() {
      return app.busy;
    },
  };
}
