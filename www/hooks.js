// hooks.js — one job: the single object the browser tests (and the curious, from the console)
// read to know what the page has done: its state, the engine's backend, how many results and
// heatmaps it has shown, how many batch files are done. Modules report here through `record`
// and `bump` instead of writing counters into the DOM, so the tests synchronise on one
// documented object. `globalThis.ctxrHooks` is a read-only view of it; its `call` sends a
// request to the worker (`ctxrHooks.call('memory')`, `ctxrHooks.call('time', {runs: 20})`).
import { call } from './rpc.js';

const hooks = {
  state: 'loading', // the page: 'loading' | 'ready' | 'busy' | 'error' (owned by status.js)
  backend: null, // the engine's backend once started: 'webgpu' | 'cpu'
  build: null, // the engine build loaded: 'cpu' (CPU only, the smaller) | 'threads' (the CPU build on several threads) | 'full' (WebGPU and CPU)
  threads: null, // threads the CPU path runs on, and why only one: {count, why}
  startupMs: null, // engine start-up (download, compile, backend choice), ms
  constants: null, // the engine's page_constants() (file-size limit, window presets, colour maps)
  results: 0, // results and errors shown in the result panel
  firstResultMs: null, // page time of the first one, ms
  current: null, // the result shown: {name, model, refused, label, probabilities, gate} (null after an error)
  heatmaps: 0, // Grad-CAM overlays drawn
  heatmapMs: null, // how long the last one took in the engine, ms
  heatmapOf: 0, // the `results` count of the result the last overlay belongs to
  displays: 0, // images re-drawn with another display window (window/level)
  done: 0, // batch files finished (classified, refused or failed)
  studies: 0, // CT studies finished (scored, or failed to score)
  studyViews: 0, // axial slices drawn in the study view
  study: null, // the study shown: {name, slices, k, score, topKMean, classified, lungRange, ms, stripPoints, heatOf}
  labelled: null, // the labelled set last measured: {model, n, auc, auc_ci, set_aside, ms}
  adapt: null, // the adaptation running or last run: {stage, fit, epoch, steps_run, ms} (stage 'cancelled' after a cancel)
  adapted: null, // the adapted model in use: {id, title, sha256, images, auc_before, auc_after} (null: the shipped models)
  saved: 0, // adapted models kept in this browser (IndexedDB)
  sw: null, // 'ready' once the service worker controls the page (offline use)
  cardDetails: null, // the model card's details, fetched when the card is first seen: 'loaded' | 'failed: …'
};

/** Set some of the hooks' fields (only those declared above). */
export function record(fields) {
  for (const [k, v] of Object.entries(fields)) {
    if (!(k in hooks)) throw new Error(`hooks: unknown field ${k}`);
    hooks[k] = v;
  }
}

/** Add one to a counter. */
export function bump(name) {
  record({ [name]: hooks[name] + 1 });
}

const readOnly = () => { throw new TypeError('ctxrHooks is read-only'); };
Object.defineProperty(globalThis, 'ctxrHooks', {
  value: new Proxy(hooks, {
    get: (t, k) => (k === 'call' ? call : t[k]),
    has: (t, k) => k === 'call' || k in t,
    set: readOnly,
    defineProperty: readOnly,
    deleteProperty: readOnly,
  }),
  enumerable: true,
});
