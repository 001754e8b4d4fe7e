// study.js — one job: the CT study view. A NIfTI volume or a DICOM series opens here as one
// study: the engine stacks it (its volume stays in the worker, stored once as i16), shows the
// axial slices with coronal and sagittal reformats for orientation, scores the study with the
// CT model on its lung-level slices, and this module draws P(COVID-19) along the scan as a
// strip plot (click to jump), lists the top slices, and asks for a Grad-CAM of the shown slice
// only when the user wants one. Scrolling works with the wheel, the arrow keys, the slider
// and a drag (touch); the window/level menu changes what is shown, never what the model reads.
import { call, onStudyProgress } from './rpc.js';
import { bump, record } from './hooks.js';
import { drawGrey, pct } from './viewer.js';

const $ = (id) => document.getElementById(id);
const study = {
  presets: [], // the engine's CT windows
  positive: 'covid', // the CT model's positive class (its manifest operating point)
  studies: [], // the engine's open studies: {name, series, volume, value_range}
  scores: [], // per study: its StudyScore (with `ms`) once scored
  index: 0, // the study shown
  k: 0, // the axial slice shown
  generation: 0, // bumped on every open: replies about older studies are dropped
  drawing: false, // an axial view is on its way
  again: false, // the slice changed while it was
  reformats: { coronal: null, sagittal: null }, // {canvas, count} of the study shown
  heat: null, // {k, canvas, text}: the Grad-CAM of slice k
  rows: [], // the batch rows of the open studies
  onScored: () => {}, // a study's score for its batch row (set by setupStudy)
};

export function configureStudy({ manifest, constants }) {
  study.presets = constants.window_presets;
  const ct = (manifest.models || []).find((m) => m.id === 'ct');
  study.positive = ct?.operating_point?.positive_class ?? ct?.classes?.[1] ?? 'covid';
  const sel = $('study-window');
  const keep = sel.value;
  sel.replaceChildren(new Option('model default', 'auto'),
    ...study.presets.map((p) => new Option(`${p.label} (W ${p.width} / L ${p.center})`, p.id)));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

function windowChoice() {
  const p = study.presets.find((x) => x.id === $('study-window').value);
  return p ? { kind: 'custom', center: p.center, width: p.width } : { kind: 'auto' };
}

const shown = () => study.studies[study.index];
const score = () => study.scores[study.index];

/** Hide the study view (a single image is shown instead, or the batch was cleared). */
export function hideStudy() {
  $('study').hidden = true;
}

export function clearStudy() {
  study.generation++;
  study.studies = [];
  study.scores = [];
  study.rows = [];
  hideStudy();
  record({ study: null });
}

function progress(stage, done, total) {
  const bar = $('study-bar');
  bar.max = Math.max(1, total);
  bar.value = done;
  const words = {
    reading: `Reading the folder: ${done} of ${total} files`,
    measuring: `Finding the lung-level slices: ${done} of ${total} measured`,
    classifying: `Scoring: ${done} of ${total} lung-level slices classified`,
  }[stage];
  $('study-progress').textContent = total && words ? words : '';
  bar.hidden = !(total && words);
}

/**
 * Show the studies the engine opened (`opened.studies`, with their batch `rows`), then score
 * each in turn. Resolves once every study is scored (or failed).
 */
export async function presentStudies(opened, rows) {
  const generation = ++study.generation;
  study.studies = opened.studies;
  study.scores = opened.studies.map(() => null);
  study.rows = rows;
  study.index = 0;
  $('result').hidden = true;
  $('study').hidden = false;
  const sel = $('study-select');
  sel.replaceChildren(...opened.studies.map((s, i) => new Option(seriesWords(s), String(i))));
  $('study-series').hidden = opened.studies.length < 2;
  const aside = opened.set_aside || [];
  $('study-aside').textContent = aside.length ? `${aside.length} file${aside.length === 1 ? '' : 's'} set aside: ${aside.slice(0, 5).map((a) => `${a.file} (${a.reason})`).join('; ')}${aside.length > 5 ? '; …' : ''}` : '';
  await openShown(generation);
  for (let i = 0; i < study.studies.length; i++) {
    if (generation !== study.generation) return;
    progress('measuring', 0, 0);
    try {
      const s = await call('score_study', { index: i });
      if (generation !== study.generation) return;
      study.scores[i] = s;
      study.onScored(study.rows[i], s, null);
      bump('studies');
    } catch (e) {
      if (generation !== study.generation) return;
      study.scores[i] = { error: e };
      study.onScored(study.rows[i], null, e);
      bump('studies');
    }
    if (i === study.index) showScore();
  }
  progress('finished', 0, 0);
}

/** Show one of the open studies (its row was clicked) without scoring it again. */
export async function showOpenStudy(row) {
  const i = study.rows.indexOf(row);
  if (i < 0) return false;
  $('result').hidden = true;
  $('study').hidden = false;
  study.index = i;
  $('study-select').value = String(i);
  await openShown(study.generation);
  return true;
}

function seriesWords(s) {
  const v = s.volume;
  const f = s.series;
  const desc = f?.description ? `“${f.description}”, ` : '';
  const thick = f?.slice_thickness_mm ? `, ${f.slice_thickness_mm} mm thick` : '';
  return `${s.name}: ${desc}${v.slices} slices of ${v.columns}×${v.rows}${thick}`;
}

// The study shown: its facts, problems, reformats and middle slice.
async function openShown(generation) {
  const s = shown();
  const v = s.volume;
  $('study-name').textContent = s.name;
  $('study-facts').textContent = `${seriesWords(s)}; voxels ${v.spacing_mm.map((x) => x.toFixed(2)).join(' × ')} mm; ${v.source}`
    + `${v.placement === 'stored_order' ? '. The file says nothing about orientation: shown in stored order, which may be mirrored or not axial' : ''}`
    + `${v.intensity === 'hounsfield' ? '' : '. Its values do not look like Hounsfield units, so the lung window cannot be trusted on it'}.`;
  const problems = $('study-problems');
  problems.replaceChildren(...(s.series?.problems || []).map((p) => {
    const li = document.createElement('li');
    li.textContent = problemWords(p);
    return li;
  }));
  const slider = $('study-slice');
  slider.max = String(Math.max(0, v.slices - 1));
  const sc = score();
  study.k = sc && !sc.error && sc.lung_range ? Math.round((sc.lung_range[0] + sc.lung_range[1]) / 2) : Math.floor(v.slices / 2);
  study.heat = null;
  $('study-explain-text').textContent = '';
  showScore();
  await drawReformats(generation);
  await drawAxial();
}

function problemWords(p) {
  switch (p.kind) {
    case 'missing_slices': return `Missing slices: a gap of ${p.gap_mm.toFixed(1)} mm after slice ${p.after + 1}, where about ${p.missing} slice${p.missing === 1 ? '' : 's'} should be.`;
    case 'irregular_spacing': return `Irregular spacing: ${p.min_mm.toFixed(2)}–${p.max_mm.toFixed(2)} mm between slices (median ${p.median_mm.toFixed(2)} mm).`;
    case 'gantry_tilt': return `Gantry tilt of ${p.degrees.toFixed(1)}°: the slices are not stacked along their normal, so the reformats are sheared.`;
    case 'duplicate_position': return `Two files at the same position: ${p.kept} kept, ${p.dropped} left out.`;
    case 'no_positions': return 'The files carry no positions: ordered by instance number, spacing unknown.';
    default: return `Irregular series (${p.kind}).`;
  }
}

// Draw a grey view on a canvas in true physical proportion (a reformat's pixels are rarely square).
function drawView(canvas, v) {
  drawGrey(canvas, v.display, v.display_width, v.display_height);
  canvas.style.aspectRatio = `${v.width_mm} / ${v.height_mm}`;
}

async function drawReformats(generation) {
  const v = shown().volume;
  for (const [plane, at] of [['coronal', Math.floor(v.rows / 2)], ['sagittal', Math.floor(v.columns / 2)]]) {
    try {
      const view = await call('view_volume', { index: study.index, plane, k: at, window: windowChoice() });
      if (generation !== study.generation) return;
      const c = document.createElement('canvas');
      drawView(c, view);
      study.reformats[plane] = { canvas: c, view };
    } catch (e) {
      study.reformats[plane] = null;
    }
  }
  markReformats();
}

// The reformats with a line where the shown axial slice lies.
function markReformats() {
  const n = shown()?.volume.slices || 1;
  for (const plane of ['coronal', 'sagittal']) {
    const out = $(`study-${plane}`);
    const r = study.reformats[plane];
    if (!r) continue;
    out.width = r.canvas.width;
    out.height = r.canvas.height;
    out.style.aspectRatio = r.canvas.style.aspectRatio;
    const ctx = out.getContext('2d');
    ctx.drawImage(r.canvas, 0, 0);
    const y = ((study.k + 0.5) / n) * out.height;
    ctx.strokeStyle = '#ffb000';
    ctx.lineWidth = Math.max(1, out.height / 200);
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(out.width, y);
    ctx.stroke();
  }
}

/** Go to axial slice `k` (clamped). */
function goTo(k) {
  const v = shown()?.volume;
  if (!v) return;
  const next = Math.max(0, Math.min(v.slices - 1, Math.round(k)));
  if (next === study.k) return;
  study.k = next;
  drawAxial();
}

// One view request at a time; a scroll during it asks once more for the newest slice.
async function drawAxial() {
  if (study.drawing) { study.again = true; return; }
  study.drawing = true;
  const generation = study.generation;
  try {
    do {
      study.again = false;
      const k = study.k;
      const v = await call('view_volume', { index: study.index, plane: 'axial', k, window: windowChoice() });
      if (generation !== study.generation) return;
      if (study.again && study.k !== k) continue;
      const c = $('study-axial');
      drawView(c, v);
      if (study.heat && study.heat.k === k) {
        const ctx = c.getContext('2d');
        ctx.globalAlpha = 0.45;
        ctx.drawImage(study.heat.canvas, 0, 0, c.width, c.height);
        ctx.globalAlpha = 1;
      }
      sliceText(v);
      bump('studyViews');
    } while (study.again);
  } catch (e) {
    $('study-slice-text').textContent = `Could not show slice ${study.k + 1}: ${e.message || e}`;
  } finally {
    study.drawing = false;
  }
  $('study-slice').value = String(study.k);
  markReformats();
  drawStrip();
  if (study.heat && study.heat.k !== study.k) $('study-explain-text').textContent = '';
  recordShown();
}

function sliceText(v) {
  const s = shown();
  const slice = score()?.slices?.[study.k];
  const z = s.volume.slice_z_mm[study.k];
  const words = [`Slice ${study.k + 1} of ${v.count}`];
  if (Number.isFinite(z)) words.push(`z = ${z.toFixed(1)} mm`);
  if (slice) {
    words.push(slice.lung_level ? `lung-level (${pct(slice.lung_fraction)} lung)` : `not lung-level (${pct(slice.lung_fraction)} lung): not classified`);
    if (slice.p_covid !== null) words.push(`P(${study.positive}) ${slice.p_covid.toFixed(3)}`);
  }
  words.push(`window W ${Math.round(v.window.width)} / L ${Math.round(v.window.center)}`);
  $('study-slice-text').textContent = words.join(' · ');
}

function showScore() {
  const sc = score();
  const box = $('study-score');
  if (!sc) {
    box.hidden = true;
    $('study-top').replaceChildren();
    drawStrip();
    return;
  }
  box.hidden = false;
  if (sc.error) {
    $('study-score-text').textContent = `Could not score this study: ${sc.error.message || sc.error}`;
    $('study-score-rule').textContent = '';
    return;
  }
  const n = shown().volume.slices;
  if (sc.study_score === null) {
    $('study-score-text').textContent = 'No slice is lung-level: the study was not scored.';
    $('study-score-rule').textContent = 'The CT model reads axial slices through the lungs; this volume has none it recognises (is it a chest CT in Hounsfield units?).';
  } else {
    $('study-score-text').textContent = `Study score ${sc.study_score.toFixed(3)}: the highest P(${study.positive}) over ${sc.classified} lung-level slices`;
    const range = sc.lung_range ? `slices ${sc.lung_range[0] + 1}–${sc.lung_range[1] + 1} of ${n}` : '';
    const speed = sc.ms > 0 ? ` Scored in ${(sc.ms / 1000).toFixed(1)} s (${(sc.classified / (sc.ms / 1000)).toFixed(1)} slices/s).` : '';
    $('study-score-rule').textContent = `Lung-level: ${range} (at least a quarter of the largest lung area). Mean of the top ${sc.k}: ${sc.top_k_mean.toFixed(3)}. `
      + `Max over slices is how DeCoVNet pools a scan; the slice model was never validated on whole studies, so this is a research summary, not a diagnosis.${speed}`;
  }
  const top = sc.slices.filter((s) => s.p_covid !== null).sort((a, b) => b.p_covid - a.p_covid).slice(0, 5);
  $('study-top').replaceChildren(...top.map((s) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'link';
    b.textContent = `slice ${s.index + 1}: P(${study.positive}) ${s.p_covid.toFixed(3)}`;
    b.addEventListener('click', () => goTo(s.index));
    li.append(b);
    return li;
  }));
  drawStrip();
  recordShown();
}

// P(positive) of every classified slice along the scan (superior left), the lung-level band
// shaded, the shown slice marked.
function drawStrip() {
  const c = $('study-strip');
  const s = shown();
  if (!s) return;
  const n = s.volume.slices;
  const w = Math.max(200, Math.round(c.clientWidth || 800));
  const h = c.height;
  c.width = w;
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, w, h);
  const x = (k) => ((k + 0.5) / n) * w;
  const top = 8;
  const bottom = h - 16;
  const y = (p) => bottom - p * (bottom - top);
  const sc = score();
  const slices = sc && !sc.error ? sc.slices : [];
  ctx.fillStyle = '#e8f0fb';
  for (const sl of slices) if (sl.lung_level) ctx.fillRect(x(sl.index) - w / n / 2, top, Math.max(1, w / n), bottom - top);
  ctx.strokeStyle = '#bbbbbb';
  ctx.lineWidth = 1;
  for (const p of [0, 0.5, 1]) { ctx.beginPath(); ctx.moveTo(0, y(p)); ctx.lineTo(w, y(p)); ctx.stroke(); }
  ctx.fillStyle = '#555555';
  ctx.font = '11px sans-serif';
  ctx.fillText(`P(${study.positive}) 1`, 4, top + 10);
  ctx.fillText('0', 4, bottom - 2);
  ctx.fillText('superior', 4, h - 3);
  ctx.fillText('inferior', w - 48, h - 3);
  const points = slices.filter((sl) => sl.p_covid !== null);
  ctx.strokeStyle = '#1f5fa8';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((sl, i) => (i ? ctx.lineTo(x(sl.index), y(sl.p_covid)) : ctx.moveTo(x(sl.index), y(sl.p_covid))));
  ctx.stroke();
  ctx.fillStyle = '#1f5fa8';
  for (const sl of points) ctx.fillRect(x(sl.index) - 1.5, y(sl.p_covid) - 1.5, 3, 3);
  ctx.strokeStyle = '#d35400';
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x(study.k), top);
  ctx.lineTo(x(study.k), bottom);
  ctx.stroke();
  c.dataset.points = String(points.length);
  $('study-strip-caption').textContent = points.length
    ? `P(${study.positive}) of the ${points.length} classified slices along the scan (shaded: lung-level; orange: the slice shown). Click to go to a slice.`
    : 'P(COVID-19) along the scan appears here once the study is scored.';
}

function recordShown() {
  const s = shown();
  const sc = score();
  record({
    study: s && {
      name: s.name,
      slices: s.volume.slices,
      k: study.k,
      score: sc && !sc.error ? sc.study_score : null,
      topKMean: sc && !sc.error ? sc.top_k_mean : null,
      classified: sc && !sc.error ? sc.classified : null,
      lungRange: sc && !sc.error ? sc.lung_range : null,
      ms: sc && !sc.error ? sc.ms : null,
      stripPoints: Number($('study-strip').dataset.points || 0),
      heatOf: study.heat ? study.heat.k : null,
    },
  });
}

// Grad-CAM of the shown slice, on demand: the slice is read alone by the CT model (its own
// result, which is the slice's value in the strip), then explained for the positive class at
// the deepest layer.
async function explainSlice() {
  const s = shown();
  if (!s) return;
  const k = study.k;
  const generation = study.generation;
  $('study-explain-text').textContent = `Grad-CAM of slice ${k + 1}…`;
  try {
    const r = await call('analyze_slice', { index: study.index, k });
    const cls = Math.max(0, r.prediction.classes.indexOf(study.positive));
    const h = await call('explain', { cls, layer: r.layers.length, colormap: 'viridis' });
    if (generation !== study.generation) return;
    const heat = document.createElement('canvas');
    heat.width = h.width;
    heat.height = h.height;
    heat.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(h.rgba.buffer), h.width, h.height), 0, 0);
    study.heat = { k, canvas: heat };
    $('study-explain-text').textContent = `Slice ${k + 1} read alone: P(${study.positive}) ${r.prediction.probabilities[cls].toFixed(3)}. Grad-CAM for “${h.class_name}” at the deepest layer (${h.map_width}×${h.map_height} grid; viridis, warm = more evidence${h.peak > 0 ? '' : '; no positive evidence here'}). It shows where the model looked, not an outline of a lesion.`;
    bump('heatmaps');
    if (study.k === k) { study.again = false; await drawAxial(); }
  } catch (e) {
    $('study-explain-text').textContent = `Grad-CAM failed: ${e.message || e}`;
  }
}

function sliceAt(ev, canvas) {
  const r = canvas.getBoundingClientRect();
  return ((ev.clientY - r.top) / r.height) * (shown()?.volume.slices || 1) - 0.5;
}

/** `onScored(row, score, error)`: a study finished scoring (its batch row is updated). */
export function setupStudy({ onScored }) {
  study.onScored = onScored;
  onStudyProgress((m) => progress(m.stage, m.done, m.total));
  const axial = $('study-axial');
  axial.addEventListener('wheel', (e) => { e.preventDefault(); goTo(study.k + Math.sign(e.deltaY)); }, { passive: false });
  axial.addEventListener('keydown', (e) => {
    const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 }[e.key];
    if (step) { e.preventDefault(); goTo(study.k + step); }
    if (e.key === 'Home') { e.preventDefault(); goTo(0); }
    if (e.key === 'End') { e.preventDefault(); goTo(Infinity); }
  });
  // A drag (a finger on a touch screen, or the mouse) scrolls one slice per 8 pixels.
  let drag = null;
  axial.addEventListener('pointerdown', (e) => { drag = { y: e.clientY, k: study.k }; axial.setPointerCapture(e.pointerId); });
  axial.addEventListener('pointermove', (e) => { if (drag) goTo(drag.k + Math.trunc((e.clientY - drag.y) / 8)); });
  const end = () => { drag = null; };
  axial.addEventListener('pointerup', end);
  axial.addEventListener('pointercancel', end);
  $('study-slice').addEventListener('input', (e) => goTo(Number(e.target.value)));
  $('study-strip').addEventListener('click', (e) => {
    const r = e.currentTarget.getBoundingClientRect();
    goTo(((e.clientX - r.left) / r.width) * (shown()?.volume.slices || 1) - 0.5);
  });
  for (const plane of ['coronal', 'sagittal']) $(`study-${plane}`).addEventListener('click', (e) => goTo(sliceAt(e, e.currentTarget)));
  $('study-window').addEventListener('change', async () => {
    if (!shown()) return;
    await drawReformats(study.generation);
    await drawAxial();
  });
  $('study-select').addEventListener('change', (e) => {
    study.index = Number(e.target.value);
    openShown(study.generation);
  });
  $('study-explain').addEventListener('click', explainSlice);
}
