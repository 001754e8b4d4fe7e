// main.js — one job: wire the page together (the module index.html loads). It starts the
// worker and the engine on the chosen backend, hands the engine's manifest and constants to the
// modules that need them, draws the model card once, keeps the header (download progress,
// request count) current, registers the service worker, and connects input, viewer and batch.
// The modules own their state; this file only starts them and passes messages between them.
import { record } from './hooks.js'; // first: defines globalThis.ctxrHooks before anything happens
import { call, startWorker, workerRequests } from './rpc.js';
import { engineName, setStatus } from './status.js';
import { clearQueue, configureInput, pump, reopen, setupInput } from './input.js';
import { configureViewer, setupViewer } from './viewer.js';
import { configureBatch, setupBatch } from './batch.js';
import { renderModelCard } from './card.js';

const $ = (id) => document.getElementById(id);
const engine = {
  backend: 'auto', // what the user asked for: 'auto' or one of the engine's backends
  generation: 0, // the newest start; replies to older ones are ignored
  cardDrawn: false,
  ready: false, // the first start finished (later downloads are on-demand models)
};

async function initEngine() {
  const generation = ++engine.generation;
  setStatus('loading', { engine: 'starting…' });
  try {
    const r = await call('init', { backend: engine.backend });
    if (generation !== engine.generation) return;
    const constants = r.constants;
    configureInput({ constants });
    configureViewer({ manifest: r.manifest, constants });
    configureBatch({ manifest: r.manifest });
    const times = Object.entries(r.times || {}).map(([k, v]) => `${engineName(k)} ${v.toFixed(1)} ms`).join(', ');
    $('version').textContent = r.version;
    $('load').hidden = true;
    engine.ready = true;
    if (!engine.cardDrawn) {
      renderModelCard($('card-body'), r.manifest);
      engine.cardDrawn = true;
    }
    record({ backend: r.backend, startupMs: Math.round(r.startup_ms), constants });
    setStatus('ready', { engine: engineName(r.backend, true), how: `(${r.how}${times ? `: ${times}` : ''})` });
    pump();
  } catch (e) {
    if (generation !== engine.generation) return;
    setStatus('error', { engine: 'failed', how: e.message || String(e) });
  }
}

// The gate comes with the engine; a CT or X-ray model is fetched when the first image that
// needs it arrives, and the bar shows again for that download.
const MODEL_WORDS = { gate: 'the input gate', ct: 'the CT model (first CT image)', cxr: 'the X-ray model (first X-ray)' };

function showProgress(got, total, model) {
  $('load-label').textContent = `Downloading ${MODEL_WORDS[model] || 'the models'}`;
  if (engine.ready) $('load').hidden = got >= total;
  $('load-bar').max = total || 1;
  $('load-bar').value = got;
  $('load-text').textContent = `${(got / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
}

function updateRequests() {
  const page = performance.getEntriesByType('navigation').length + performance.getEntriesByType('resource').length;
  $('requests').textContent = String(page + workerRequests());
}

if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  navigator.serviceWorker.register('sw.js').catch(() => {});
  navigator.serviceWorker.ready.then(() => record({ sw: 'ready' }));
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
setupViewer();
setupBatch({ onOpen: reopen, onClear: clearQueue });
startWorker({ onProgress: showProgress, onRequests: updateRequests, onRestart: initEngine });
initEngine();
setInterval(updateRequests, 1000);
