// bench-page.mjs — the in-page half of bench-infer.mjs: loads ctxr's engine or onnxruntime-web
// on one backend and times forward passes of the same network on the same input, in the same
// page and thread. Every call returns plain numbers for the driver to compare.
// ctxr's threaded build runs in a Worker that runs this module (`ctxrWorkerStart`), as the
// page's own worker runs it: its pool blocks the calling thread until a layer is done, which a
// page's main thread may not do. Once started, ctxr's timings are taken there.

let ctxr = null; // { engine, id }
let ort = null; // { ort, session, name, size }
let worker = null; // the Worker that runs ctxr's threaded build, once started
const pending = new Map();
let calls = 0;

// The benchmark's input: `size × size` values in [0, 1) from a fixed generator, the range
// preprocessing gives a model.
export function input(size) {
  const x = new Float32Array(size * size);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = (s >>> 8) / 16777216;
  }
  return x;
}

// Load ctxr's wasm as the page's worker does for `backend` (the CPU-only build for the CPU,
// the full build for WebGPU; streaming compile, the manifest and the record fetched meanwhile),
// create an engine on `backend`, load model `id`, run it once (`name` another build: 'ctxr' is
// the full one). Times: ready (engine and model loaded) and first (first logits), from the call.
export async function ctxrStart(backend, id, name = backend === 'cpu' ? 'ctxr_cpu' : 'ctxr', threads = 1) {
  const t0 = performance.now();
  const fetching = (async () => {
    const text = await (await fetch('weights/manifest.json')).text();
    const entry = JSON.parse(text).models.find((m) => m.id === id);
    return { text, entry, record: new Uint8Array(await (await fetch(`weights/${entry.record}`)).arrayBuffer()) };
  })();
  const mod = await import(`./pkg/${name}.js`);
  await mod.default({ module_or_path: new URL(`./pkg/${name}_bg.wasm`, import.meta.url) });
  if (mod.initThreadPool) await mod.initThreadPool(threads);
  const { text: manifestText, entry, record } = await fetching;
  const engine = await mod.Engine.create(backend, manifestText);
  await engine.load_model(id, record);
  const ready = performance.now() - t0;
  const size = entry.preprocess.input_size;
  const logits = Array.from(await engine.logits(id, input(size)));
  const first = performance.now() - t0;
  ctxr = { engine, id, size };
  return { ready, first, logits, backend: engine.backend(), size, threads: mod.initThreadPool ? threads : 1 };
}

// ctxr's threaded build on `threads` threads in a new Worker, as `ctxrStart` (the page must be
// cross-origin isolated).
export async function ctxrWorkerStart(id, threads) {
  worker = new Worker(new URL(import.meta.url), { type: 'module' });
  worker.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    pending.delete(data.id);
    if (data.error) p.fail(new Error(data.error)); else p.ok(data.result);
  };
  return inWorker('ctxrStart', 'cpu', id, 'ctxr_threads', threads);
}

function inWorker(fn, ...args) {
  return new Promise((ok, fail) => {
    const id = ++calls;
    pending.set(id, { ok, fail });
    worker.postMessage({ id, fn, args });
  });
}

// In the Worker: run what the page asks.
if (typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope) {
  const api = { ctxrStart, warm: (...a) => warm(...a), time: (...a) => time(...a), timeBatch: (...a) => timeBatch(...a), timeCam: (...a) => timeCam(...a), profile: (...a) => profile(...a) };
  self.onmessage = async ({ data }) => {
    try {
      self.postMessage({ id: data.id, result: await api[data.fn](...data.args) });
    } catch (e) {
      self.postMessage({ id: data.id, error: String(e?.message || e) });
    }
  };
}

// Load onnxruntime-web for `provider` ('wasm' or 'webgpu') with `threads` wasm threads, create
// a session for models/`id`.onnx (its graph optimisations on, as by default), run it once on
// a `size × size` input.
export async function ortStart(provider, id, threads, size) {
  const t0 = performance.now();
  const lib = await import(provider === 'webgpu' ? './ort/ort.webgpu.min.mjs' : './ort/ort.wasm.min.mjs');
  lib.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  lib.env.wasm.numThreads = threads;
  const session = await lib.InferenceSession.create(`models/${id}.onnx`, { executionProviders: [provider], graphOptimizationLevel: 'all' });
  const ready = performance.now() - t0;
  ort = { lib, session, size };
  const logits = await ortRun(input(size));
  const first = performance.now() - t0;
  return { ready, first, logits: Array.from(logits), threads: lib.env.wasm.numThreads, isolated: globalThis.crossOriginIsolated === true };
}

async function ortRun(x) {
  const feeds = { input: new ort.lib.Tensor('float32', x, [1, 1, ort.size, ort.size]) };
  const out = await ort.session.run(feeds);
  return out.logits.data;
}

// Milliseconds of each of `runs` awaited calls of `f`.
async function timed(runs, f) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await f();
    times.push(performance.now() - t);
  }
  return times;
}

// Untimed forward passes with `which` for at least `ms` milliseconds and 10 passes: the
// browser compiles a module's hot functions again, optimised, in the background after it
// starts, and on two cores that compiler takes a core from a threaded runtime's timings.
export async function warm(which, ms) {
  if (which === 'ctxr' && worker) return inWorker('warm', which, ms);
  const x = input(which === 'ctxr' ? ctxr.size : ort.size);
  const t0 = performance.now();
  let n = 0;
  while (n < 10 || performance.now() - t0 < ms) {
    await (which === 'ctxr' ? ctxr.engine.logits(ctxr.id, x) : ortRun(x));
    n++;
  }
  return n;
}

// Milliseconds of each of `runs` forward passes (input in, logits read back) with `which`.
export async function time(which, runs) {
  if (which === 'ctxr' && worker) return inWorker('time', which, runs);
  const x = input(which === 'ctxr' ? ctxr.size : ort.size);
  return timed(runs, () => (which === 'ctxr' ? ctxr.engine.logits(ctxr.id, x) : ortRun(x)));
}

// Milliseconds of each of `runs` forward passes of ctxr on `n` images at once (one batch),
// after one untimed pass.
export async function timeBatch(n, runs) {
  if (worker) return inWorker('timeBatch', n, runs);
  const one = input(ctxr.size);
  const x = new Float32Array(n * one.length);
  for (let i = 0; i < n; i++) x.set(one, i * one.length);
  await ctxr.engine.logits(ctxr.id, x);
  return timed(runs, () => ctxr.engine.logits(ctxr.id, x));
}

// Milliseconds of each of `runs` Grad-CAMs of class 1 at stage `layer` with ctxr (after one
// untimed call), as the page computes them before colouring: forward pass, gradient and map.
export async function timeCam(layer, runs) {
  if (worker) return inWorker('timeCam', layer, runs);
  const x = input(ctxr.size);
  await ctxr.engine.grad_cam(ctxr.id, x, 1, layer);
  return timed(runs, () => ctxr.engine.grad_cam(ctxr.id, x, 1, layer));
}

// ctxr's own median of `runs` forward passes timed inside wasm (no promise or copy around
// them), for telling the engine's cost from the call's.
export function inner(runs) {
  return ctxr.engine.benchmark(ctxr.id, runs);
}

// ctxr's per-layer profile of the model loaded in this page (one thread) on the benchmark's
// input (null on WebGPU).
export function profile(runs) {
  return ctxr.engine.profile(ctxr.id, input(ctxr.size), runs);
}

// The same profile of the threaded build, in its worker.
export function threadedProfile(runs) {
  return inWorker('profile', runs);
}

// Bytes each URL this page fetched so far (the driver gzips the same files to count them).
export function fetched() {
  return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname);
}
