/**
 * card.js — one job: draw the ctxr model card (disclaimer, per-model metrics,
 * confusion matrices, ROC curves, input-gate results, limitations) from the
 * already-parsed weights/manifest.json object into a container element.
 *
 * No fetch, no eval, no innerHTML, no inline style attributes (CSP-safe): the
 * DOM is built with createElement / createElementNS and textContent. Every
 * manifest field may be missing or null; missing values print as "–".
 * Research and teaching tool. Not a medical device; not for clinical use.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';
const DASH = '–';
/** Okabe–Ito colours, plus dash patterns so curves differ without colour too. */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00'];
const DASHES = ['', '7 3', '2 3', '9 3 2 3', '4 4', '1 3'];
const DEFAULT_DISCLAIMER = 'Research and teaching tool. Not a medical device; not for clinical use or diagnosis.';
const FIXED_LIMITATIONS = [
  'Trained and tested on small public data sets with known biases (few hospitals, few scanners, convenience samples).',
  'Every pneumonia X-ray is pediatric (Kermany) while the COVID-19 X-rays are from adults, so the X-ray model can learn age or hospital instead of disease.',
  'The CT external test set (MosMedData) is labelled with severity grades, not PCR results.',
  'The UCSD COVID-CT slices were cut from published papers and carry arrows, text and figure artefacts.',
  'Not validated prospectively, on any local population, or against radiologists.',
];
const SET_LABELS = {
  external: 'External test set',
  internal_heldout: 'Internal held-out fold (shipped model never trained on it)',
  pooled_out_of_fold: 'Cross-validation, pooled out-of-fold',
};
let uid = 0;

// ---------- small, total helpers (never throw) ----------
const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);
const obj = (x) => (isObj(x) ? x : {});
const arr = (x) => (Array.isArray(x) ? x : []);
const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const str = (x) => (x === null || x === undefined || x === '' ? DASH : String(x));
const clamp01 = (v) => Math.min(1, Math.max(0, v));
const fmt = (x, digits = 3) => (num(x) === null ? DASH : num(x).toFixed(digits));
const int = (x) => (num(x) === null ? DASH : Math.round(x).toLocaleString('en-US'));
const aucOf = (r) => num(obj(r).macro_auc) ?? num(obj(r).auc);
const aucLabel = (entry) => (arr(entry.classes).length > 2 ? 'Macro AUC' : 'AUC');

/** A scalar in its natural format: integers grouped, fractions to 3 decimals. */
function auto(x) {
  if (typeof x === 'boolean') return x ? 'yes' : 'no';
  if (typeof x === 'string') return x || DASH;
  const v = num(x);
  if (v === null) return DASH;
  return Number.isInteger(v) ? int(v) : fmt(v);
}

function bytes(n) {
  const v = num(n);
  if (v === null) return DASH;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} MB`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(0)} KB`;
  return `${v} B`;
}

function meanSd(mean, sd) {
  if (num(mean) === null) return DASH;
  return num(sd) === null ? fmt(mean) : `${fmt(mean)} ± ${fmt(sd)}`;
}

export function el(tag, cls, content) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (content !== undefined && content !== null) e.textContent = String(content);
  return e;
}

export function svg(tag, attrs = {}, content) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (content !== undefined) e.textContent = String(content);
  return e;
}

function heading(level, textContent, section) {
  const h = el(`h${level}`, null, textContent);
  h.id = `mc-h-${++uid}`;
  if (section) section.setAttribute('aria-labelledby', h.id);
  return h;
}

function list(items, cls = 'mc-list') {
  const ul = el('ul', cls);
  for (const it of items) ul.append(el('li', null, it));
  return ul;
}

/**
 * A table in a horizontally scrollable wrapper. `rows` are arrays of cells; the
 * first cell of each row is its row header. A cell is a value or {text|node, cls}.
 */
export function table(caption, head, rows, cls = '') {
  const t = el('table', `mc-table ${cls}`.trim());
  t.append(el('caption', null, caption));
  if (head) {
    const tr = el('tr');
    for (const h of head) {
      const th = el('th', null, h);
      th.scope = 'col';
      tr.append(th);
    }
    t.appendChild(el('thead')).append(tr);
  }
  const tbody = t.appendChild(el('tbody'));
  for (const row of rows) {
    const tr = tbody.appendChild(el('tr'));
    row.forEach((c, i) => {
      const cell = isObj(c) ? c : { text: c };
      const td = el(i === 0 ? 'th' : 'td', cell.cls || (i > 0 ? 'mc-num' : null));
      if (i === 0) td.scope = 'row';
      if (cell.node) td.append(cell.node);
      else td.textContent = str(cell.text);
      tr.append(td);
    });
  }
  const wrap = el('div', 'mc-scroll');
  wrap.tabIndex = 0; // keyboard users can scroll a wide table
  wrap.setAttribute('role', 'region');
  wrap.setAttribute('aria-label', caption);
  wrap.append(t);
  return wrap;
}

/** Key/value table; nested objects are flattened to "a · b" keys. */
function kvTable(caption, o) {
  const rows = [];
  const walk = (v, key, depth) => {
    if (isObj(v) && depth < 3) Object.entries(v).forEach(([k, w]) => walk(w, key ? `${key} · ${k}` : k, depth + 1));
    else if (Array.isArray(v)) rows.push([key, v.every((x) => !isObj(x) && !Array.isArray(x)) ? v.map(auto).join(', ') : DASH]);
    else rows.push([key, { text: auto(v), cls: typeof v === 'string' ? 'mc-text' : 'mc-num' }]);
  };
  walk(obj(o), '', 0);
  return table(caption, ['Item', 'Value'], rows, 'mc-kv');
}

function stats(pairs) {
  const dl = el('dl', 'mc-stats');
  for (const [k, v] of pairs) {
    const d = dl.appendChild(el('div', 'mc-stat'));
    d.append(el('dt', null, k), el('dd', null, v));
  }
  return dl;
}

/** Never let one malformed part take the whole card down. */
function safely(parent, draw) {
  try {
    const node = draw();
    if (node) parent.append(node);
  } catch (err) {
    parent.append(el('p', 'mc-error', 'This part of the model card could not be drawn from the manifest.'));
    if (typeof console !== 'undefined') console.warn('model card:', err);
  }
}

// ---------- ROC ----------
/**
 * Normalise a manifest `roc` field into [{name, points: [{fpr, tpr}]}].
 * Accepts an object of lists keyed by class, a plain list (binary model, named
 * `fallbackName`), or columns {fpr: [...], tpr: [...]}. Points may be objects
 * or [fpr, tpr] pairs; invalid points are dropped, values clamped to 0–1,
 * sorted by fpr then tpr. Curves without points are omitted.
 */
export function rocPoints(roc, fallbackName = 'positive') {
  const curve = (name, pts) => ({
    name: String(name),
    points: arr(pts)
      .map((p) => (Array.isArray(p) ? { fpr: num(p[0]), tpr: num(p[1]) } : { fpr: num(obj(p).fpr), tpr: num(obj(p).tpr) }))
      .filter((p) => p.fpr !== null && p.tpr !== null)
      .map((p) => ({ fpr: clamp01(p.fpr), tpr: clamp01(p.tpr) }))
      .sort((a, b) => a.fpr - b.fpr || a.tpr - b.tpr),
  });
  let curves = [];
  if (Array.isArray(roc)) curves = [curve(fallbackName, roc)];
  else if (isObj(roc) && Array.isArray(roc.fpr) && Array.isArray(roc.tpr)) {
    curves = [curve(fallbackName, roc.fpr.map((f, i) => [f, roc.tpr[i]]))];
  } else if (isObj(roc)) {
    curves = Object.entries(roc).filter(([, v]) => Array.isArray(v)).map(([k, v]) => curve(k, v));
  }
  return curves.filter((c) => c.points.length > 0);
}

function swatch(stroke, dash, width = 3) {
  const s = svg('svg', { viewBox: '0 0 28 10', width: 28, height: 10, class: 'mc-swatch', 'aria-hidden': 'true' });
  s.append(svg('line', { x1: 1, y1: 5, x2: 27, y2: 5, stroke, 'stroke-width': width, 'stroke-dasharray': dash || 'none' }));
  return s;
}

function rocChart(report, caption, positive) {
  const r = obj(report);
  const fig = el('figure', 'mc-figure');
  const curves = rocPoints(r.roc, positive || 'positive');
  if (!curves.length) {
    fig.append(el('p', 'mc-muted', `${caption}: no ROC data.`));
    return fig;
  }
  const aucs = obj(r.auc_per_class);
  const aucFor = (c) => num(aucs[c.name]) ?? (curves.length === 1 ? aucOf(r) : null);
  const summary = curves.map((c) => `${c.name}: AUC ${fmt(aucFor(c))}`).join('; ');
  const [W, H, L, R, T, B] = [320, 300, 46, 12, 10, 42];
  const pw = W - L - R, ph = H - T - B;
  const x = (f) => (L + f * pw).toFixed(1), y = (t) => (T + (1 - t) * ph).toFixed(1);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'mc-roc', role: 'img', 'aria-label': `${caption}. ${summary}` });
  s.append(svg('title', {}, `${caption}. ${summary}`));
  for (const t of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
    s.append(svg('line', { x1: x(t), y1: y(0), x2: x(t), y2: y(1), class: 'mc-roc-grid', stroke: 'currentColor' }));
    s.append(svg('line', { x1: x(0), y1: y(t), x2: x(1), y2: y(t), class: 'mc-roc-grid', stroke: 'currentColor' }));
    s.append(svg('text', { x: x(t), y: T + ph + 14, 'text-anchor': 'middle', class: 'mc-roc-tick', fill: 'currentColor' }, t.toFixed(1)));
    s.append(svg('text', { x: L - 5, y: (T + (1 - t) * ph + 4).toFixed(1), 'text-anchor': 'end', class: 'mc-roc-tick', fill: 'currentColor' }, t.toFixed(1)));
  }
  s.append(svg('rect', { x: L, y: T, width: pw, height: ph, fill: 'none', stroke: 'currentColor', class: 'mc-roc-frame' }));
  s.append(svg('line', { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: 'currentColor', 'stroke-dasharray': '3 4', class: 'mc-roc-diag' }));
  curves.forEach((c, i) => {
    s.append(svg('polyline', {
      points: c.points.map((p) => `${x(p.fpr)},${y(p.tpr)}`).join(' '),
      fill: 'none', stroke: PALETTE[i % 6], 'stroke-width': 2, 'stroke-linejoin': 'round',
      'stroke-dasharray': DASHES[i % 6] || 'none', class: 'mc-roc-curve',
    }));
  });
  s.append(svg('text', { x: L + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'mc-roc-label', fill: 'currentColor' }, 'False positive rate'));
  s.append(svg('text', { x: -(T + ph / 2), y: 12, transform: 'rotate(-90)', 'text-anchor': 'middle', class: 'mc-roc-label', fill: 'currentColor' }, 'True positive rate'));
  const legend = el('ul', 'mc-legend');
  curves.forEach((c, i) => {
    const li = legend.appendChild(el('li'));
    li.append(swatch(PALETTE[i % 6], DASHES[i % 6]), el('span', null, `${c.name} — AUC ${fmt(aucFor(c))}`));
  });
  legend.appendChild(el('li', 'mc-muted')).append(swatch('currentColor', '3 4', 1.5), el('span', null, 'chance (AUC 0.500)'));
  fig.append(el('figcaption', null, `${caption} (one-vs-rest)`), s, legend);
  return fig;
}

// ---------- tables built from reports ----------
function confusionTable(caption, classes, matrix) {
  const m = arr(matrix);
  if (!m.length) return el('p', 'mc-muted', `${caption}: ${DASH}`);
  const name = (i) => str(classes[i] ?? `class ${i}`);
  const rows = m.map((row, i) => {
    const cells = arr(row);
    const total = cells.reduce((a, v) => a + (num(v) ?? 0), 0);
    return [name(i), ...cells.map((v) => {
      const share = total > 0 && num(v) !== null ? num(v) / total : null;
      const bucket = share === null ? 0 : Math.min(5, Math.round(share * 5));
      const node = document.createDocumentFragment();
      node.append(el('span', 'mc-count', int(v)), el('span', 'mc-share', fmt(share)));
      return { node, cls: `mc-num mc-cell mc-c${bucket}` };
    }), int(total)];
  });
  const head = ['Truth ↓ / predicted →', ...m[0].map((_, j) => name(j)), 'Total'];
  return table(`${caption} — rows: true class, columns: predicted class; count and row share`, head, rows, 'mc-confusion');
}

function perClassTable(caption, perClass) {
  const rows = arr(perClass).map((p) => {
    const q = obj(p);
    return [str(q.class), fmt(q.sensitivity), fmt(q.specificity), fmt(q.precision), fmt(q.f1), int(q.support)];
  });
  if (!rows.length) return el('p', 'mc-muted', `${caption}: ${DASH}`);
  return table(caption, ['Class', 'Sensitivity', 'Specificity', 'Precision', 'F1', 'Support'], rows);
}

const counts = (classes, cc) => arr(cc).map((v, i) => `${str(classes[i])} ${int(v)}`).join(' · ') || DASH;
const rule = (pos, thr) => `${str(pos)} if P(${str(pos)}) ≥ ${fmt(thr)}, otherwise the most probable other class`;

function reportPanel(entry, report, label) {
  const r = obj(report);
  const classes = arr(r.classes).length ? arr(r.classes) : arr(entry.classes);
  const panel = el('div', 'mc-report');
  panel.append(el('h4', null, label));
  panel.append(el('p', 'mc-summary', `n = ${int(r.n)} · accuracy ${fmt(r.accuracy)} · ${aucLabel(entry)} ${fmt(aucOf(r))} · ECE ${fmt(r.ece_raw)} raw → ${fmt(r.ece_calibrated)} calibrated`));
  safely(panel, () => perClassTable(`Per-class results (arg-max decision) — ${label}`, r.per_class));
  safely(panel, () => confusionTable(`Confusion matrix (arg-max) — ${label}`, classes, r.confusion));
  const op = obj(r.at_operating_point);
  if (Object.keys(op).length) {
    panel.append(el('p', null, `At the operating point (${rule(op.positive_class, op.threshold)}): accuracy ${fmt(op.accuracy)}.`));
    safely(panel, () => confusionTable(`Confusion matrix at the operating point — ${label}`, classes, op.confusion));
  }
  safely(panel, () => rocChart(r, `ROC curves — ${label}`, obj(entry.operating_point).positive_class || classes[1]));
  const sources = Object.entries(obj(r.per_source));
  if (sources.length) {
    safely(panel, () => table(`Results per source — ${label} (AUC is undefined where a source has one class)`,
      ['Source', 'n', 'Accuracy', aucLabel(entry), 'ECE raw', 'ECE calibrated', 'Class counts'],
      sources.map(([name, s]) => [name, int(obj(s).n), fmt(obj(s).accuracy), fmt(aucOf(s)), fmt(obj(s).ece_raw),
        fmt(obj(s).ece_calibrated), { text: counts(arr(obj(s).classes).length ? obj(s).classes : classes, obj(s).class_counts), cls: 'mc-text' }])));
  }
  const subtypes = arr(r.per_subtype);
  if (subtypes.length) {
    safely(panel, () => table(`AUC by subtype — ${label} (each subtype against its source's images of the other labels)`,
      ['Source', 'Label', 'Subtype', 'n', 'Against', 'AUC'],
      subtypes.map((s) => {
        const q = obj(s);
        return [str(q.source), { text: q.label, cls: 'mc-text' }, { text: q.subtype, cls: 'mc-text' }, int(q.n), int(q.against), fmt(q.auc)];
      })));
  }
  if (isObj(r.patient_level)) safely(panel, () => kvTable(`Patient level — ${label}`, r.patient_level));
  return panel;
}

function reportSwitcher(entry, reports) {
  const wrap = el('div', 'mc-reports');
  if (!reports.length) return el('p', 'mc-muted', 'No evaluation reports in the manifest.');
  const panels = reports.map(([label, r]) => reportPanel(entry, r, label));
  if (panels.length > 1) {
    const row = wrap.appendChild(el('div', 'mc-select-row'));
    const sel = el('select', 'mc-select');
    sel.id = `mc-sel-${++uid}`;
    const lab = el('label', null, 'Show results for');
    lab.htmlFor = sel.id;
    reports.forEach(([label], i) => {
      const o = sel.appendChild(el('option', null, label));
      o.value = String(i);
    });
    sel.addEventListener('change', () => panels.forEach((p, i) => { p.hidden = String(i) !== sel.value; }));
    row.append(lab, sel);
  }
  panels.forEach((p, i) => { p.hidden = i > 0; wrap.append(p); });
  return wrap;
}

function sourcesTable(caption, groups, classes) {
  const labels = [...classes];
  for (const [, g] of groups) for (const s of Object.values(obj(g))) for (const k of Object.keys(obj(s))) if (!labels.includes(k)) labels.push(k);
  const rows = [];
  for (const [role, g] of groups) {
    for (const [name, s] of Object.entries(obj(g))) {
      const c = obj(s);
      const total = Object.values(c).reduce((a, v) => a + (num(v) ?? 0), 0);
      rows.push([name, { text: role, cls: 'mc-text' }, ...labels.map((l) => (l in c ? int(c[l]) : DASH)), int(total)]);
    }
  }
  if (!rows.length) return el('p', 'mc-muted', `${caption}: ${DASH}`);
  return table(caption, ['Source', 'Used for', ...labels, 'Total'], rows);
}

function facts(entry) {
  const a = obj(entry.architecture), p = obj(entry.preprocess);
  const size = num(p.input_size) === null ? DASH : `${p.input_size} × ${p.input_size} px, greyscale`;
  return stats([
    ['Parameters', int(entry.params)],
    ['Weights', `${str(entry.record)}, ${bytes(entry.record_bytes)}, ${str(entry.dtype)}`],
    ['Input', size],
    ['Architecture', `stem ${auto(a.stem_width)}, stages ${arr(a.stage_widths).map(auto).join('/') || DASH}`],
  ]);
}

function footer(sec, entry, disclaimer) {
  const credits = arr(entry.credits).filter((c) => typeof c === 'string');
  if (credits.length) {
    const d = sec.appendChild(el('details', 'mc-credits'));
    d.append(el('summary', null, `Data credits and licences (${credits.length})`), list(credits));
  }
  const notes = arr(entry.notes).filter((c) => typeof c === 'string' && c.trim() && c !== disclaimer);
  if (notes.length) sec.append(el('h4', null, 'Notes'), list(notes));
}

// ---------- sections ----------
// An adapted model (`entry.adapted`): what it was adapted from and on, and the only evidence
// there is for it, the cross-validation on the user's own set. The rest of the card describes
// the base model.
function adaptedBox(p, classes) {
  const box = el('div', 'mc-op');
  const cv = obj(p.cross_validation);
  const ci = (c) => (isObj(c) ? `${fmt(c.lo)}–${fmt(c.hi)}` : DASH);
  const counts = arr(p.counts).map((n, i) => `${int(n)} ${str(classes[i])}`).join(', ');
  box.append(el('h4', null, 'Adapted locally: not validated'));
  box.append(el('p', null, `Fine-tuned in this browser or with ctxr adapt (trained: ${str(obj(p.config).part)}) on the user's own ${counts} images${p.grouped ? ', grouped by patient' : ', without patient ids'}, from ${str(p.base_title)} (SHA-256 ${str(p.base_sha256).slice(0, 12)}…).`));
  box.append(el('p', null, `Cross-validated on that set (${int(cv.folds)} folds): AUC ${fmt(cv.auc_before)} (${ci(cv.auc_before_ci)}) before, ${fmt(cv.auc_after)} (${ci(cv.auc_after_ci)}) after; paired interval of the difference ${ci(cv.difference_ci)}. That is all the evidence there is: ${str(p.warning)}.`));
  box.append(el('p', 'mc-muted', 'The numbers below describe the base model before adapting.'));
  return box;
}

function renderClassifier(entry, disclaimer) {
  const sec = el('section', 'mc-model');
  const ev = obj(entry.evaluation), sets = obj(ev.sets), tr = obj(entry.training), cv = obj(tr.cross_validation);
  const ext = isObj(sets.external) ? sets.external : ev;
  const classes = arr(entry.classes);
  sec.append(heading(3, str(entry.title || entry.id), sec));
  if (entry.definition) sec.append(el('p', 'mc-definition', `What it decides: ${str(entry.definition)}`));
  if (isObj(entry.adapted)) safely(sec, () => adaptedBox(entry.adapted, classes));
  safely(sec, () => facts(entry));

  sec.append(el('h4', null, isObj(entry.adapted) ? 'Headline numbers (of the base model, before adapting)' : 'Headline numbers'));
  safely(sec, () => stats([
    ['External test n', int(ext.n)],
    ['External accuracy', fmt(ext.accuracy)],
    [`External ${aucLabel(entry)}`, fmt(aucOf(ext))],
    ['ECE raw → calibrated', `${fmt(ext.ece_raw)} → ${fmt(ext.ece_calibrated)}`],
    [`CV ${aucLabel(entry)} (mean ± sd)`, meanSd(cv.macro_auc_mean ?? cv.auc_mean, cv.macro_auc_sd ?? cv.auc_sd)],
    ['CV accuracy (mean ± sd)', meanSd(cv.accuracy_mean, cv.accuracy_sd)],
  ]));

  const op = obj(entry.operating_point);
  const opBox = sec.appendChild(el('div', 'mc-op'));
  opBox.append(el('h4', null, 'Operating point and calibration'));
  if (Object.keys(op).length) {
    opBox.append(el('p', 'mc-rule', `Decision rule: ${rule(op.positive_class, op.threshold)}.`));
    opBox.append(el('p', null, `Chosen for a target sensitivity of ${fmt(op.target_sensitivity)} on ${str(op.chosen_on)}: `
      + `validation sensitivity ${fmt(op.validation_sensitivity)}, specificity ${fmt(op.validation_specificity)}.`));
  } else opBox.append(el('p', 'mc-muted', 'No operating point stored; the most probable class is reported.'));
  opBox.append(el('p', null, `Temperature (softmax calibration): ${fmt(entry.temperature)}.`));

  sec.append(el('h4', null, 'Training data'));
  safely(sec, () => sourcesTable('Images per source and label', [['training pool', tr.pool_sources], ['external test', tr.external_sources]], classes));

  sec.append(el('h4', null, 'Evaluation'));
  const reports = [];
  for (const [k, r] of Object.entries(sets)) if (isObj(r)) reports.push([SET_LABELS[k] || k, r]);
  if (isObj(cv.pooled_out_of_fold)) reports.push([SET_LABELS.pooled_out_of_fold, cv.pooled_out_of_fold]);
  safely(sec, () => reportSwitcher(entry, reports));
  if (isObj(ev.patient_level) && !isObj(obj(sets.external).patient_level)) safely(sec, () => kvTable('Patient level (external test set)', ev.patient_level));

  const folds = arr(cv.per_fold).map(obj);
  if (folds.length) {
    sec.append(el('h4', null, 'Cross-validation'));
    if (cv.grouping) sec.append(el('p', 'mc-muted', `Folds grouped by: ${cv.grouping}.`));
    safely(sec, () => table(`Per-fold results (${int(cv.folds ?? folds.length)} folds)`,
      ['Fold', 'n', aucLabel(entry), 'Accuracy', 'ECE raw', 'ECE after temperature'],
      folds.map((f) => [auto(f.fold), int(f.n), fmt(aucOf(f)), fmt(f.accuracy), fmt(f.ece_raw), fmt(f.ece_after_temperature)])));
    if (cv.ece_note) sec.append(el('p', 'mc-muted', `ECE note: ${cv.ece_note}.`));
  }

  const loso = obj(tr.leave_one_source_out);
  if (arr(loso.runs).length) {
    sec.append(el('h4', null, 'Leave one source out (a hospital it never saw)'));
    sec.append(el('p', 'mc-muted', `Mean ${aucLabel(entry)} ${fmt(loso.mean_auc)}: ${str(loso.note)}.`));
    safely(sec, () => table('One model per left-out source, tested on that source', ['Left-out source', 'n', aucLabel(entry), 'Accuracy', 'Minutes'],
      arr(loso.runs).map(obj).map((r) => [str(r.source), int(obj(r.report).n), fmt(aucOf(obj(r.report))), fmt(obj(r.report).accuracy), fmt(r.minutes)])));
  }
  const audit = obj(ev.audit);
  if (arr(audit.shortcuts).length) {
    sec.append(el('h4', null, 'Shortcut audit'));
    const shares = (m) => Object.entries(obj(m)).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
    safely(sec, () => table('What the model calls images without its positive disease (share of each class)', ['Set', 'n', 'By arg-max', 'At the operating point'],
      arr(audit.shortcuts).map(obj).map((c) => [str(c.set), int(c.n), shares(c.by_argmax), shares(c.at_operating_point)])));
  }
  if (arr(audit.attention).length) {
    sec.append(el('h4', null, 'Where the heatmaps look'));
    safely(sec, () => table('Share of Grad-CAM maps of the positive class whose hottest cell lies mostly on the lungs, next to the share of cells that do (what a map peaking at random would score)', ['Set', 'Class', 'Stage', 'Maps', 'Peak on the lungs', 'Lung cells (chance)', 'No lung mask'],
      arr(audit.attention).map(obj).map((c) => [str(c.set), str(c.class), int(c.layer), int(c.n), fmt(c.peak_in_lungs), fmt(c.lung_cells), int(c.without_mask)])));
  }
  if (arr(audit.invariance).length) {
    sec.append(el('h4', null, 'Invariance check'));
    sec.append(el('p', 'mc-muted', `Each image classified as the file and again ${str(obj(arr(audit.invariance)[0]).transform)}.`));
    safely(sec, () => table('Agreement between the two pipelines', ['Set', 'n', 'Arg-max agreement', 'Decision agreement', 'Median |ΔP|', '90th percentile |ΔP|'],
      arr(audit.invariance).map(obj).map((c) => [str(c.set), int(c.n), fmt(c.argmax_agreement), fmt(c.decision_agreement), fmt(c.median_abs_delta_p), fmt(c.p90_abs_delta_p)])));
  }

  const cfg = obj(tr.config);
  const d = sec.appendChild(el('details', 'mc-training'));
  d.append(el('summary', null, 'Training configuration'));
  safely(d, () => kvTable('Training configuration', {
    epochs: cfg.epochs, batch: cfg.batch, 'learning rate': cfg.lr, 'weight decay': cfg.weight_decay,
    'input size': cfg.input_size, framing: cfg.framing, 'grey levels': cfg.tone, sampling: cfg.sampling, 'data plan': cfg.data,
    'class-weighted loss': cfg.class_weighted_loss, augmentation: cfg.augment,
    'shipped model': tr.shipped_model, minutes: tr.minutes, machine: tr.machine,
  }));
  footer(sec, entry, disclaimer);
  return sec;
}

function renderGate(entry, disclaimer) {
  const sec = el('section', 'mc-model mc-gate');
  const ev = obj(entry.evaluation), tr = obj(entry.training);
  sec.append(heading(3, str(entry.title || 'Input gate'), sec));
  if (entry.definition) sec.append(el('p', 'mc-definition', `What it decides: ${str(entry.definition)}`));
  safely(sec, () => facts(entry));
  const acc = Object.entries(obj(ev.acceptance));
  sec.append(el('h4', null, 'Acceptance of external medical images'));
  safely(sec, () => (acc.length ? table('Images accepted and routed to the right model, per external set',
    ['Set', 'n', 'Accepted', 'Accepted rate', 'Routed correctly', 'Routed rate'],
    acc.map(([name, a]) => { const q = obj(a); return [name, int(q.n), int(q.accepted), fmt(q.accepted_rate), int(q.routed_correctly), fmt(q.routed_rate)]; }))
    : el('p', 'mc-muted', DASH)));
  const nat = obj(ev.natural_photos);
  sec.append(el('h4', null, 'Refusal of natural photographs'));
  sec.append(el('p', null, `Refused ${int(nat.refused)} of ${int(nat.n)} photographs (rate ${fmt(nat.refused_rate)}); `
    + `by the network alone, with colour removed: rate ${fmt(nat.refused_by_network_alone_rate)}.`));
  const files = arr(nat.files).map(obj);
  if (files.length) {
    safely(sec, () => table('Natural photographs tried', ['File', 'Refused', 'Reason'],
      files.map((f) => [str(f.file).split('/').pop(), { text: auto(f.refused), cls: 'mc-text' }, { text: str(f.reason), cls: 'mc-text' }])));
  }
  sec.append(el('p', 'mc-muted', `Feature-distance limit: ${fmt(ev.limit)}. Trained on: ${str(tr.trained_on)}. Validation: ${str(tr.validation)}.`));
  safely(sec, () => sourcesTable('Gate training images per source', [['training pool', tr.pool_sources]], arr(entry.classes)));
  footer(sec, entry, disclaimer);
  return sec;
}

function renderLimitations(models, disclaimer) {
  const sec = el('section', 'mc-limitations');
  sec.append(heading(3, 'Limitations', sec));
  const notes = models.flatMap((m) => arr(obj(m).notes)).filter((n) => typeof n === 'string' && n.trim() && n !== disclaimer);
  sec.append(list([...new Set([...FIXED_LIMITATIONS, ...notes])]));
  return sec;
}

/**
 * Scrollable tables are regions named by their caption; the same caption under two models
 * would give two landmarks one name. Each name gets its model's heading in front, and a
 * name still repeated gets a number.
 */
function uniqueRegionNames(root) {
  const seen = new Map();
  for (const r of root.querySelectorAll('[role="region"]')) {
    const sec = r.closest('[aria-labelledby]');
    const h = sec && sec !== r ? root.querySelector(`#${sec.getAttribute('aria-labelledby')}`) : null;
    let name = r.getAttribute('aria-label') || 'table';
    if (h && !name.startsWith(h.textContent)) name = `${h.textContent}: ${name}`;
    const k = (seen.get(name) || 0) + 1;
    seen.set(name, k);
    r.setAttribute('aria-label', k > 1 ? `${name} (${k})` : name);
  }
}

/**
 * Draw the model card for `manifest` into `container`, replacing its children.
 * Safe on partial or missing manifests; returns the root element (or null
 * when `container` is not an element).
 */
export function renderModelCard(container, manifest) {
  if (!container || typeof container.replaceChildren !== 'function') return null;
  const m = obj(manifest);
  const models = arr(m.models).filter(isObj);
  const disclaimer = typeof m.disclaimer === 'string' && m.disclaimer.trim() ? m.disclaimer : DEFAULT_DISCLAIMER;
  const root = el('div', 'mc-card');

  const box = root.appendChild(el('div', 'mc-disclaimer'));
  box.setAttribute('role', 'note');
  box.append(el('p', 'mc-disclaimer-title', 'Not for clinical use'), el('p', null, disclaimer));

  const gates = models.filter((e) => e.id === 'gate' || isObj(e.gate));
  const classifiers = models.filter((e) => !gates.includes(e));
  if (!models.length) root.append(el('p', 'mc-muted', 'No model information in the manifest.'));
  for (const e of classifiers) safely(root, () => renderClassifier(e, disclaimer));
  for (const e of gates) safely(root, () => renderGate(e, disclaimer));
  safely(root, () => renderLimitations(models, disclaimer));

  if (num(m.format_version) !== null) root.append(el('p', 'mc-muted mc-version', `Manifest format ${m.format_version}.`));
  uniqueRegionNames(root);
  container.replaceChildren(root);
  return root;
}
