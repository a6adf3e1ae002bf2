/**
 * The page's controls: the message bar, the progress of long requests, the segment list, the API key
 * form and the small read-outs. DOM only; what the controls do is wired in main.js.
 */

/** Looks up an element by id (throws when the page lacks it). */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el;
}

/** The message bar: errors stay until dismissed or replaced; notes fade after a while. */
export class Messages {
  constructor(bar) {
    this.bar = bar;
    this.text = bar.querySelector('.text');
    bar.querySelector('button').addEventListener('click', () => this.clear());
    this.timer = null;
  }

  /** Shows an error (what failed and the server's detail). */
  error(message) {
    this.show(message, 'error', 0);
    console.error(message);
  }

  /** Shows a note for a few seconds. */
  note(message) {
    this.show(message, 'note', 6000);
  }

  show(message, kind, ms) {
    clearTimeout(this.timer);
    this.text.textContent = message;
    this.bar.className = `message ${kind}`;
    this.bar.hidden = false;
    if (ms) this.timer = setTimeout(() => this.clear(), ms);
  }

  /** The error shown, or null. */
  get lastError() {
    return !this.bar.hidden && this.bar.classList.contains('error') ? this.text.textContent : null;
  }

  clear() {
    this.bar.hidden = true;
  }
}

/** A spinner with a label, the elapsed seconds and an optional cancel button. */
export class Progress {
  constructor(box) {
    this.box = box;
    this.label = box.querySelector('.label');
    this.elapsed = box.querySelector('.elapsed');
    this.cancel = box.querySelector('button');
    this.timer = null;
  }

  /** Starts showing `label`; `onCancel` (optional) is called by the cancel button. */
  start(label, onCancel) {
    const t0 = performance.now();
    this.label.textContent = label;
    this.cancel.hidden = !onCancel;
    this.cancel.onclick = onCancel || null;
    const tick = () => (this.elapsed.textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s`);
    tick();
    clearInterval(this.timer);
    this.timer = setInterval(tick, 100);
    this.box.hidden = false;
  }

  stop() {
    clearInterval(this.timer);
    this.box.hidden = true;
  }
}

/**
 * Brings the segment list up to date: one row per segment (active marker, colour, name, voxels, delete).
 * Rows are kept across updates, so a name being typed is not lost when a reply arrives.
 * @param {HTMLElement} list
 * @param {import('./segments.js').SegmentList} segments
 * @param {{activate: (id) => void, rename: (id, name) => void, recolor: (id, color) => void, remove: (id) => void}} on
 */
export function renderSegments(list, segments, on) {
  const rows = new Map([...list.children].map((row) => [Number(row.dataset.id), row]));
  for (const [id, row] of rows) if (!segments.get(id)) row.remove();
  segments.items.forEach((s, index) => {
    const row = rows.get(s.id) || segmentRow(s, on);
    if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null); // moves no focused row
    row.classList.toggle('active', s.id === segments.activeId);
    row.querySelector('input[type=radio]').checked = s.id === segments.activeId;
    const name = row.querySelector('.name');
    if (document.activeElement !== name) name.value = s.name;
    row.querySelector('.voxels').textContent = `${s.voxels.toLocaleString('en')} vx`;
  });
}

function segmentRow(s, on) {
  const row = element('li', { className: 'segment' });
  row.dataset.id = s.id;
  const pick = element('input', { type: 'radio', name: 'active-segment', title: 'prompt this segment' });
  pick.addEventListener('change', () => on.activate(s.id));
  const color = element('input', { type: 'color', value: s.color, title: 'colour' });
  color.addEventListener('input', () => on.recolor(s.id, color.value));
  const name = element('input', { type: 'text', className: 'name', title: 'name (the label sent to the server)', maxLength: 64 });
  name.addEventListener('change', () => on.rename(s.id, name.value));
  name.addEventListener('focus', () => on.activate(s.id));
  const voxels = element('span', { className: 'voxels' });
  const remove = element('button', { type: 'button', textContent: '✕', title: 'delete this segment', className: 'icon' });
  remove.addEventListener('click', () => on.remove(s.id));
  row.append(pick, color, name, voxels, remove);
  return row;
}

function element(tag, props) {
  return Object.assign(document.createElement(tag), props);
}

/**
 * Asks for the API key until `check(key)` accepts it.
 * @param {HTMLDialogElement} dialog holding a form with an input named "key" and an .error element
 * @param {(key: string) => Promise<boolean>} check
 */
export function askKey(dialog, check) {
  const form = dialog.querySelector('form');
  const input = form.elements.key;
  const error = dialog.querySelector('.error');
  return new Promise((resolve) => {
    form.onsubmit = async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        if (await check(input.value)) {
          dialog.close();
          resolve();
        } else error.textContent = 'This key is not accepted.';
      } catch (err) {
        error.textContent = err.message;
      }
    };
    dialog.showModal();
    input.focus();
  });
}
