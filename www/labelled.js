// labelled.js — one job: the "your labelled images" panel. The user gives a folder of class
// folders (or image files plus a CSV `file,label[,group]`); the worker reads them past the gate
// and the engine measures the model on them with the core's assessment (the numbers `ctxr eval
// --labelled` prints). This module draws that measurement — ROC with the AUC's bootstrap
// interval, the confusion at a threshold the user moves, the reliability plot, per-class rows,
// the worst-classified files (click one to open it with its Grad-CAM) — exports it as CSV, runs
// and cancels the adaptation, and keeps, lists and loads adapted models (file or IndexedDB).
// Nothing here computes a metric: the engine does, so page and CLI agree.
import { call, onWorkerProgress } from './rpc.js';
import { record } from './hooks.js';
import { el, svg, table } from './card.js';
import { forget, keep, kept } from './store.js';

const $ = (id) => document.getElementById(id);
const own = {
  files: [], // [{path, file}] of the set last given
  result: null, // the engine's measurement of it
  at: null, // decisions at the threshold shown
  adapted: null, // {entry, record, manifest} of the adaptation last finished (to save)
  inUse: new Map(), // id → {entry (JSON text), record}: adapted models in use, installed again in a new worker
  onOpen: () => {}, // open a file in the viewer with a given model
  onModelChange: () => {}, // the model in use changed (entry)
};

const f3 = (v) => (v === null || v === undefined || Number.isNaN(v) ? '—' : Number(v).toFixed(3));
const pctx = (v) => (v === null || v === undefined ? '—' : `${(100 * v).toFixed(1)} %`);
const ci = (c) => (c ? `${f3(c.lo)}–${f3(c.hi)}` : 'no interval');
const MODEL_WORDS = { ct: 'CT model', cxr: 'X-ray model' };

// The image budget for adapting, from the memory the browser reports (it caps the figure at
// 8 GB and leaves it out in some browsers): an eighth of it, at most 1 GB.
function imageBudget() {
  const gb = Number(navigator.deviceMemory) || 4;
  return Math.min(1024, Math.max(64, gb * 128)) * 1024 * 1024;
}

function message(text) {
  $('own-message').hidden = !text;
  $('own-message').textContent = text || '';
}

async function measure(files) {
  own.files = files;
  own.result = null;
  $('own-result').hidden = true;
  message('');
  if (!files.length) return;
  $('own-progress').textContent = `Reading ${files.length} files…`;
  $('own-bar').removeAttribute('value');
  try {
    const r = await call('labelled', { model: $('own-model').value, files, limit: imageBudget() });
    own.result = r;
    record({ labelled: { model: r.model, n: r.files.length, auc: r.assessment.report.auc ?? r.assessment.report.macro_auc ?? null, auc_ci: r.assessment.auc_ci ?? null, set_aside: r.set_aside.length, ms: Math.round(r.ms) } });
    render(r);
    $('own-progress').textContent = `Measured on ${r.files.length} images in ${(r.ms / 1000).toFixed(1)} s.`;
  } catch (e) {
    message(e.message || String(e));
    $('own-progress').textContent = '';
    record({ labelled: { error: e.kind || 'error', message: e.message || String(e) } });
  } finally {
    $('own-bar').value = 0;
  }
}

onWorkerProgress('labelled', (m) => {
  $('own-bar').max = Math.max(1, m.total);
  $('own-bar').value = m.done;
  $('own-progress').textContent = `Reading and classifying: ${m.done} of ${m.total} files`;
});

// The ROC curve of the class the operating point watches (else the first with a curve),
// with the point of the threshold shown.
function rocSvg(r) {
  const report = r.assessment.report;
  const positive = r.operating_point?.positive_class || report.positive_class || Object.keys(report.roc || {})[0];
  const pts = (report.roc || {})[positive] || [];
  const W = 240, P = 28;
  const x = (v) => P + v * (W - 2 * P);
  const y = (v) => W - P - v * (W - 2 * P);
  const auc = report.auc ?? report.auc_per_class?.[positive];
  const words = `ROC of ${positive} against the rest: AUC ${f3(auc)} (95 % CI ${ci(r.assessment.auc_ci)})`;
  const s = svg('svg', { viewBox: `0 0 ${W} ${W}`, class: 'own-plot', role: 'img', 'aria-label': words });
  s.append(svg('title', {}, words));
  s.append(svg('rect', { x: x(0), y: y(1), width: x(1) - x(0), height: y(0) - y(1), fill: 'none', stroke: 'currentColor', 'stroke-opacity': 0.4 }));
  s.append(svg('line', { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: 'currentColor', 'stroke-dasharray': '3 3', 'stroke-opacity': 0.5 }));
  s.append(svg('polyline', { points: pts.map((p) => `${x(p.fpr)},${y(p.tpr)}`).join(' '), fill: 'none', stroke: '#1f77b4', 'stroke-width': 2, id: 'own-roc-curve' }));
  s.append(svg('text', { x: x(0.5), y: W - 4, 'text-anchor': 'middle', 'font-size': 10 }, '1 − specificity'));
  s.append(svg('text', { x: 10, y: y(0.5), 'text-anchor': 'middle', 'font-size': 10, transform: `rotate(-90 10 ${y(0.5)})` }, 'sensitivity'));
  s.append(svg('circle', { id: 'own-roc-point', r: 5, cx: x(0), cy: y(0), fill: '#d62728', visibility: 'hidden' }));
  return { svg: s, x, y, positive };
}

// Reliability: mean confidence against accuracy per bin, bins as dots sized by count.
function reliabilitySvg(r) {
  const W = 240, P = 28;
  const x = (v) => P + v * (W - 2 * P);
  const y = (v) => W - P - v * (W - 2 * P);
  const ece = r.assessment.report.ece_calibrated ?? r.assessment.report.ece_raw;
  const words = `Reliability: how often the decided class is right against how sure the model was; ECE ${f3(ece)}`;
  const s = svg('svg', { viewBox: `0 0 ${W} ${W}`, class: 'own-plot', role: 'img', 'aria-label': words });
  s.append(svg('title', {}, words));
  s.append(svg('rect', { x: x(0), y: y(1), width: x(1) - x(0), height: y(0) - y(1), fill: 'none', stroke: 'currentColor', 'stroke-opacity': 0.4 }));
  s.append(svg('line', { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: 'currentColor', 'stroke-dasharray': '3 3', 'stroke-opacity': 0.5 }));
  const bins = r.assessment.reliability.filter((b) => b.n > 0 && b.confidence !== null && b.accuracy !== null);
  const most = Math.max(1, ...bins.map((b) => b.n));
  for (const b of bins) {
    const c = svg('circle', { cx: x(b.confidence), cy: y(b.accuracy), r: 2 + 5 * Math.sqrt(b.n / most), fill: '#1f77b4', 'fill-opacity': 0.7 });
    c.append(svg('title', {}, `${b.n} images sure ${pctx(b.lo)}–${pctx(b.hi)}: right ${pctx(b.accuracy)}`));
    s.append(c);
  }
  s.append(svg('text', { x: x(0.5), y: W - 4, 'text-anchor': 'middle', 'font-size': 10 }, 'confidence'));
  s.append(svg('text', { x: 10, y: y(0.5), 'text-anchor': 'middle', 'font-size': 10, transform: `rotate(-90 10 ${y(0.5)})` }, 'accuracy'));
  return s;
}

// The decisions at a threshold: confusion and per-class rows (the engine counts them).
function renderAt(at) {
  own.at = at;
  const r = own.result;
  $('own-threshold-out').textContent = f3(at.threshold);
  const stored = r.operating_point && Math.abs(at.threshold - r.operating_point.threshold) < 5e-4;
  $('own-at').replaceChildren(
    table(`Decisions at threshold ${f3(at.threshold)} on P(${at.positive_class})${stored ? ' (the stored operating point)' : ''}: accuracy ${pctx(at.accuracy)}. Rows: true class; columns: decided class.`,
      ['true \\ decided', ...r.classes], at.confusion.map((row, i) => [r.classes[i], ...row.map(String)])),
    table('Per class at this threshold', ['class', 'images', 'sensitivity', 'specificity', 'precision'],
      at.per_class.map((c, i) => [c.class, String(r.counts[i]), pctx(c.sensitivity), pctx(c.specificity), pctx(c.precision)])),
  );
  // The ROC point of this threshold: the curve's point with the nearest threshold.
  const pts = (r.assessment.report.roc || {})[at.positive_class] || [];
  const dot = $('own-roc-point');
  if (dot && pts.length && own.roc) {
    const p = pts.reduce((a, b) => (Math.abs(b.threshold - at.threshold) < Math.abs(a.threshold - at.threshold) ? b : a));
    dot.setAttribute('cx', own.roc.x(p.fpr));
    dot.setAttribute('cy', own.roc.y(p.tpr));
    dot.setAttribute('visibility', 'visible');
  }
}

async function moveThreshold(value) {
  try { renderAt(await call('threshold', { value })); } catch (e) { message(e.message || String(e)); }
}

function render(r) {
  const rep = r.assessment.report;
  $('own-result').hidden = false;
  const auc = rep.auc ?? rep.macro_auc;
  const patients = r.grouped ? 'grouped by the patients you named' : 'no patient ids: every image counts as its own patient';
  $('own-summary').textContent = `${r.title} on your ${r.files.length} images (${r.classes.map((c, i) => `${r.counts[i]} ${c}`).join(', ')}): `
    + `${rep.auc !== undefined ? 'AUC' : 'macro AUC'} ${f3(auc)}, 95 % CI ${ci(r.assessment.auc_ci)} (bootstrap over patients, ${patients}); `
    + `accuracy at arg-max ${pctx(rep.accuracy)}; ECE ${f3(rep.ece_calibrated ?? rep.ece_raw)}.`
    + (own.inUse.has(r.model) ? ' The model in use was adapted locally: on the images it adapted on these are training numbers, not a test (the cross-validated result of the adaptation is).' : '');
  $('own-leak').hidden = r.grouped;
  const aside = $('own-aside');
  aside.replaceChildren(...r.set_aside.map((s) => el('li', null, `${s.path}${s.line ? ` (line ${s.line})` : ''}: ${s.words}`)));
  $('own-aside-box').hidden = !r.set_aside.length;
  $('own-aside-count').textContent = `${r.set_aside.length} file${r.set_aside.length === 1 ? '' : 's'} set aside`;
  own.roc = rocSvg(r);
  const figure = (plot, caption) => { const f = el('figure'); f.append(plot, el('figcaption', null, caption)); return f; };
  $('own-plots').replaceChildren(
    figure(own.roc.svg, `ROC (${own.roc.positive} vs the rest); the red dot is the threshold below`),
    figure(reliabilitySvg(r), 'Reliability: on the diagonal, "80 % sure" is right 80 % of the time'),
  );
  const slider = $('own-threshold');
  slider.disabled = !r.operating_point;
  $('own-threshold-reset').disabled = !r.operating_point;
  if (r.operating_point) {
    slider.value = r.operating_point.threshold;
    moveThreshold(r.operating_point.threshold);
  } else {
    $('own-threshold-out').textContent = 'this model has no operating point';
    $('own-at').replaceChildren(table('Decisions at arg-max. Rows: true class; columns: decided class.', ['true \\ decided', ...r.classes], rep.confusion.map((row, i) => [r.classes[i], ...row.map(String)])));
  }
  const worst = $('own-worst');
  worst.replaceChildren(...r.assessment.worst.map((m) => {
    const li = el('li');
    const b = el('button', null, r.files[m.index]);
    b.type = 'button';
    b.title = 'open this file with its Grad-CAM';
    b.addEventListener('click', () => {
      const f = own.files.find((x) => x.path.replaceAll('\\', '/') === r.files[m.index]);
      if (f) own.onOpen(f.file, f.path, r.model);
    });
    li.append(b, el('span', 'muted', ` — truly ${r.classes[m.truth]}, P(${r.classes[m.truth]}) ${pctx(m.p_truth)}, decided ${r.classes[m.decided]}`));
    return li;
  }));
  $('own-adapt').hidden = false;
}

// One row per image: the file, its label, each class's probability, and the engine's decision
// at the threshold shown.
function exportCsv() {
  const r = own.result;
  if (!r) return;
  const q = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
  const decided = own.at?.decided;
  const lines = [['file', 'label', ...r.classes.map((c) => `p_${c}`), 'decided', 'threshold'].join(',')];
  r.files.forEach((f, i) => {
    const p = r.probabilities[i];
    lines.push([q(f), r.classes[r.truth[i]], ...p.map((v) => v.toFixed(6)), decided ? r.classes[decided[i]] : '', own.at?.threshold ?? ''].join(','));
  });
  download(new Blob([`${lines.join('\n')}\n`], { type: 'text/csv' }), `ctxr-${r.model}-labelled.csv`);
}

function download(blob, name) {
  const a = el('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ---------- adaptation ----------

onWorkerProgress('adapt', (m) => {
  const p = m.progress;
  const bar = $('own-adapt-bar');
  const folds = own.running?.folds ?? 5;
  const fitName = (fit) => (fit >= folds ? 'final fit on the whole set' : `fold ${fit + 1} of ${folds}`);
  if (p.stage === 'scored') {
    $('own-adapt-text').textContent = `Scoring the set with the model as shipped: ${p.done} of ${p.of}`;
  } else if (p.stage === 'step') {
    bar.max = p.steps_run + p.steps_left;
    bar.value = p.steps_run;
    const eta = p.steps_run > 0 ? (m.ms / p.steps_run) * p.steps_left / 1000 : null;
    $('own-adapt-text').textContent = `${fitName(p.fit)}, epoch ${p.epoch}: loss ${p.loss.toFixed(3)}; ${(m.ms / 1000).toFixed(0)} s so far, at most ${eta === null ? '…' : `${Math.ceil(eta)} s`} left (less if it stops early)`;
    record({ adapt: { stage: 'step', fit: p.fit, epoch: p.epoch, steps_run: p.steps_run, ms: Math.round(m.ms) } });
  } else if (p.stage === 'epoch') {
    const e = p.record;
    const li = el('li', null, `${fitName(p.fit)}, epoch ${e.epoch}: training loss ${f3(e.train_loss)}, held-out loss ${f3(e.held_loss)}, held-out AUC ${f3(e.held_auc)}${p.stopping ? ' — this fit ends here (its best epoch is kept)' : ''} (${(m.ms / 1000).toFixed(0)} s)`);
    $('own-epochs-log').append(li);
    record({ adapt: { stage: 'epoch', fit: p.fit, epoch: e.epoch, steps_run: null, ms: Math.round(m.ms) } });
  }
});

async function adapt() {
  const folds = Number($('own-folds').value) || 5;
  const epochs = Number($('own-epochs').value) || undefined;
  own.running = { folds };
  $('own-adapt-start').disabled = true;
  $('own-adapt-cancel').disabled = false;
  $('own-epochs-log').replaceChildren();
  $('own-adapt-result').textContent = '';
  $('own-save').hidden = true;
  record({ adapt: { stage: 'starting', fit: 0, epoch: 0, steps_run: 0, ms: 0 } });
  try {
    const out = await call('adapt', { part: $('own-part').value, epochs, folds });
    own.adapted = { entry: out.entry, record: out.record, manifest: out.manifest };
    own.inUse.set(out.entry.id, { entry: JSON.stringify(out.entry), record: out.record });
    $('own-adapt-result').textContent = describeCv(out.entry, out.verdict) + ` Adapting took ${(out.ms / 1000).toFixed(0)} s. The adapted model is now the one in use.`;
    $('own-save').hidden = false;
    record({ adapt: { stage: 'done', fit: null, epoch: null, steps_run: null, ms: Math.round(out.ms) } });
    inUse(out.entry);
  } catch (e) {
    $('own-adapt-result').textContent = e.message || String(e);
    record({ adapt: { stage: e.kind === 'cancelled' ? 'cancelled' : 'failed', fit: null, epoch: null, steps_run: null, ms: null } });
  } finally {
    own.running = null;
    $('own-adapt-start').disabled = false;
    $('own-adapt-cancel').disabled = true;
    $('own-adapt-bar').value = 0;
  }
}

// The cross-validated comparison, in words, with the engine's verdict on the gain.
function describeCv(entry, verdict) {
  const p = entry.adapted;
  const cv = p.cross_validation;
  const n = p.counts.reduce((a, b) => a + b, 0);
  const gain = cv.difference_ci;
  return `Cross-validated on your ${n} images (${cv.folds} folds by patient; each fold scored by a model that never trained on it): `
    + `AUC ${f3(cv.auc_before)} (${ci(cv.auc_before_ci)}) before → ${f3(cv.auc_after)} (${ci(cv.auc_after_ci)}) after; `
    + `difference ${gain ? `${f3(gain.lo)} to ${f3(gain.hi)}` : '—'} (paired 95 % interval): ${verdict}. `
    + `${p.grouped ? '' : 'No patient ids were given, so one patient\'s images may sit on both sides of a split and flatter the "after". '}`;
}

// The banner and hooks say which model is in use.
function inUse(entry) {
  const p = entry.adapted;
  record({ adapted: p ? { id: entry.id, title: entry.title, sha256: entry.sha256, images: p.counts.reduce((a, b) => a + b, 0), auc_before: p.cross_validation.auc_before ?? null, auc_after: p.cross_validation.auc_after ?? null } : null });
  const banner = $('adapted-banner');
  banner.hidden = !p;
  if (p) {
    $('adapted-text').textContent = `In use: the ${MODEL_WORDS[entry.id]} adapted locally on ${p.counts.reduce((a, b) => a + b, 0)} images — not validated. `
      + `Its only evidence is the cross-validated AUC on those images (${f3(p.cross_validation.auc_before)} → ${f3(p.cross_validation.auc_after)}). `;
    $('adapted-restore').dataset.id = entry.id;
  }
  own.onModelChange(entry);
}

// ---------- saving and loading ----------

async function keepInBrowser() {
  if (!own.adapted) return;
  try {
    await keep(own.adapted);
    $('own-save-text').textContent = 'Kept in this browser: it is listed under "Adapted models" and can be used after a reload.';
    await listKept();
  } catch (e) { $('own-save-text').textContent = e.message || String(e); }
}

// The record and the engine's manifest with its entry: put both beside copies of the shipped
// weights' other records to use them with `ctxr … --weights DIR`, or pick both here again.
function saveToFiles() {
  if (!own.adapted) return;
  const { entry, record: bytes, manifest } = own.adapted;
  download(new Blob([bytes], { type: 'application/octet-stream' }), entry.record);
  download(new Blob([manifest], { type: 'application/json' }), 'manifest.json');
  $('own-save-text').textContent = `Saved ${entry.record} and manifest.json (its entry holds the base model's SHA-256, the data summary and the cross-validation).`;
}

async function install(entryText, bytes) {
  try {
    const entry = await call('install', { entry: entryText, record: bytes });
    own.inUse.set(entry.id, { entry: entryText, record: bytes });
    inUse(entry);
    $('own-load-text').textContent = `Now in use: ${entry.title}.`;
  } catch (e) { $('own-load-text').textContent = e.message || String(e); }
}

async function listKept() {
  let all = [];
  try { all = await kept(); } catch (e) { $('own-kept-text').textContent = e.message || String(e); return; }
  record({ saved: all.length });
  $('own-kept-text').textContent = all.length ? '' : 'None kept in this browser yet.';
  $('own-kept').replaceChildren(...all.map((m) => {
    const li = el('li');
    const use = el('button', null, 'Use');
    use.type = 'button';
    use.addEventListener('click', () => install(m.entry, m.record));
    const del = el('button', null, 'Delete');
    del.type = 'button';
    del.addEventListener('click', async () => { await forget(m.sha256); listKept(); });
    li.append(el('span', null, `${m.title} (kept ${m.saved.slice(0, 16).replace('T', ' ')}, SHA-256 ${m.sha256.slice(0, 12)}…) `), use, del);
    return li;
  }));
}

// A record and its manifest (or bare entry) picked together.
async function loadFiles(files) {
  const list = [...files];
  const json = list.find((f) => /\.json$/i.test(f.name));
  const bpk = list.find((f) => /\.bpk$/i.test(f.name));
  if (!json || !bpk) { $('own-load-text').textContent = 'Pick both files: the record (.bpk) and its manifest (.json).'; return; }
  let parsed;
  try { parsed = JSON.parse(await json.text()); } catch { $('own-load-text').textContent = `${json.name} is not JSON.`; return; }
  const entries = Array.isArray(parsed?.models) ? parsed.models : [parsed];
  const entry = entries.find((e) => e && e.record === bpk.name) || entries.find((e) => e && e.adapted);
  if (!entry) { $('own-load-text').textContent = `${json.name} names no model stored in ${bpk.name}.`; return; }
  await install(JSON.stringify(entry), new Uint8Array(await bpk.arrayBuffer()));
}

/**
 * Install again the adapted models in use after the engine started in a new worker (another
 * backend, or a restart after a fault), so that the model in use never changes silently.
 */
export async function reinstallAdapted() {
  for (const [id, m] of own.inUse) {
    try {
      inUse(await call('install', m));
    } catch (e) {
      own.inUse.delete(id);
      $('adapted-text').textContent = `The adapted model could not be used again (${e.message || e}); the shipped model is in use.`;
      record({ adapted: null });
    }
  }
}

/** Wire the panel: `onOpen(file, path, model)` opens a file in the viewer. */
export function setupLabelled({ onOpen, onModelChange }) {
  own.onOpen = onOpen;
  own.onModelChange = onModelChange || (() => {});
  $('own-folder').addEventListener('change', (e) => {
    const files = [...e.target.files].map((file) => ({ path: file.webkitRelativePath || file.name, file }));
    e.target.value = '';
    measure(files);
  });
  $('own-files').addEventListener('change', (e) => {
    const files = [...e.target.files].map((file) => ({ path: file.name, file }));
    e.target.value = '';
    measure(files);
  });
  $('own-again').addEventListener('click', () => measure(own.files));
  $('own-threshold').addEventListener('input', (e) => moveThreshold(Number(e.target.value)));
  $('own-threshold-reset').addEventListener('click', () => {
    if (!own.result?.operating_point) return;
    $('own-threshold').value = own.result.operating_point.threshold;
    moveThreshold(own.result.operating_point.threshold);
  });
  $('own-csv').addEventListener('click', exportCsv);
  $('own-adapt-start').addEventListener('click', adapt);
  $('own-adapt-cancel').addEventListener('click', () => call('adapt_cancel'));
  $('own-save-db').addEventListener('click', keepInBrowser);
  $('own-save-file').addEventListener('click', saveToFiles);
  $('own-load').addEventListener('change', (e) => { loadFiles(e.target.files); e.target.value = ''; });
  $('adapted-restore').addEventListener('click', async (e) => {
    try {
      const entry = await call('restore', { model: e.target.dataset.id });
      own.inUse.delete(entry.id);
      inUse(entry);
    } catch (err) { $('adapted-text').textContent = err.message || String(err); }
  });
  listKept();
}
