// app.js — the page: takes images (drop, pickers, folder, paste), sends them one at a time to
// the worker (which decodes, gates, classifies and explains them in WebAssembly), and shows
// results, the Grad-CAM viewer, the batch table with CSV export and the CT series score.
import { renderModelCard } from './card.js';

const $ = (id) => document.getElementById(id);
const state = {
  worker: null,
  nextId: 1,
  pending: new Map(),
  backend: 'auto',
  workerRequests: 0,
  manifest: null,
  rows: [], // {n, name, file, status, model, decision, probs, classes, gate, error, ms, seen, seenSize}
  queue: [],
  running: false,
  current: null, // the analysis shown in the viewer
  heat: null, // {width, height, canvas}
  firstResultAt: null,
};

// ---------- worker plumbing ----------

function startWorker() {
  const w = new Worker('worker.js', { type: 'module' });
  w.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === 'progress') return showProgress(m.got, m.total);
    if (typeof m.requests === 'number') { state.workerRequests = m.requests; updateRequests(); }
    const p = state.pending.get(m.id);
    if (!p) return;
    state.pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else {
      if (m.fatal) restartWorker();
      p.reject(m.error);
    }
  };
  w.onerror = (ev) => {
    ev.preventDefault();
    const err = { kind: 'worker', message: `the analysis worker failed: ${ev.message || 'unknown error'}` };
    for (const p of state.pending.values()) p.reject(err);
    state.pending.clear();
    restartWorker();
  };
  state.worker = w;
}

function call(op, args = {}, transfer = []) {
  const id = state.nextId++;
  return new Promise((resolve, reject) => {
    state.pending.set(id, { resolve, reject });
    state.worker.postMessage({ id, op, ...args }, transfer);
  });
}

let restarting = null;
function restartWorker() {
  if (restarting) return restarting;
  state.worker.terminate();
  startWorker();
  restarting = initEngine(state.backend).finally(() => { restarting = null; });
  return restarting;
}

async function initEngine(backend) {
  document.body.dataset.state = 'loading';
  $('backend').textContent = 'starting…';
  try {
    const r = await call('init', { backend });
    state.manifest = r.manifest;
    const label = r.backend === 'webgpu' ? 'WebGPU' : 'CPU (WebAssembly)';
    $('backend').textContent = label;
    const times = Object.entries(r.times || {}).map(([k, v]) => `${k === 'webgpu' ? 'WebGPU' : 'CPU'} ${v.toFixed(1)} ms`).join(', ');
    $('backend-how').textContent = `(${r.how}${times ? `: ${times}` : ''})`;
    $('version').textContent = r.version;
    document.body.dataset.backend = r.backend;
    document.body.dataset.startupMs = String(Math.round(r.startup_ms));
    $('load').hidden = true;
    if (!state.cardDrawn) {
      renderModelCard($('card-body'), r.manifest);
      state.cardDrawn = true;
    }
    document.body.dataset.state = 'ready';
    pump();
  } catch (e) {
    document.body.dataset.state = 'error';
    $('backend').textContent = 'failed';
    $('backend-how').textContent = e.message || String(e);
  }
}

function showProgress(got, total) {
  $('load-bar').max = total || 1;
  $('load-bar').value = got;
  $('load-text').textContent = `${(got / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
}

function updateRequests() {
  const page = performance.getEntriesByType('navigation').length + performance.getEntriesByType('resource').length;
  $('requests').textContent = String(page + state.workerRequests);
}

// ---------- input ----------

function enqueue(files) {
  const list = [...files].filter((f) => f && f.size !== undefined);
  if (!list.length) return;
  $('batch').hidden = false;
  for (const file of list) {
    const name = file.webkitRelativePath || file.relPath || file.name || 'pasted image';
    // Files from a folder form a series (one patient's CT slices): the folder they came from.
    const series = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : null;
    const row = { n: state.rows.length + 1, name, series, file, status: 'queued' };
    state.rows.push(row);
    addRow(row);
    state.queue.push(row);
  }
  updateBatch();
  pump();
}

async function walkEntry(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    file.relPath = prefix + file.name;
    out.push(file);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await walkEntry(e, `${prefix}${entry.name}/`, out);
    }
  }
}

function setupInput() {
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const items = [...(e.dataTransfer.items || [])];
    const entries = items.map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (entries.some((en) => en.isDirectory)) {
      const out = [];
      for (const en of entries) await walkEntry(en, '', out);
      out.sort((a, b) => a.relPath.localeCompare(b.relPath, undefined, { numeric: true }));
      enqueue(out);
    } else {
      enqueue(e.dataTransfer.files);
    }
  });
  drop.addEventListener('click', () => $('files').click());
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('files').click(); }
  });
  $('files').addEventListener('change', (e) => { enqueue(e.target.files); e.target.value = ''; });
  $('folder').addEventListener('change', (e) => {
    const files = [...e.target.files].sort((a, b) => a.webkitRelativePath.localeCompare(b.webkitRelativePath, undefined, { numeric: true }));
    enqueue(files);
    e.target.value = '';
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); enqueue(files); }
  });
  $('backend-select').addEventListener('change', (e) => {
    state.backend = e.target.value;
    state.worker.terminate();
    startWorker();
    initEngine(state.backend);
  });
}

// ---------- processing ----------

async function pump() {
  if (state.running || document.body.dataset.state === 'loading' || document.body.dataset.state === 'error') return;
  state.running = true;
  try {
    while (state.queue.length) {
      const row = state.queue.shift();
      document.body.dataset.state = 'busy';
      await analyzeRow(row, true);
      updateBatch();
    }
  } finally {
    state.running = false;
    if (document.body.dataset.state === 'busy') document.body.dataset.state = 'ready';
  }
}

// Largest file the page reads (the same budget as `decode::Limits::max_file_bytes`).
const MAX_FILE_BYTES = 512 * 2 ** 20;

function request() {
  return { model: $('model').value, window: windowChoice(), frame: 0 };
}

async function analyzeRow(row, record) {
  if (record) {
    row.status = 'working';
    updateRow(row);
  }
  const t = performance.now();
  try {
    // The byte budget is checked before the file is read into memory (decode::Limits has the same).
    if (row.file.size > MAX_FILE_BYTES) {
      throw { kind: 'file_too_large', message: `the file is ${(row.file.size / 2 ** 20).toFixed(0)} MB, above the ${MAX_FILE_BYTES / 2 ** 20} MB limit` };
    }
    const bytes = await row.file.arrayBuffer();
    const r = await call('analyze', { bytes, request: request() }, [bytes]);
    if (record) {
      row.ms = performance.now() - t;
      summarise(row, r);
    }
    show(row, r);
  } catch (e) {
    if (record) {
      row.ms = performance.now() - t;
      row.status = 'error';
      row.error = e;
    }
    showError(row, e);
  }
  updateRow(row);
}

function summarise(row, r) {
  row.gate = r.gate;
  row.model = r.model;
  if (r.refused) {
    row.status = 'refused';
    return;
  }
  row.status = 'ok';
  row.classes = r.prediction.classes;
  row.probs = r.prediction.probabilities;
  row.label = r.prediction.label;
  row.decision = r.decision ? r.decision.label : r.prediction.label;
  row.seen = r.seen;
  row.seenSize = r.seen_size;
}

// ---------- result display ----------

function pct(p) { return `${(100 * p).toFixed(1)} %`; }

function showError(row, e) {
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
  state.current = null;
  markResult();
}

function markResult() {
  if (state.firstResultAt === null) {
    state.firstResultAt = performance.now();
    document.body.dataset.firstResultMs = String(Math.round(state.firstResultAt));
  }
  document.body.dataset.results = String(Number(document.body.dataset.results || 0) + 1);
}

function show(row, r) {
  state.current = { row, r };
  $('result').hidden = false;
  $('result-file').textContent = `— ${row.name}`;
  const m = $('message');
  const g = r.gate;
  $('gate').textContent = g ? `Input gate: ${g.accepted ? 'accepted' : 'refused'} — ${g.reason}.` : 'Model chosen by hand (input gate not used).';
  const t = r.timings;
  $('timings').textContent = `${r.backend === 'wgpu' ? 'WebGPU' : 'CPU'} · decode ${t.decode_ms.toFixed(0)} ms · gate ${t.gate_ms.toFixed(0)} ms · preprocess ${t.preprocess_ms.toFixed(0)} ms · model ${t.model_ms.toFixed(0)} ms · total ${t.total_ms.toFixed(0)} ms`;
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
  state.heat = null;
  const ev = (state.manifest?.models || []).find((x) => x.id === r.model)?.evaluation;
  const ext = ev ? (ev.auc ?? ev.macro_auc) : null;
  const weak = typeof ext === 'number' && ext < 0.75;
  m.hidden = !!r.evaluated && !weak;
  m.className = 'message refused';
  m.dataset.kind = r.evaluated ? 'weak_model' : 'unevaluated';
  m.textContent = !r.evaluated ? 'These weights carry no evaluation: the numbers below mean nothing.'
    : weak ? `Caution: on images from a hospital it never saw, this model scored AUC ${ext.toFixed(2)} (0.5 is chance). It does not generalise; read its output as a teaching example of domain shift (see the model card).` : '';
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

function drawGrey(canvas, grey, w, h) {
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
  const hu = r.image.intensity === 'hounsfield';
  const dicom = !!r.image.dicom;
  $('window-controls').disabled = !(hu || dicom);
  const c = $('window-center'), w = $('window-width');
  if (hu) { c.min = -1200; c.max = 1200; w.min = 10; w.max = 4000; }
  else if (dicom) {
    const lo = r.window.center - 2 * r.window.width, hi = r.window.center + 2 * r.window.width;
    c.min = Math.floor(lo); c.max = Math.ceil(hi); w.min = 1; w.max = Math.ceil(4 * r.window.width);
  }
  c.value = r.window.center; w.value = r.window.width;
  $('window-center-out').textContent = r.window.center.toFixed(0);
  $('window-width-out').textContent = r.window.width.toFixed(0);
  $('controls').hidden = false;
}

function windowChoice() {
  const preset = $('window-preset').value;
  const presets = { lung: [-600, 1500], mediastinum: [40, 400], bone: [400, 1800] };
  if (preset === 'auto') return { kind: 'auto' };
  if (preset === 'file') return { kind: 'from_file' };
  if (presets[preset]) return { kind: 'custom', center: presets[preset][0], width: presets[preset][1] };
  return { kind: 'custom', center: Number($('window-center').value), width: Math.max(1, Number($('window-width').value)) };
}

async function rewindow() {
  if (!state.current || state.current.r.refused) return;
  try {
    const r = await call('rewindow', { window: windowChoice() });
    r.gate = state.current.r.gate;
    show(state.current.row, r);
  } catch (e) {
    showError(state.current.row, e);
  }
}

let explaining = null;
async function explain() {
  if (!state.current || state.current.r.refused) return;
  const args = { cls: Number($('cam-class').value), layer: Number($('cam-layer').value), colormap: $('cam-cmap').value };
  const key = JSON.stringify(args);
  explaining = key;
  try {
    const h = await call('explain', args);
    if (explaining !== key) return;
    const heat = document.createElement('canvas');
    heat.width = h.width;
    heat.height = h.height;
    heat.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(h.rgba.buffer), h.width, h.height), 0, 0);
    state.heat = { ...h, canvas: heat };
    const depth = $('cam-layer').selectedOptions[0]?.textContent || h.layer_name;
    $('overlay-caption').textContent = `Grad-CAM for “${h.class_name}” at ${depth}${h.peak > 0 ? '' : ' — no positive evidence for this class here'} (${h.ms.toFixed(0)} ms)`;
    document.body.dataset.heatmapMs = String(Math.round(h.ms));
    composite();
    document.body.dataset.heatmaps = String(Number(document.body.dataset.heatmaps || 0) + 1);
  } catch (e) {
    $('overlay-caption').textContent = `Grad-CAM failed: ${e.message || e}`;
  }
}

function composite() {
  const r = state.current?.r;
  if (!r || !state.heat) return;
  const out = $('overlay');
  out.width = r.display_width;
  out.height = r.display_height;
  const ctx = out.getContext('2d');
  ctx.globalAlpha = 1;
  ctx.drawImage($('original'), 0, 0);
  ctx.globalAlpha = Number($('cam-alpha').value);
  ctx.drawImage(state.heat.canvas, 0, 0, out.width, out.height);
  ctx.globalAlpha = 1;
  out.dataset.layer = String(state.heat.layer);
  out.dataset.cls = String(state.heat.class);
}

function setupViewer() {
  for (const id of ['cam-class', 'cam-layer', 'cam-cmap']) $(id).addEventListener('change', explain);
  $('cam-alpha').addEventListener('input', composite);
  $('window-preset').addEventListener('change', rewindow);
  let timer = null;
  for (const id of ['window-center', 'window-width']) {
    $(id).addEventListener('input', () => {
      $('window-preset').value = 'custom';
      $(`${id}-out`).textContent = $(id).value;
      clearTimeout(timer);
      timer = setTimeout(rewindow, 150);
    });
  }
  $('download').addEventListener('click', () => {
    $('overlay').toBlob((blob) => {
      if (!blob) return;
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      const base = (state.current?.row.name || 'image').replace(/[^\w.-]+/g, '_');
      a.download = `${base}.gradcam.png`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    }, 'image/png');
  });
}

// ---------- batch table, CSV, series score ----------

function addRow(row) {
  const tr = document.createElement('tr');
  row.tr = tr;
  $('batch-table').tBodies[0].append(tr);
  updateRow(row);
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function updateRow(row) {
  const tr = row.tr;
  if (!tr) return;
  tr.dataset.status = row.status;
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'link';
  open.textContent = row.name;
  open.addEventListener('click', () => reopen(row));
  const fileCell = document.createElement('td');
  fileCell.append(open);
  const probs = row.probs ? row.classes.map((c, i) => `${c} ${pct(row.probs[i])}`).join(', ') : '';
  const gate = row.status === 'error' ? `error: ${row.error.message}` : row.gate ? `${row.gate.accepted ? '' : 'refused: '}${row.gate.reason}` : row.status === 'ok' ? 'chosen by hand' : row.status;
  tr.replaceChildren(cell(String(row.n)), fileCell, cell(row.model || ''), cell(row.decision || (row.status === 'refused' ? 'refused' : '')), cell(probs), cell(gate), cell(row.ms ? row.ms.toFixed(0) : ''));
}

// Show a finished row again (its file is read anew: results keep no full-size pixels).
async function reopen(row) {
  if (state.running || row.status === 'queued') return;
  state.running = true;
  try { await analyzeRow(row, false); } finally { state.running = false; pump(); }
}

function updateBatch() {
  const done = state.rows.filter((r) => r.status !== 'queued' && r.status !== 'working').length;
  $('batch-bar').max = Math.max(1, state.rows.length);
  $('batch-bar').value = done;
  const refused = state.rows.filter((r) => r.status === 'refused').length;
  const errors = state.rows.filter((r) => r.status === 'error').length;
  $('batch-text').textContent = `${done} of ${state.rows.length} done · ${refused} refused · ${errors} could not be read`;
  document.body.dataset.done = String(done);
  seriesScore();
}

// One score per folder of CT slices: the maximum and mean of the slices' P(covid).
function seriesScore() {
  const groups = new Map();
  for (const r of state.rows) {
    if (r.status !== 'ok' || r.model !== 'ct' || !r.series) continue;
    if (!groups.has(r.series)) groups.set(r.series, []);
    groups.get(r.series).push(r);
  }
  const box = $('patient');
  const list = $('series-list');
  list.replaceChildren();
  for (const [series, slices] of groups) {
    if (slices.length < 2) continue;
    const pos = slices[0].classes.indexOf('covid');
    const ps = slices.map((r) => r.probs[pos]);
    const max = Math.max(...ps);
    const mean = ps.reduce((a, b) => a + b, 0) / ps.length;
    const item = document.createElement('section');
    item.className = 'series';
    item.dataset.series = series;
    item.dataset.max = String(max);
    item.dataset.mean = String(mean);
    item.dataset.slices = String(slices.length);
    const h = document.createElement('h4');
    h.textContent = series;
    const p = document.createElement('p');
    p.textContent = `${slices.length} CT slices: highest P(covid) ${max.toFixed(3)}, mean ${mean.toFixed(3)} (slice max-pooling as in the DeCoVNet paper; a research summary, not a diagnosis). Top slices:`;
    const thumbs = document.createElement('div');
    thumbs.className = 'thumbs';
    const top = [...slices].sort((a, b) => b.probs[pos] - a.probs[pos]).slice(0, 5);
    thumbs.replaceChildren(...top.map((r) => {
      const fig = document.createElement('figure');
      const c = document.createElement('canvas');
      drawGrey(c, r.seen, r.seenSize, r.seenSize);
      c.setAttribute('aria-label', `slice ${r.name}`);
      const cap = document.createElement('figcaption');
      cap.textContent = `${r.name.slice(series.length + 1)}: ${r.probs[pos].toFixed(3)}`;
      fig.append(c, cap);
      return fig;
    }));
    item.append(h, p, thumbs);
    list.append(item);
  }
  box.hidden = list.children.length === 0;
}

function csvField(v) {
  const s = v === undefined || v === null ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportCsv() {
  const classes = [...new Set(state.rows.flatMap((r) => r.classes || []))];
  const head = ['file', 'series', 'status', 'model', 'decision', 'argmax', ...classes.map((c) => `p_${c}`), 'gate', 'error_kind', 'error', 'ms'];
  const lines = [head.join(',')];
  for (const r of state.rows) {
    const p = classes.map((c) => (r.classes && r.classes.includes(c) ? r.probs[r.classes.indexOf(c)].toFixed(6) : ''));
    lines.push([r.name, r.series || '', r.status, r.model || '', r.decision || '', r.label || '', ...p, r.gate ? r.gate.reason : '', r.error?.kind || '', r.error?.message || '', r.ms ? r.ms.toFixed(1) : ''].map(csvField).join(','));
  }
  const blob = new Blob([lines.join('\n') + '\n'], { type: 'text/csv' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'ctxr-results.csv';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function setupBatch() {
  $('csv').addEventListener('click', exportCsv);
  $('clear').addEventListener('click', () => {
    state.rows = [];
    state.queue = [];
    $('batch-table').tBodies[0].replaceChildren();
    updateBatch();
  });
}

// ---------- start ----------

if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  navigator.serviceWorker.register('sw.js').catch(() => {});
  navigator.serviceWorker.ready.then(() => { document.body.dataset.sw = 'ready'; });
}
// ?backend=webgpu|cpu|auto chooses the engine (the same as the menu).
const wanted = new URLSearchParams(location.search).get('backend');
if (['auto', 'webgpu', 'cpu'].includes(wanted)) {
  state.backend = wanted;
  $('backend-select').value = wanted;
}
setupInput();
setupViewer();
setupBatch();
startWorker();
initEngine(state.backend);
setInterval(updateRequests, 1000);
window.ctxr = { state, call }; // for the browser tests and the curious
