// main.js — one job: wire the page together (the module index.html loads). It starts the
// worker and the engine on the chosen backend, hands the engine's manifest and constants to the
// modules that need them, draws the model card once, keeps the header (download progress,
// request count) current, registers the service worker, and connects input, viewer and batch.
// The modules own their state; this file only starts them and passes messages between them.
import { record } from './hooks.js'; // first: defines globalThis.ctxrHooks before anything happens
import { call, startWorker, workerRequests } from './rpc.js';
import { engineName, setStatus } from './status.js';
import { clearQueue, configureInput, openFileAs, pump, readAs, reopen, rerun, setupInput } from './input.js';
import { clearViewer, configureViewer, setupViewer, shownRow } from './viewer.js';
import { configureBatch, recordStudy, setupBatch, updateRow } from './batch.js';
import { clearStudy, configureStudy, setupStudy } from './study.js';
import { renderModelCard } from './card.js';
import { reinstallAdapted, setupLabelled } from './labelled.js';

const $ = (id) => document.getElementById(id);
const engine = {
  backend: 'auto', // what the user asked for: 'auto' or one of the engine's backends
  generation: 0, // the newest start; replies to older ones are ignored
  cardDrawn: false,
  ready: false, // the first start finished (later downloads are on-demand models)
  manifest: null, // the shipped manifest (with its models' details once the card has been seen)
  adapted: null, // the adapted entry in use, which the card shows in place of its base's
};

async function initEngine() {
  const generation = ++engine.generation;
  setStatus('loading', { engine: 'starting…' });
  try {
    const r = await call('init', { backend: engine.backend });
    if (generation !== engine.generation) return;
    const constants = r.constants;
    configureInput({ constants });
    configureViewer({ manifest: r.manifest, constants, version: r.version });
    configureBatch({ manifest: r.manifest });
    configureStudy({ manifest: r.manifest, constants });
    const times = Object.entries(r.times || {}).map(([k, v]) => `${engineName(k)} ${v.toFixed(1)} ms`).join(', ');
    $('version').textContent = r.version;
    $('load').hidden = true;
    engine.ready = true;
    if (!engine.cardDrawn) {
      engine.manifest = r.manifest;
      drawCard();
      loadCardDetailsWhenSeen();
      engine.cardDrawn = true;
    }
    // An adapted model in use before this start is the one in use after it.
    await reinstallAdapted();
    if (generation !== engine.generation) return;
    record({ backend: r.backend, build: r.build, threads: r.threads, startupMs: Math.round(r.startup_ms), constants });
    keepOffline(r.build_files);
    setStatus('ready', { engine: engineName(r.backend, true, r.threads.count), how: `(${r.how}${times ? `: ${times}` : ''})` });
    // Why WebGPU could not start, and why the CPU runs one thread, for the curious (hover),
    // not for the sentence.
    const oneThread = r.backend === 'cpu' && r.threads.why ? `One thread: ${r.threads.why}.` : '';
    $('backend-how').title = [r.detail, oneThread].filter(Boolean).join('\n');
    $('backend').title = oneThread;
    pump();
  } catch (e) {
    if (generation !== engine.generation) return;
    setStatus('error', { engine: 'failed', how: e.message || String(e) });
  }
}

// Start-up in stages: the engine's download (with its bytes; the manifest and the input gate
// arrive meanwhile), its compilation, then the backend timing. A CT or X-ray model is fetched
// when the first image that needs it arrives, and the bar shows again for that download.
const STAGE_WORDS = {
  engine: 'Downloading the engine (WebAssembly)',
  compile: 'Compiling the engine',
  backend: 'Starting the backend and timing it',
  ct: 'Downloading the CT model (first CT image)',
  cxr: 'Downloading the X-ray model (first X-ray)',
};

function showProgress(got, total, stage) {
  $('load-label').textContent = STAGE_WORDS[stage] || 'Downloading the models';
  if (engine.ready) $('load').hidden = total > 0 && got >= total;
  const bar = $('load-bar');
  if (total > 0) {
    bar.max = total;
    bar.value = got;
    $('load-text').textContent = `${(got / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
  } else {
    bar.removeAttribute('value'); // indeterminate while compiling or timing
    $('load-text').textContent = '';
  }
}

// Written only when the count changes (the number is not a live region).
function updateRequests() {
  const page = performance.getEntriesByType('navigation').length + performance.getEntriesByType('resource').length;
  const text = String(page + workerRequests());
  if ($('requests').textContent !== text) $('requests').textContent = text;
}

// Reading every file with one model is loud: a banner says so and what still applies.
const OVERRIDE_WORDS = { ct: 'a chest CT slice', cxr: 'a chest X-ray' };
function showOverride() {
  const m = $('model').value;
  $('override').hidden = m === 'auto';
  $('override').textContent = m === 'auto' ? ''
    : `Every file is now read as ${OVERRIDE_WORDS[m]}: the input gate's network is off, so nothing checks that a file is one (colour pictures and non-chest DICOM files are still refused). Choose "detected per file" to turn the gate back on.`;
}

const usesServiceWorker = 'serviceWorker' in navigator && location.protocol !== 'file:';
if (usesServiceWorker) {
  navigator.serviceWorker.register('sw.js').catch(() => {});
  navigator.serviceWorker.ready.then(() => record({ sw: 'ready' }));
}

// The model card follows the model in use: an adapted entry replaces its base's.
function drawCard() {
  if (!engine.manifest) return;
  const a = engine.adapted;
  const models = a ? [...engine.manifest.models.filter((m) => m.id !== a.id), a] : engine.manifest.models;
  renderModelCard($('card-body'), { ...engine.manifest, models });
}

// The bulk of the card's numbers (every set's metrics, ROC curves, cross-validation) is not in
// the manifest the page starts with but in each model's details file (`details`): fetched the
// first time the card comes into view, then put where the manifest keeps them in the CLI's
// whole entries (`evaluation.sets`, `training.cross_validation`; the same as Rust's
// `ModelEntry::attach`), and the card drawn again.
function loadCardDetailsWhenSeen() {
  const whole = async (m) => {
    if (!m.details) return m;
    const res = await fetch(`weights/${m.details}`);
    if (!res.ok) throw new Error(`could not download ${m.details} (HTTP ${res.status})`);
    const d = await res.json();
    return {
      ...m,
      evaluation: m.evaluation && d.sets ? { ...m.evaluation, sets: d.sets } : m.evaluation,
      training: m.training && d.cross_validation ? { ...m.training, cross_validation: d.cross_validation } : m.training,
    };
  };
  const load = async () => {
    try {
      engine.manifest = { ...engine.manifest, models: await Promise.all(engine.manifest.models.map(whole)) };
      drawCard();
      record({ cardDetails: 'loaded' });
    } catch (e) {
      record({ cardDetails: `failed: ${e.message}` });
    }
  };
  const seen = new IntersectionObserver((entries) => {
    if (!entries.some((e) => e.isIntersecting)) return;
    seen.disconnect();
    load();
  });
  seen.observe($('card'));
}

// The service worker keeps the engine build this browser runs, and only that one, for starts
// without the network (sw.js).
function keepOffline(paths) {
  if (!usesServiceWorker || !paths) return;
  navigator.serviceWorker.ready.then((reg) => reg.active?.postMessage({ keep: paths })).catch(() => {});
}
// ?backend=webgpu|cpu|auto chooses the engine (the same as the menu, whose options are the valid values).
const select = $('backend-select');
const wanted = new URLSearchParams(location.search).get('backend');
if ([...select.options].some((o) => o.value === wanted)) {
  engine.backend = wanted;
  select.value = wanted;
}
select.addEventListener('change', (e) => {
  engine.backend = e.target.value;
  startWorker();
  initEngine();
});
setupInput();
setupLabelled({
  onOpen: openFileAs,
  onModelChange: (entry) => {
    engine.adapted = entry.adapted ? entry : null; // a shipped entry: the manifest's, details and all
    drawCard();
  },
});
setupViewer({ onReadAs: readAs, onTrial: updateRow });
setupStudy({ onScored: recordStudy });
setupBatch({
  onOpen: reopen,
  onClear: (n) => {
    clearQueue();
    clearViewer();
    clearStudy();
    $('cleared').textContent = `Cleared: ${n} file${n === 1 ? '' : 's'} and ${n === 1 ? 'its result' : 'their results'} removed from this page.`;
  },
});
// A new choice for every file applies to the file on screen at once (a repeated choice is none).
let modelChoice = $('model').value;
$('model').addEventListener('change', () => {
  if ($('model').value === modelChoice) return;
  modelChoice = $('model').value;
  showOverride();
  const row = shownRow();
  if (row) { row.readAs = undefined; rerun(row); }
});
showOverride();
startWorker({ onProgress: showProgress, onRequests: updateRequests, onRestart: initEngine });
initEngine();
setInterval(updateRequests, 1000);
