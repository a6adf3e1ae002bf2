/**
 * Mouse gestures on the prompted view turned into prompts: in "box" mode a left drag draws a box (a left
 * click without dragging is a positive click), in "click" mode a left click is a positive click; in both,
 * shift+click or a right click is a negative click. Gestures elsewhere (other views, "navigate" mode, the
 * middle button, the wheel) are left to NiiVue: crosshair, slices, window, pan.
 */

const DRAG_THRESHOLD_PX = 3;

export class PromptInput {
  /**
   * @param {HTMLElement} container the element holding NiiVue's canvas (listened to in the capture phase,
   *   so a gesture taken here never reaches NiiVue)
   * @param {import('./viewer.js').Viewer} viewer
   * @param {object} hooks
   * @param {() => ('box'|'click'|'navigate')} hooks.tool
   * @param {() => (import('./grid.js').VoxelGrid|null)} hooks.grid the grid, null while no scan is shown
   * @param {(prompt: object, timeStamp: number) => void} hooks.prompt a finished prompt: {type: 'box',
   *   from: [i, j], to: [i, j]} or {type: 'click', at: [i, j], positive}; timeStamp: the mouse event's
   * @param {(dragging: {from: number[], to: number[]}|null) => void} hooks.drag the box while dragging
   */
  constructor(container, viewer, hooks) {
    this.viewer = viewer;
    this.hooks = hooks;
    this.press = null;
    container.addEventListener('mousedown', (e) => this.down(e), { capture: true });
    window.addEventListener('mousemove', (e) => this.move(e), { capture: true });
    window.addEventListener('mouseup', (e) => this.up(e), { capture: true });
  }

  /** The voxel [i, j, k] under a mouse event on the prompted view's tile, or null. */
  voxelAt(e, tile, clamp = false) {
    const [x, y] = this.viewer.pageToCanvas(e.clientX, e.clientY);
    const ras = this.viewer.canvasToRAS(tile, x, y, clamp);
    return ras && this.hooks.grid().fromRAS(ras);
  }

  down(e) {
    const grid = this.hooks.grid();
    const tool = this.hooks.tool();
    if (!grid || tool === 'navigate' || (e.button !== 0 && e.button !== 2)) return;
    const tile = this.viewer.tileAt(...this.viewer.pageToCanvas(e.clientX, e.clientY));
    if (!tile || tile.view !== grid.promptView) return;
    e.stopPropagation();
    e.preventDefault();
    const start = this.voxelAt(e, tile);
    if (!start) return; // beside the volume (zoomed out)
    const negative = e.button === 2 || e.shiftKey;
    this.press = { tile, start, negative, box: tool === 'box' && !negative, x: e.clientX, y: e.clientY, moved: false };
  }

  move(e) {
    if (!this.press) return;
    e.stopPropagation();
    const p = this.press;
    p.moved = p.moved || Math.hypot(e.clientX - p.x, e.clientY - p.y) > DRAG_THRESHOLD_PX;
    if (p.box && p.moved) this.hooks.drag({ from: p.start.slice(0, 2), to: this.voxelAt(e, p.tile, true).slice(0, 2) });
  }

  up(e) {
    if (!this.press) return;
    e.stopPropagation();
    const p = this.press;
    this.press = null;
    if (p.box && p.moved) {
      this.hooks.drag(null);
      this.hooks.prompt({ type: 'box', from: p.start.slice(0, 2), to: this.voxelAt(e, p.tile, true).slice(0, 2) }, e.timeStamp);
    } else {
      this.hooks.prompt({ type: 'click', at: p.start.slice(0, 2), positive: !p.negative }, e.timeStamp);
    }
  }
}
