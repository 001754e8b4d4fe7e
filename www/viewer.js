// viewer.js — one job: the result panel. It says which model read the image and why, shows
// the decision against its threshold with the model's measured cautions, draws the image as
// displayed and as the model saw it, and the Grad-CAM overlay with its colour scale (requested
// from the worker, blended over the image, exported as a stamped PNG). Window/level is a
// display control only: the model always reads its trained input; a labelled teaching
// one-off classifies the shown image once with another window and never replaces its result.
// When the gate refuses or is unsure, it asks which model should read this one file.
// The window presets, colour maps and heat transparency come from the engine
// (`page_constants()`), not from here.
import { call } from './rpc.js';
import { bump, record } from './hooks.js';
import { engineName } from './status.js';

const $ = (id) => document.getElementById(id);
const viewer = {
  manifest: null,
  version: '',
  constants: null,
  presets: [], // [{id, label, center, width}] from the engine
  current: null, // {row, r}: the analysis shown
  heat: null, // {width, height, layer, class, canvas}: the last Grad-CAM drawn
  explaining: null, // key of the newest heatmap request (older replies are dropped)
  firstResultAt: null,
  shown: 0, // results and errors shown (the hooks' `results`)
  windowTimer: null,
  onReadAs: () => {}, // read the shown file again with a model chosen for it (set by setupViewer)
};

// Descriptions shown after a colour map's name (maps not listed here get none).
const COLORMAP_NOTES = { viridis: 'colour-blind safe', cividis: 'colour-blind safe' };
const MODEL_WORDS = { ct: 'the chest CT model', cxr: 'the chest X-ray model' };

export function pct(p) { return `${(100 * p).toFixed(1)} %`; }

// −600 with a real minus sign, as the window presets are written.
const hu = (v) => (v < 0 ? `−${Math.abs(v)}` : String(v));

/** Take the manifest and the engine's constants: build the preset and colour-map menus. */
export function configureViewer({ manifest, constants, version }) {
  viewer.manifest = manifest;
  viewer.constants = constants;
  viewer.version = version || '';
  viewer.presets = constants.window_presets;
  presetMenu(true);
  const cmap = $('cam-cmap');
  const keepMap = cmap.value;
  cmap.replaceChildren(...constants.colormaps.map((c) => new Option(COLORMAP_NOTES[c] ? `${c} (${COLORMAP_NOTES[c]})` : c, c)));
  if (constants.colormaps.includes(keepMap)) cmap.value = keepMap;
  drawScale();
}

// The preset menu: the engine's CT windows only for images in Hounsfield units.
function presetMenu(withCt) {
  const preset = $('window-preset');
  for (const o of [...preset.querySelectorAll('option.engine-preset')]) o.remove();
  if (!withCt) return;
  const before = preset.querySelector('option[value="file"]');
  for (const p of viewer.presets) {
    const text = /\d/.test(p.label) ? p.label : `${p.label} (W ${hu(p.width)} / L ${hu(p.center)})`;
    const o = new Option(text, p.id);
    o.className = 'engine-preset';
    preset.insertBefore(o, before);
  }
}

/** The display window the user chose, as the engine's WindowChoice. */
function windowChoice() {
  const choice = $('window-preset').value;
  if (choice === 'auto') return { kind: 'auto' };
  if (choice === 'file') return { kind: 'from_file' };
  const p = viewer.presets.find((x) => x.id === choice);
  if (p) return { kind: 'custom', center: p.center, width: p.width };
  return { kind: 'custom', center: Number($('window-center').value), width: Math.max(1, Number($('window-width').value)) };
}

function markResult() {
  if (viewer.firstResultAt === null) {
    viewer.firstResultAt = performance.now();
    record({ firstResultMs: Math.round(viewer.firstResultAt) });
  }
  const cur = viewer.current;
  record({
    current: cur && {
      name: cur.row.name,
      model: cur.r.model,
      refused: cur.r.refused,
      asked: !$('ask').hidden,
      label: cur.r.prediction?.label ?? null,
      decision: cur.r.decision?.label ?? cur.r.prediction?.label ?? null,
      probabilities: cur.r.prediction?.probabilities ? Array.from(cur.r.prediction.probabilities) : null,
      gate: cur.r.gate?.reason ?? null,
    },
  });
  viewer.shown++;
  bump('results');
}

function hideResultParts() {
  for (const id of ['prediction', 'viewer', 'controls', 'ask', 'cam-help']) $(id).hidden = true;
}

export function showError(row, e) {
  $('result').hidden = false;
  $('result-file').textContent = row.name;
  const m = $('message');
  m.hidden = false;
  m.className = 'message error';
  m.dataset.kind = e.kind || 'error';
  m.textContent = `Could not read this file: ${e.message || e}`;
  $('study').hidden = true;
  hideResultParts();
  $('gate').textContent = '';
  $('timings').textContent = '';
  viewer.current = null;
  markResult();
}

/** Empty the result panel (the batch was cleared). */
export function clearViewer() {
  viewer.current = null;
  viewer.heat = null;
  viewer.explaining = null;
  $('result').hidden = true;
  $('message').hidden = true;
  hideResultParts();
  for (const id of ['result-file', 'gate', 'timings', 'decision', 'decision-rule', 'model-read', 'window-trial', 'ask-text']) $(id).textContent = '';
  $('bars').replaceChildren();
  $('cautions').replaceChildren();
  for (const id of ['original', 'seen', 'overlay']) {
    const c = $(id);
    c.width = 0;
    c.height = 0;
  }
  record({ current: null });
}

// Who chose the model, in words.
function chosenBy(row, r) {
  const g = r.gate;
  if (g) return `chosen by the input gate: ${g.reason}`;
  return row.readAs ? 'chosen by you for this file' : 'chosen by you for every file (the input gate\'s network is off)';
}

/** The batch row whose result is on screen (null when none). */
export const shownRow = () => viewer.current?.row ?? null;

export function show(row, r) {
  $('study').hidden = true;
  viewer.current = { row, r };
  $('cleared').textContent = '';
  $('result').hidden = false;
  $('result-file').textContent = row.name;
  const m = $('message');
  const g = r.gate;
  $('gate').textContent = g ? `Input gate: ${g.accepted ? 'accepted' : g.unsure ? 'not sure' : 'refused'} — ${g.reason}.` : '';
  const t = r.timings;
  $('timings').textContent = `${engineName(r.backend)} · decode ${t.decode_ms.toFixed(0)} ms · gate ${t.gate_ms.toFixed(0)} ms · preprocess ${t.preprocess_ms.toFixed(0)} ms · model ${t.model_ms.toFixed(0)} ms · total ${t.total_ms.toFixed(0)} ms`;
  // A new file always starts from the model's default window.
  $('window-preset').value = 'auto';
  $('window-trial').textContent = '';
  drawGrey($('original'), r.display, r.display_width, r.display_height);
  $('viewer').hidden = false;
  if (r.refused) {
    hideResultParts();
    $('viewer').hidden = false;
    $('seen').parentElement.hidden = true;
    $('overlay').parentElement.hidden = true;
    // The network's refusals and doubts can be overruled for this file; the colour and
    // DICOM rules cannot.
    const byNetwork = g && g.by === 'network';
    m.hidden = !!(g && g.unsure);
    m.className = 'message refused';
    m.dataset.kind = 'refused';
    m.textContent = `Not classified: ${g ? g.reason : 'refused'}.`;
    if (byNetwork) {
      $('ask').hidden = false;
      $('ask-text').textContent = g.unsure
        ? `Which model should read this file? The input gate is not sure (${g.reason}), so nothing was classified.`
        : 'If this is a chest CT slice or a chest X-ray after all, choose the model that should read this one file:';
    }
    markResult();
    return;
  }
  $('ask').hidden = true;
  $('seen').parentElement.hidden = false;
  $('overlay').parentElement.hidden = false;
  viewer.heat = null;
  $('model-read').textContent = `Read by ${MODEL_WORDS[r.model] || r.model_title} (${r.model_title}), ${chosenBy(row, r)}.`;
  m.hidden = !!r.evaluated && !r.below_bar;
  m.className = 'message refused';
  m.dataset.kind = r.evaluated ? 'weak_model' : 'unevaluated';
  m.textContent = !r.evaluated ? 'These weights carry no evaluation: the numbers below mean nothing.'
    : r.below_bar ? 'Caution: this model does not hold up on images from hospitals it was not trained on (its measured weaknesses are listed below the probabilities). Read its output as a teaching example of domain shift, not as a finding.' : '';
  const p = r.prediction;
  $('prediction').hidden = false;
  $('decision').textContent = decisionWords(r);
  $('decision-rule').textContent = r.decision ? `${r.decision.rule}.` : 'The most probable class (this model has no stored threshold).';
  drawBars(r);
  $('cautions').replaceChildren(...r.cautions.map((c) => Object.assign(document.createElement('li'), { textContent: c })));
  drawGrey($('seen'), r.seen, r.seen_size, r.seen_size);
  fillControls(r);
  $('cam-help').hidden = false;
  markResult();
  explain();
}

// The decision in plain words, against the alert threshold when the model has one.
function decisionWords(r) {
  const d = r.decision;
  if (!d) return `${r.prediction.label} (most probable class)`;
  return `${d.label}: ${d.label === d.positive_class ? 'at or above' : 'below'} the ${d.positive_class} alert threshold`;
}

// One bar per class; the positive class's bar carries its alert threshold as a tick.
function drawBars(r) {
  const p = r.prediction;
  const bars = $('bars');
  bars.replaceChildren();
  p.classes.forEach((c, i) => {
    const wrap = document.createElement('div');
    wrap.className = 'bar';
    const name = document.createElement('span');
    name.textContent = c;
    const track = document.createElement('span');
    track.className = 'track';
    const meter = document.createElement('meter');
    meter.min = 0; meter.max = 1; meter.value = p.probabilities[i];
    meter.setAttribute('aria-label', `probability of ${c}`);
    track.append(meter);
    if (r.decision && r.decision.positive_class === c) {
      const tick = document.createElement('span');
      tick.className = 'threshold';
      tick.style.left = `${(100 * r.decision.threshold).toFixed(2)}%`;
      tick.title = `alert threshold ${r.decision.threshold.toFixed(3)}`;
      const label = document.createElement('span');
      label.className = 'threshold-label';
      label.textContent = `threshold ${r.decision.threshold.toFixed(2)}`;
      label.style.left = tick.style.left;
      track.append(tick, label);
      wrap.dataset.threshold = String(r.decision.threshold);
    }
    const val = document.createElement('span');
    val.textContent = pct(p.probabilities[i]);
    wrap.append(name, track, val);
    bars.append(wrap);
  });
}

/** Draw a w×h greyscale image (one byte per pixel) on a canvas, resizing it. */
export function drawGrey(canvas, grey, w, h) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const v = grey[i];
    img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function fillControls(r) {
  const cls = $('cam-class');
  const keepClass = cls.dataset.model === r.model ? cls.value : null;
  cls.replaceChildren(...r.prediction.classes.map((c, i) => new Option(c, String(i))));
  cls.value = keepClass ?? String(r.decision ? r.decision.index : r.prediction.label_index);
  cls.dataset.model = r.model;
  const layer = $('cam-layer');
  const keepLayer = layer.options.length === r.layers.length ? layer.value : null;
  const n = r.layers.length;
  layer.replaceChildren(...r.layers.map((name, i) => {
    const depth = i === 0 ? 'shallow' : i === n - 1 ? 'deep' : 'middle';
    return new Option(`${name} (${depth})`, String(i + 1));
  }));
  layer.value = keepLayer ?? String(n);
  // Window/level applies to images whose values have units: Hounsfield (CT presets) or a
  // DICOM's own window; an 8-bit picture has nothing to re-window.
  const isHu = r.image.intensity === 'hounsfield';
  const dicom = !!r.image.dicom;
  $('window-controls').hidden = !(isHu || dicom);
  presetMenu(isHu);
  $('window-preset').value = 'auto';
  const c = $('window-center'), w = $('window-width');
  if (isHu) { c.min = -1200; c.max = 1200; w.min = 10; w.max = 4000; }
  else if (dicom) {
    const lo = r.window.center - 2 * r.window.width, hi = r.window.center + 2 * r.window.width;
    c.min = Math.floor(lo); c.max = Math.ceil(hi); w.min = 1; w.max = Math.ceil(4 * r.window.width);
  }
  setWindowInputs(r.window);
  $('controls').hidden = false;
}

function setWindowInputs(win) {
  $('window-center').value = win.center; $('window-width').value = win.width;
  $('window-center-out').textContent = win.center.toFixed(0);
  $('window-width-out').textContent = win.width.toFixed(0);
}

// A new display window: the engine re-renders the kept image; the result stays as it is.
async function redisplay() {
  const cur = viewer.current;
  if (!cur || cur.r.refused) return;
  try {
    const d = await call('redisplay', { window: windowChoice() });
    if (viewer.current !== cur) return;
    drawGrey($('original'), d.display, d.display_width, d.display_height);
    if ($('window-preset').value !== 'custom') setWindowInputs(d.window);
    composite();
    bump('displays');
  } catch (e) {
    $('window-trial').textContent = `Could not re-window: ${e.message || e}`;
  }
}

// Teaching one-off: the model's answer for the shown window, next to its real result.
async function tryWindow() {
  const cur = viewer.current;
  if (!cur || cur.r.refused) return;
  const win = windowChoice();
  try {
    const t = await call('try_window', { window: win });
    if (viewer.current !== cur) return;
    const pos = cur.r.decision?.positive_class;
    const i = t.prediction.classes.indexOf(pos);
    const j = cur.r.prediction.classes.indexOf(pos);
    const label = t.decision ? t.decision.label : t.prediction.label;
    const w = `W ${hu(Math.round(t.window.width))} / L ${hu(Math.round(t.window.center))}`;
    const trial = { window: w, label, probabilities: Array.from(t.prediction.probabilities), classes: t.prediction.classes };
    (cur.row.trials ||= []).push(trial);
    const probs = t.prediction.classes.map((c, k) => `${c} ${pct(t.prediction.probabilities[k])}`).join(', ');
    $('window-trial').textContent = `One-off with ${w}, an input the model was not trained on: ${label} (${probs})`
      + `${i >= 0 && j >= 0 ? `; its result above, on the trained input, stays P(${pos}) ${pct(cur.r.prediction.probabilities[j])}` : ''}. Recorded in the table and CSV.`;
    viewer.onTrial(cur.row);
  } catch (e) {
    $('window-trial').textContent = `Could not classify with this window: ${e.message || e}`;
  }
}

async function explain() {
  if (!viewer.current || viewer.current.r.refused) return;
  const args = { cls: Number($('cam-class').value), layer: Number($('cam-layer').value), colormap: $('cam-cmap').value };
  const key = JSON.stringify(args);
  viewer.explaining = key;
  const of = viewer.shown;
  try {
    const h = await call('explain', args);
    if (viewer.explaining !== key || viewer.shown !== of) return;
    const heat = document.createElement('canvas');
    heat.width = h.width;
    heat.height = h.height;
    heat.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(h.rgba.buffer), h.width, h.height), 0, 0);
    viewer.heat = { ...h, canvas: heat };
    const depth = $('cam-layer').selectedOptions[0]?.textContent || h.layer_name;
    $('overlay-caption').textContent = `Grad-CAM for “${h.class_name}” at ${depth}, a ${h.map_width}×${h.map_height} grid${h.peak > 0 ? '' : ' — no positive evidence for this class here'} (${h.ms.toFixed(0)} ms)`;
    record({ heatmapMs: Math.round(h.ms), heatmapOf: of });
    composite();
    drawScale();
    bump('heatmaps');
  } catch (e) {
    $('overlay-caption').textContent = `Grad-CAM failed: ${e.message || e}`;
  }
}

// The image, the heat (weak heat transparent, per the engine's alpha) and the outline of
// the part of the image the model read.
function composite() {
  const r = viewer.current?.r;
  if (!r || !viewer.heat) return;
  const out = $('overlay');
  const src = $('original');
  out.width = src.width;
  out.height = src.height;
  const ctx = out.getContext('2d');
  ctx.globalAlpha = 1;
  ctx.drawImage(src, 0, 0);
  ctx.globalAlpha = Number($('cam-alpha').value);
  ctx.drawImage(viewer.heat.canvas, 0, 0, out.width, out.height);
  ctx.globalAlpha = 1;
  const b = r.crop;
  if (b && (b.width < out.width || b.height < out.height)) {
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = Math.max(1, Math.round(out.width / 300));
    ctx.strokeStyle = '#ffffff';
    ctx.strokeRect(b.x + 0.5, b.y + 0.5, Math.max(1, b.width - 1), Math.max(1, b.height - 1));
    ctx.setLineDash([]);
  }
  out.dataset.layer = String(viewer.heat.layer);
  out.dataset.cls = String(viewer.heat.class);
}

// The colour bar: the chosen map from low to high, faded as the overlay fades weak heat,
// over a grey so that transparency shows.
function drawScale() {
  const k = viewer.constants;
  const c = $('cam-scale');
  if (!k || !c) return;
  const stops = (k.colormap_stops || []).find((s) => s.colormap === $('cam-cmap').value)?.rgb;
  if (!stops) return;
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#808080';
  ctx.fillRect(0, 0, c.width, c.height);
  const lo = k.heat_transparent_below, hi = k.heat_opaque_from;
  const alpha = Number($('cam-alpha').value);
  for (let x = 0; x < c.width; x++) {
    const t = x / (c.width - 1);
    const [r, g, b] = stops[Math.round(t * (stops.length - 1))];
    const a = alpha * Math.min(1, Math.max(0, (t - lo) / (hi - lo)));
    ctx.fillStyle = `rgba(${r}, ${g}, ${b}, ${a.toFixed(3)})`;
    ctx.fillRect(x, 0, 1, c.height);
  }
}

// ---- the stamped PNG export: the overlay with a caption band, and the same facts as a PNG
// text chunk (keyword "ctxr", JSON) so a figure keeps what it shows.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// A tEXt chunk inserted after the PNG's IHDR (8-byte signature + 25-byte IHDR chunk).
function withText(png, keyword, text) {
  const data = new TextEncoder().encode(`${keyword}\0${text.replace(/[^\x20-\x7e]/g, '?')}`);
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  chunk.set([0x74, 0x45, 0x58, 0x74], 4); // "tEXt"
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  const out = new Uint8Array(png.length + chunk.length);
  out.set(png.subarray(0, 33), 0);
  out.set(chunk, 33);
  out.set(png.subarray(33), 33 + chunk.length);
  return out;
}

function stamp() {
  const cur = viewer.current;
  const r = cur.r;
  const p = r.prediction;
  return {
    tool: `ctxr ${viewer.version}`.trim(),
    file: cur.row.name,
    model: r.model_title,
    decision: r.decision ? r.decision.label : p.label,
    probabilities: Object.fromEntries(p.classes.map((c, i) => [c, Number(p.probabilities[i].toFixed(4))])),
    gradcam_class: viewer.heat?.class_name ?? null,
    gradcam_layer: $('cam-layer').selectedOptions[0]?.textContent ?? null,
    note: 'research and teaching only; not for diagnosis',
  };
}

async function downloadOverlay() {
  if (!viewer.current || viewer.current.r.refused || !viewer.heat) return;
  const s = stamp();
  const src = $('overlay');
  const lines = [
    `${s.file} · ${s.model}`,
    `decision ${s.decision} · ${Object.entries(s.probabilities).map(([c, v]) => `${c} ${(100 * v).toFixed(1)} %`).join(', ')}`,
    `Grad-CAM: ${s.gradcam_class} at ${s.gradcam_layer} · ${s.tool} · ${s.note}`,
  ];
  const font = Math.max(11, Math.round(src.width / 45));
  const band = Math.round(font * 1.4 * lines.length + font);
  const out = document.createElement('canvas');
  out.width = Math.max(src.width, 320);
  out.height = src.height + band;
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(src, 0, 0);
  ctx.fillStyle = '#fff';
  ctx.font = `${font}px sans-serif`;
  lines.forEach((l, i) => ctx.fillText(l, font / 2, src.height + font * 1.4 * (i + 1), out.width - font));
  const blob = await new Promise((res) => out.toBlob(res, 'image/png'));
  if (!blob) return;
  const png = withText(new Uint8Array(await blob.arrayBuffer()), 'ctxr', JSON.stringify(s));
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
  const base = (viewer.current?.row.name || 'image').replace(/[^\w.-]+/g, '_');
  a.download = `${base}.gradcam.png`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/**
 * `onReadAs(row, model)`: read the shown file again with `model` chosen for it alone;
 * `onTrial(row)`: a teaching one-off was recorded on `row`.
 */
export function setupViewer({ onReadAs, onTrial }) {
  viewer.onReadAs = onReadAs;
  viewer.onTrial = onTrial;
  for (const id of ['cam-class', 'cam-layer']) $(id).addEventListener('change', explain);
  $('cam-cmap').addEventListener('change', () => { drawScale(); explain(); });
  $('cam-alpha').addEventListener('input', () => { composite(); drawScale(); });
  $('window-preset').addEventListener('change', redisplay);
  for (const id of ['window-center', 'window-width']) {
    $(id).addEventListener('input', () => {
      $('window-preset').value = 'custom';
      $(`${id}-out`).textContent = $(id).value;
      clearTimeout(viewer.windowTimer);
      viewer.windowTimer = setTimeout(redisplay, 150);
    });
  }
  $('try-window').addEventListener('click', tryWindow);
  $('download').addEventListener('click', downloadOverlay);
  for (const m of ['ct', 'cxr']) {
    $(`read-as-${m}`).addEventListener('click', () => {
      if (viewer.current) viewer.onReadAs(viewer.current.row, m);
    });
  }
}
