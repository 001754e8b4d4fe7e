// batch.js — one job: the record of every file taken in this session. It owns the rows (one
// per file, or per CT study: its status, model, decision, probabilities, gate reason or error,
// time), draws them
// in the batch table with the progress line, exports them as CSV, and scores each folder of CT
// slices (a series, one patient) by the maximum and mean of the slices' probability of the
// model's positive class — the class named by the engine's decision rule, not by this page.
import { record } from './hooks.js';
import { drawGrey, pct } from './viewer.js';

const $ = (id) => document.getElementById(id);
const batch = {
  // {n, name, series, file, status, model, decision, label, probs, classes, positiveClass, gate, error, ms, seen, seenSize, tr}
  rows: [],
  manifest: null,
  onOpen: () => {}, // show a finished row again (set by setupBatch)
  onClear: () => {}, // forget the files still queued (set by setupBatch)
};

export function configureBatch({ manifest }) {
  batch.manifest = manifest;
  seriesScore();
}

/** A new row for a file, shown as queued. Files from a folder form a series: the folder. */
export function addRow(file, name) {
  const series = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : null;
  const row = { n: batch.rows.length + 1, name, series, file, status: 'queued' };
  batch.rows.push(row);
  $('batch').hidden = false;
  const tr = document.createElement('tr');
  row.tr = tr;
  $('batch-table').tBodies[0].append(tr);
  updateRow(row);
  return row;
}

export function markWorking(row) {
  row.status = 'working';
  updateRow(row);
}

/** Keep what the table, the CSV and the series score need from an analysis (no full-size pixels). */
export function recordResult(row, r, ms) {
  row.ms = ms;
  row.gate = r.gate;
  row.model = r.model;
  row.trials = [];
  for (const k of ['classes', 'probs', 'label', 'decision', 'positiveClass', 'seen', 'seenSize']) delete row[k];
  if (r.refused) {
    row.status = r.gate?.unsure ? 'asked' : 'refused';
    return;
  }
  row.status = 'ok';
  row.classes = r.prediction.classes;
  row.probs = r.prediction.probabilities;
  row.label = r.prediction.label;
  row.decision = r.decision ? r.decision.label : r.prediction.label;
  row.positiveClass = r.decision?.positive_class ?? null;
  row.seen = r.seen;
  row.seenSize = r.seen_size;
}

/** A CT study's score (`score`: the engine's StudyScore with `ms`), or why it failed (`e`). */
export function recordStudy(row, score, e) {
  if (!row) return;
  if (e) {
    recordError(row, e, 0);
  } else {
    row.status = 'ok';
    row.model = 'ct';
    row.ms = score.ms;
    row.decision = score.study_score === null
      ? 'study: no lung-level slice, not scored'
      : `study score ${score.study_score.toFixed(3)} (max over ${score.classified} lung-level slices; top-${score.k} mean ${score.top_k_mean.toFixed(3)})`;
  }
  updateRow(row);
  updateBatch();
}

export function recordError(row, e, ms) {
  row.ms = ms;
  row.status = 'error';
  row.error = e;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

export function updateRow(row) {
  const tr = row.tr;
  if (!tr) return;
  tr.dataset.status = row.status;
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'link';
  open.textContent = row.name;
  open.addEventListener('click', () => batch.onOpen(row));
  const fileCell = document.createElement('td');
  fileCell.append(open);
  const probs = row.probs ? row.classes.map((c, i) => `${c} ${pct(row.probs[i])}`).join(', ') : '';
  const gate = row.status === 'error' ? `error: ${row.error.message}` : row.gate ? `${row.gate.accepted ? '' : row.gate.unsure ? 'asked: ' : 'refused: '}${row.gate.reason}` : row.study && row.status === 'ok' ? 'a CT study: read by the CT model' : row.status === 'ok' ? readAsWords(row) : row.status;
  const trials = (row.trials || []).length ? ` (+ ${row.trials.length} teaching window trial${row.trials.length > 1 ? 's' : ''})` : '';
  const decision = row.decision ? `${row.decision}${trials}` : row.status === 'refused' ? 'refused' : row.status === 'asked' ? 'asked which model' : '';
  tr.replaceChildren(cell(String(row.n)), fileCell, cell(row.model || ''), cell(decision), cell(probs), cell(gate), cell(row.ms ? row.ms.toFixed(0) : ''));
}

// Who chose the model of a row the gate did not route.
function readAsWords(row) {
  return row.readAs ? `read as ${row.readAs} by your choice for this file` : 'read by your choice for every file';
}

/** The progress line and the series scores, after a row finished (or the table was cleared). */
export function updateBatch() {
  const rows = batch.rows;
  const done = rows.filter((r) => r.status !== 'queued' && r.status !== 'working').length;
  $('batch-bar').max = Math.max(1, rows.length);
  $('batch-bar').value = done;
  const refused = rows.filter((r) => r.status === 'refused' || r.status === 'asked').length;
  const errors = rows.filter((r) => r.status === 'error').length;
  $('batch-text').textContent = `${done} of ${rows.length} done · ${refused} not classified (refused or asked) · ${errors} could not be read`;
  record({ done });
  seriesScore();
}

// The class a series is scored on: the one the engine's decision rule tests for (from the
// analyses), else the operating point in the model's manifest entry.
function positiveClass(slices) {
  const fromDecision = slices.find((r) => r.positiveClass)?.positiveClass;
  if (fromDecision) return fromDecision;
  const entry = (batch.manifest?.models || []).find((m) => m.id === slices[0].model);
  return entry?.operating_point?.positive_class ?? null;
}

// One score per folder of CT slices: the maximum and mean of the slices' P(positive class).
function seriesScore() {
  const groups = new Map();
  for (const r of batch.rows) {
    if (r.status !== 'ok' || r.model !== 'ct' || !r.series || r.study) continue;
    if (!groups.has(r.series)) groups.set(r.series, []);
    groups.get(r.series).push(r);
  }
  const box = $('patient');
  const list = $('series-list');
  list.replaceChildren();
  for (const [series, slices] of groups) {
    if (slices.length < 2) continue;
    const positive = positiveClass(slices);
    const pos = slices[0].classes.indexOf(positive);
    if (pos < 0) continue; // no decision rule names a class of this model: no score
    const ps = slices.map((r) => r.probs[pos]);
    const max = Math.max(...ps);
    const mean = ps.reduce((a, b) => a + b, 0) / ps.length;
    const item = document.createElement('section');
    item.className = 'series';
    item.dataset.series = series;
    item.dataset.positive = positive;
    item.dataset.max = String(max);
    item.dataset.mean = String(mean);
    item.dataset.slices = String(slices.length);
    const h = document.createElement('h4');
    h.textContent = series;
    const p = document.createElement('p');
    p.textContent = `${slices.length} CT slices: highest P(${positive}) ${max.toFixed(3)}, mean ${mean.toFixed(3)} (slice max-pooling as in the DeCoVNet paper; a research summary, not a diagnosis). Top slices:`;
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
  const rows = batch.rows;
  const classes = [...new Set(rows.flatMap((r) => r.classes || []))];
  const head = ['file', 'series', 'status', 'model', 'decision', 'argmax', ...classes.map((c) => `p_${c}`), 'chosen_by', 'gate', 'window_trials', 'error_kind', 'error', 'ms'];
  const lines = [head.join(',')];
  for (const r of rows) {
    const p = classes.map((c) => (r.classes && r.classes.includes(c) ? r.probs[r.classes.indexOf(c)].toFixed(6) : ''));
    const chosen = r.gate ? 'input gate' : r.study ? 'a CT study' : r.readAs ? `you, this file (${r.readAs})` : r.status === 'ok' ? 'you, every file' : '';
    // Teaching one-offs: the window and the answer, never the row's result.
    const trials = (r.trials || []).map((t) => `${t.window}: ${t.label} (${t.classes.map((c, i) => `${c} ${t.probabilities[i].toFixed(4)}`).join(' ')})`).join('; ');
    lines.push([r.name, r.series || '', r.status, r.model || '', r.decision || '', r.label || '', ...p, chosen, r.gate ? r.gate.reason : '', trials, r.error?.kind || '', r.error?.message || '', r.ms ? r.ms.toFixed(1) : ''].map(csvField).join(','));
  }
  const blob = new Blob([lines.join('\n') + '\n'], { type: 'text/csv' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'ctxr-results.csv';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/**
 * `onOpen(row)`: show a finished row again; `onClear(n)`: the `n` files of the table were
 * dropped (forget the queue, empty the result panel).
 */
export function setupBatch({ onOpen, onClear }) {
  batch.onOpen = onOpen;
  batch.onClear = onClear;
  $('csv').addEventListener('click', exportCsv);
  $('clear').addEventListener('click', () => {
    const n = batch.rows.length;
    // A file still being read finds its row cleared and shows nothing.
    for (const r of batch.rows) r.cleared = true;
    batch.rows = [];
    $('batch-table').tBodies[0].replaceChildren();
    updateBatch();
    $('batch').hidden = true;
    batch.onClear(n);
  });
}
