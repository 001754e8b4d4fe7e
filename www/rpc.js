// rpc.js — one job: talk to the analysis worker (worker.js), which runs the wasm engine off the
// main thread so decoding, classification and Grad-CAM never freeze the page. It starts and
// restarts the worker, numbers each request, keeps the promises waiting for their replies, and
// replaces the worker when WebAssembly trapped inside it (a trapped module is unusable).
// Nothing else in the page touches the Worker object.

const rpc = {
  worker: null,
  nextId: 1,
  pending: new Map(), // id → {resolve, reject}
  restarting: null, // the promise of the restart in progress after a fatal error
  requests: 0, // network requests the worker has made (it reports them with every reply)
  // Set by startWorker: progress of the model download, request count, re-initialise the engine.
  onProgress: () => {},
  onStudy: () => {}, // progress of a study being read or scored: {stage, done, total}
  listeners: {}, // type → f: the worker's other progress messages ('labelled', 'adapt')
  onRequests: () => {},
  onRestart: () => Promise.resolve(),
};

function spawn() {
  const w = new Worker('worker.js', { type: 'module' });
  w.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === 'progress') return rpc.onProgress(m.got, m.total, m.model);
    if (m.type === 'study') return rpc.onStudy(m);
    if (m.type && rpc.listeners[m.type]) return rpc.listeners[m.type](m);
    if (typeof m.requests === 'number') { rpc.requests = m.requests; rpc.onRequests(m.requests); }
    const p = rpc.pending.get(m.id);
    if (!p) return;
    rpc.pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else {
      if (m.fatal) restartAfterFatal();
      p.reject(m.error);
    }
  };
  w.onerror = (ev) => {
    ev.preventDefault();
    rejectAll({ kind: 'worker', message: `the analysis worker failed: ${ev.message || 'unknown error'}` });
    restartAfterFatal();
  };
  rpc.worker = w;
}

function rejectAll(err) {
  for (const p of rpc.pending.values()) p.reject(err);
  rpc.pending.clear();
}

/** Listen to study progress ({stage: 'reading' | 'scoring', done, total}). */
export function onStudyProgress(f) {
  rpc.onStudy = f;
}

/** Listen to the worker's progress messages of `type` ('labelled': a set being read; 'adapt': an adaptation). */
export function onWorkerProgress(type, f) {
  rpc.listeners[type] = f;
}

/** Start a fresh worker, ending the current one (if any); the caller then sends `init`. */
export function startWorker(handlers = {}) {
  Object.assign(rpc, handlers);
  if (rpc.worker) {
    rpc.worker.terminate();
    // Replies from the ended worker will never come: do not leave their callers waiting.
    rejectAll({ kind: 'worker', message: 'the analysis worker was restarted' });
  }
  spawn();
}

/** Send `{op, ...args}` to the worker; resolves with its result or rejects with {kind, message}. */
export function call(op, args = {}, transfer = []) {
  // `id` and `op` name the request itself: an argument of that name would hijack the reply.
  if ('id' in args || 'op' in args) return Promise.reject({ kind: 'bad_request', message: `${op}: an argument may not be named id or op` });
  const id = rpc.nextId++;
  return new Promise((resolve, reject) => {
    rpc.pending.set(id, { resolve, reject });
    rpc.worker.postMessage({ id, op, ...args }, transfer);
  });
}

function restartAfterFatal() {
  if (rpc.restarting) return rpc.restarting;
  startWorker();
  rpc.restarting = Promise.resolve(rpc.onRestart()).finally(() => { rpc.restarting = null; });
  return rpc.restarting;
}

/** Network requests the worker has reported so far. */
export const workerRequests = () => rpc.requests;
