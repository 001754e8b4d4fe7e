// viewer.js — one job: the result panel. It draws the windowed image and the image the model
// saw, the decision and probabilities, the window/level controls, and the Grad-CAM overlay
// (requested from the worker, blended over the image on a canvas, exported as PNG). It keeps
// the analysis on screen so the window and heatmap controls can redraw it without the file.
// The window presets and colour maps come from the engine (`page_constants()`), not from here.
import { call } from './rpc.js';
import { bump, record } from './hooks.js';
import { engineName } from './status.js';

const $ = (id) => document.getElementById(id);
const viewer = {
  manifest: null,
  presets: [], // [{id, label, center, width}] from the engine
  current: null, // {row, r}: the analysis shown
  heat: null, // {width, height, layer, class, canvas}: the last Grad-CAM drawn
  explaining: null, // key of the newest heatmap request (older replies are dropped)
  firstResultAt: null,
  windowTimer: null,
};

// Descriptions shown after a colour map's name (maps not listed here get none).
const COLORMAP_NOTES = { viridis: 'colour-blind safe', cividis: 'colour-blind safe' };

export function pct(p) { return `${(100 * p).toFixed(1)} %`; }

// −600 with a real minus sign, as the window presets are written.
const hu = (v) => (v < 0 ? `−${Math.abs(v)}` : String(v));

/** Take the manifest and the engine's constants: build the preset and colour-map menus. */
export function configureViewer({ manifest, constants }) {
  viewer.manifest = manifest;
  viewer.presets = constants.window_presets;
  const preset = $('window-preset');
  const keep = preset.value;
  for (const o of [...preset.querySelectorAll('option.engine-preset')]) o.remove();
  const before = preset.querySelector('option[value="file"]');
  for (const p of viewer.presets) {
    const text = /\d/.test(p.label) ? p.label : `${p.label} (W ${hu(p.width)} / L ${hu(p.center)})`;
    const o = new Option(text, p.id);
    o.className = 'engine-preset';
    preset.insertBefore(o, before);
  }
  preset.value = [...preset.options].some((o) => o.value === keep) ? keep : 'auto';
  const cmap = $('cam-cmap');
  const keepMap = cmap.value;
  cmap.replaceChildren(...constants.colormaps.map((c) => new Option(COLORMAP_NOTES[c] ? `${c} (${COLORMAP_NOTES[c]})` : c, c)));
  if (constants.colormaps.includes(keepMap)) cmap.value = keepMap;
}

/** The window the user chose, as the engine's WindowChoice. */
export function windowChoice() {
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
      label: cur.r.prediction?.label ?? null,
      probabilities: cur.r.prediction?.probabilities ? Array.from(cur.r.prediction.probabilities) : null,
      gate: cur.r.gate?.reason ?? null,
    },
  });
  bump('results');
}

export function showError(row, e) {
  $('result').hidden = false;
  $('result-file').textContent = `— ${row.name}`;
  const m = $('message');
  m.hidden = false;
  m.className = 'message error';
  m.dataset.kind = e.kind || 'error';
  m.textContent = `Could not read this file: ${e.message || e}`;
  $('prediction').hidden = true;
  $('viewer').hidden = true;
  $('controls').hidden = true;
  $('gate').textContent = '';
  $('timings').textContent = '';
  viewer.current = null;
  markResult();
}

export function show(row, r) {
  viewer.current = { row, r };
  $('result').hidden = false;
  $('result-file').textContent = `— ${row.name}`;
  const m = $('message');
  const g = r.gate;
  $('gate').textContent = g ? `Input gate: ${g.accepted ? 'accepted' : 'refused'} — ${g.reason}.` : 'Model chosen by hand (input gate not used).';
  const t = r.timings;
  $('timings').textContent = `${engineName(r.backend)} · decode ${t.decode_ms.toFixed(0)} ms · gate ${t.gate_ms.toFixed(0)} ms · preprocess ${t.preprocess_ms.toFixed(0)} ms · model ${t.model_ms.toFixed(0)} ms · total ${t.total_ms.toFixed(0)} ms`;
  drawGrey($('original'), r.display, r.display_width, r.display_height);
  $('viewer').hidden = false;
  if (r.refused) {
    m.hidden = false;
    m.className = 'message refused';
    m.dataset.kind = 'refused';
    m.textContent = `Not classified: ${g ? g.reason : 'refused'}. If this is a chest CT slice or a chest X-ray, choose the model by hand above.`;
    $('prediction').hidden = true;
    $('controls').hidden = true;
    $('seen').parentElement.hidden = true;
    $('overlay').parentElement.hidden = true;
    markResult();
    return;
  }
  $('seen').parentElement.hidden = false;
  $('overlay').parentElement.hidden = false;
  viewer.heat = null;
  const entry = (viewer.manifest?.models || []).find((x) => x.id === r.model);
  const ev = entry?.evaluation;
  // The "new hospital" number: leave-one-source-out when measured, else the external sets'.
  const loso = entry?.training?.leave_one_source_out?.mean_auc;
  const ext = typeof loso === 'number' ? loso : ev ? (ev.auc ?? ev.macro_auc) : null;
  const weak = typeof ext === 'number' && ext < 0.75;
  $('model-read').textContent = entry ? `Read by the ${entry.title} model. ${entry.definition || ''}` : '';
  m.hidden = !!r.evaluated && !weak;
  m.className = 'message refused';
  m.dataset.kind = r.evaluated ? 'weak_model' : 'unevaluated';
  m.textContent = !r.evaluated ? 'These weights carry no evaluation: the numbers below mean nothing.'
    : weak ? `Caution: on images from ${typeof loso === 'number' ? 'sources it was never trained on (leave-one-source-out)' : 'a hospital it never saw'}, this model scored AUC ${ext.toFixed(2)} (0.5 is chance). It does not generalise; read its output as a teaching example of domain shift (see the model card).` : '';
  const p = r.prediction;
  $('prediction').hidden = false;
  $('decision').textContent = r.decision ? r.decision.label : p.label;
  $('decision-rule').textContent = r.decision ? `(${r.decision.rule})` : '(most probable class)';
  const bars = $('bars');
  bars.replaceChildren();
  p.classes.forEach((c, i) => {
    const wrap = document.createElement('div');
    wrap.className = 'bar';
    const name = document.createElement('span');
    name.textContent = c;
    const meter = document.createElement('meter');
    meter.min = 0; meter.max = 1; meter.value = p.probabilities[i];
    meter.setAttribute('aria-label', `probability of ${c}`);
    const val = document.createElement('span');
    val.textContent = pct(p.probabilities[i]);
    wrap.append(name, meter, val);
    bars.append(wrap);
  });
  drawGrey($('seen'), r.seen, r.seen_size, r.seen_size);
  fillControls(r);
  markResult();
  explain();
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
  const isHu = r.image.intensity === 'hounsfield';
  const dicom = !!r.image.dicom;
  $('window-controls').disabled = !(isHu || dicom);
  const c = $('window-center'), w = $('window-width');
  if (isHu) { c.min = -1200; c.max = 1200; w.min = 10; w.max = 4000; }
  else if (dicom) {
    const lo = r.window.center - 2 * r.window.width, hi = r.window.center + 2 * r.window.width;
    c.min = Math.floor(lo); c.max = Math.ceil(hi); w.min = 1; w.max = Math.ceil(4 * r.window.width);
  }
  c.value = r.window.center; w.value = r.window.width;
  $('window-center-out').textContent = r.window.center.toFixed(0);
  $('window-width-out').textContent = r.window.width.toFixed(0);
  $('controls').hidden = false;
}

// The engine keeps the last analysis: a new window is applied without the file.
async function rewindow() {
  const cur = viewer.current;
  if (!cur || cur.r.refused) return;
  try {
    const r = await call('rewindow', { window: windowChoice() });
    r.gate = cur.r.gate;
    show(cur.row, r);
  } catch (e) {
    showError(cur.row, e);
  }
}

async function explain() {
  if (!viewer.current || viewer.current.r.refused) return;
  const args = { cls: Number($('cam-class').value), layer: Number($('cam-layer').value), colormap: $('cam-cmap').value };
  const key = JSON.stringify(args);
  viewer.explaining = key;
  try {
    const h = await call('explain', args);
    if (viewer.explaining !== key) return;
    const heat = document.createElement('canvas');
    heat.width = h.width;
    heat.height = h.height;
    heat.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(h.rgba.buffer), h.width, h.height), 0, 0);
    viewer.heat = { ...h, canvas: heat };
    const depth = $('cam-layer').selectedOptions[0]?.textContent || h.layer_name;
    $('overlay-caption').textContent = `Grad-CAM for “${h.class_name}” at ${depth}${h.peak > 0 ? '' : ' — no positive evidence for this class here'} (${h.ms.toFixed(0)} ms)`;
    record({ heatmapMs: Math.round(h.ms) });
    composite();
    bump('heatmaps');
  } catch (e) {
    $('overlay-caption').textContent = `Grad-CAM failed: ${e.message || e}`;
  }
}

function composite() {
  const r = viewer.current?.r;
  if (!r || !viewer.heat) return;
  const out = $('overlay');
  out.width = r.display_width;
  out.height = r.display_height;
  const ctx = out.getContext('2d');
  ctx.globalAlpha = 1;
  ctx.drawImage($('original'), 0, 0);
  ctx.globalAlpha = Number($('cam-alpha').value);
  ctx.drawImage(viewer.heat.canvas, 0, 0, out.width, out.height);
  ctx.globalAlpha = 1;
  out.dataset.layer = String(viewer.heat.layer);
  out.dataset.cls = String(viewer.heat.class);
}

function downloadOverlay() {
  $('overlay').toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    const base = (viewer.current?.row.name || 'image').replace(/[^\w.-]+/g, '_');
    a.download = `${base}.gradcam.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, 'image/png');
}

export function setupViewer() {
  for (const id of ['cam-class', 'cam-layer', 'cam-cmap']) $(id).addEventListener('change', explain);
  $('cam-alpha').addEventListener('input', composite);
  $('window-preset').addEventListener('change', rewindow);
  for (const id of ['window-center', 'window-width']) {
    $(id).addEventListener('input', () => {
      $('window-preset').value = 'custom';
      $(`${id}-out`).textContent = $(id).value;
      clearTimeout(viewer.windowTimer);
      viewer.windowTimer = setTimeout(rewindow, 150);
    });
  }
  $('download').addEventListener('click', downloadOverlay);
}
