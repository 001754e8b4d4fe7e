// worker.js — one job: run the model off the main thread. It fetches the manifest and the input
// gate's weights (same origin, cached by the service worker), fetches a CT or X-ray model only
// when the first image (or study) that needs it arrives, reads a folder's files itself one at
// a time (so a 300-file series never sits in the page's memory), starts the wasm engine on the faster of
// WebGPU and the CPU (measured, unless the page asks for one; a CPU-only build where WebGPU
// cannot run), and answers the page's
// requests one at a time: {id, op, ...} → {id, ok, result | error}. Its `init` reply carries
// the engine's page constants (file-size limit, window presets, colour maps), so the page
// repeats none of them.

// Three builds of the one engine (build.sh). The CPU build has no WebGPU stack and is about a
// third of the bytes, so a page that runs on the CPU downloads and compiles far less before
// its first result; the threaded build is the CPU build with its layers split across threads
// that share its memory, which the browser allows only in a cross-origin-isolated page; the
// full build runs on WebGPU or the CPU (one thread). A CPU build is loaded unless WebGPU is
// asked for or could run (an adapter exists), since then the faster of the two is measured.
const BUILDS = {
  cpu: { js: './pkg/ctxr_cpu.js', wasm: './pkg/ctxr_cpu_bg.wasm' },
  threads: { js: './pkg/ctxr_threads.js', wasm: './pkg/ctxr_threads_bg.wasm' },
  full: { js: './pkg/ctxr.js', wasm: './pkg/ctxr_bg.wasm' },
};
// More threads than this wait on each other more than they help at batch 1.
const MAX_THREADS = 8;

let lib = null; // the loaded build's module: Engine, version, page_constants
let build = null; // which of BUILDS it is
let buildNote = null; // why the CPU build was loaded where WebGPU was wanted
let threads = { count: 1, why: null }; // threads the loaded build's CPU path uses, and why one
let engine = null;
let manifest = null;
let wasm = null; // the module's exports (its linear memory is reported by `memory`)
let records = null; // id → Uint8Array (kept to restart on another backend without refetching)
let choice = null;
let queue = Promise.resolve();
let cancelAdapt = false;

const post = (msg, transfer = []) => self.postMessage(msg, transfer);
const requestCount = () => performance.getEntriesByType('resource').length;
const asError = (e) => (e && typeof e === 'object' && 'kind' in e)
  ? { kind: String(e.kind), message: String(e.message) }
  : { kind: 'internal', message: String((e && e.message) || e) };

async function fetchBytes(url, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw { kind: 'download', message: `could not download ${url} (HTTP ${res.status})` };
  const total = Number(res.headers.get('content-length')) || 0;
  if (!res.body || !res.body.getReader) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    onProgress(got, total);
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// Fetch model records into `records`, reporting bytes of this batch as they arrive.
async function fetchModels(models, onProgress) {
  const total = models.reduce((s, m) => s + (m.record_bytes || 0), 0);
  const done = {};
  for (const m of models) {
    records[m.id] = await fetchBytes(`weights/${m.record}`, (got) => {
      done[m.id] = got;
      onProgress(Object.values(done).reduce((a, b) => a + b, 0), total, m.id);
    });
  }
}

// The build `which`: its WebAssembly compiled as it downloads (streaming: the compiler works
// on the first bytes while the last ones arrive), the bytes counted on their way for the
// page's progress; the stages are reported to the page.
async function loadEngine(which) {
  const mod = await import(BUILDS[which].js);
  const url = new URL(BUILDS[which].wasm, import.meta.url);
  const res = await fetch(url);
  if (!res.ok) throw { kind: 'download', message: `could not download ${url} (HTTP ${res.status})` };
  const total = Number(res.headers.get('content-length')) || 0;
  let got = 0;
  const counted = res.body.pipeThrough(new TransformStream({
    transform(chunk, out) {
      got += chunk.length;
      post({ type: 'progress', got, total, model: 'engine' });
      out.enqueue(chunk);
    },
    flush() { post({ type: 'progress', got: 0, total: 0, model: 'compile' }); },
  }));
  wasm = await mod.default({ module_or_path: new Response(counted, { headers: { 'content-type': 'application/wasm' } }) });
  if (typeof mod.page_constants !== 'function') {
    throw { kind: 'internal', message: 'this build of the engine has no page_constants(): rebuild www/pkg' };
  }
  const plan = threadPlan();
  // The pool's workers instantiate the same module on the same (shared) memory.
  if (which === 'threads') await mod.initThreadPool(plan.count);
  lib = mod;
  build = which;
  threads = which === 'threads' ? plan
    : { count: 1, why: which === 'full' ? 'the WebGPU build runs the CPU on one thread' : plan.why };
}

// The loaded build's files, for the page's offline cache: its glue and its wasm, and the
// snippets its glue imports (the threaded build's pool starts its workers from one).
function buildFiles() {
  const base = new URL('./', self.location.href).href;
  const snippets = performance.getEntriesByType('resource').map((e) => e.name)
    .filter((u) => u.startsWith(`${base}pkg/snippets/`)).map((u) => `./${u.slice(base.length)}`);
  return [BUILDS[build].js, BUILDS[build].wasm, ...(build === 'threads' ? new Set(snippets) : [])];
}

// Threads for the CPU path here: one per core (up to MAX_THREADS) where the page is
// cross-origin isolated, since only then may threads share the engine's memory; else one, and
// why. The page's service worker isolates the pages it serves, so on a host that cannot send
// the headers itself (GitHub Pages) threads start from the second visit.
function threadPlan() {
  const cores = navigator.hardwareConcurrency || 1;
  if (cores < 2) return { count: 1, why: 'this device has one processor core' };
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') {
    return { count: 1, why: 'the page is not cross-origin isolated, which threads need (the offline cache isolates it from the next visit)' };
  }
  return { count: Math.min(cores, MAX_THREADS), why: null };
}

// The build for `preference`: the full one when WebGPU is asked for or has an adapter here,
// else the threaded CPU build where threads can run, else the CPU build (a build already
// loaded that can run the preference is kept: the full build runs the CPU too). A build that
// cannot be loaded (offline, not cached) gives way to the next: full, threaded, CPU.
async function ensureBuild(preference) {
  let want = 'cpu';
  buildNote = null;
  if (preference !== 'cpu' && navigator.gpu) {
    // Asked for, the full build is loaded even without an adapter, so that wgpu says why.
    const adapter = await navigator.gpu.requestAdapter().catch(() => null);
    if (adapter || preference === 'webgpu') want = 'full';
    else buildNote = 'no WebGPU adapter';
  }
  const onCpu = threadPlan().count > 1 ? ['threads', 'cpu'] : ['cpu'];
  if (want === 'cpu') want = onCpu[0];
  if (lib && (build === want || build === 'full')) return;
  if (engine) { engine.free(); engine = null; }
  const order = want === 'full' ? ['full', ...onCpu] : onCpu;
  let noThreads = null;
  for (const [i, which] of order.entries()) {
    if (which === build) break; // a fallback already loaded
    try {
      await loadEngine(which);
      break;
    } catch (e) {
      if (i === order.length - 1) throw e;
      const why = `the ${which === 'full' ? 'WebGPU' : 'threaded'} build could not be loaded (${asError(e).message})`;
      if (which === 'full') buildNote = why;
      else noThreads = why;
    }
  }
  if (noThreads && build === 'cpu') threads = { count: 1, why: noThreads };
}

// The manifest, then the models needed before any image: the gate (every model when the
// manifest has none, since nothing could route an image then). Fetched while the engine
// downloads and compiles, so its progress is not reported: the engine's bar is the one shown,
// and the gate is a fraction of its bytes.
async function loadStart() {
  const res = await fetch('weights/manifest.json');
  if (!res.ok) throw { kind: 'download', message: `could not download the manifest (HTTP ${res.status})` };
  const text = await res.text();
  manifest = { text, json: JSON.parse(text) };
  const models = manifest.json.models.filter((m) => m.record);
  const gate = models.filter((m) => m.id === 'gate');
  records = {};
  await fetchModels(gate.length ? gate : models, () => {});
}

// A model the engine asked for (`model_not_loaded`): fetch it and load it on the running engine.
async function loadOnDemand(id) {
  const m = manifest.json.models.find((x) => x.id === id && x.record);
  if (!m || records[id]) throw { kind: 'model_not_loaded', message: `the ${id} model is not in the manifest` };
  await fetchModels([m], (got, total) => post({ type: 'progress', got, total, model: id }));
  await engine.load_model(id, records[id]);
}

// Run an engine call; when it needs a model not loaded yet, fetch that model and run it again.
async function withModel(run) {
  try {
    return await run();
  } catch (e) {
    if (!(e && e.kind === 'model_not_loaded' && e.model)) throw e;
    await loadOnDemand(e.model);
    return await run();
  }
}

async function start(backend) {
  const e = await lib.Engine.create(backend, manifest.text);
  for (const [id, bytes] of Object.entries(records)) await e.load_model(id, bytes);
  return e;
}

const yieldToMessages = () => new Promise((resolve) => setTimeout(resolve, 0));

// A labelled set's files: `files` [{path, file}]. One CSV among them gives the labels (its
// paths relative to its folder); without one, the class folders do.
function layoutOf(files) {
  const csvs = files.filter((f) => /\.csv$/i.test(f.path));
  if (csvs.length > 1) throw { kind: 'labels', message: `${csvs.length} CSV files were given (${csvs.map((f) => f.path).join(', ')}): give the one that holds the labels` };
  const images = files.filter((f) => !csvs.includes(f));
  const paths = images.map((f) => f.path);
  if (!csvs.length) return { layout: { kind: 'folder', paths }, csv: null };
  const p = csvs[0].path;
  return { layout: { kind: 'csv', dir: p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '', paths }, csv: csvs[0] };
}

// The model the backends are timed on: one that is always loaded first.
const benchModel = () => Object.keys(records)[0];

// The backend: the one asked for, else the faster of the two on a warm-up input. A WebGPU
// that cannot start (asked for or not) ends on the CPU, said in one plain sentence; the
// reason is kept for the curious.
async function choose(preference) {
  const hasGpu = typeof navigator !== 'undefined' && !!navigator.gpu;
  post({ type: 'progress', got: 0, total: 0, model: 'backend' });
  if (preference === 'cpu') return { engine: await start('cpu'), how: 'chosen by you', times: {} };
  const onCpu = async (where, detail = null) => ({
    engine: await start('cpu'),
    how: `${preference === 'webgpu' ? 'You asked for WebGPU, but it' : 'WebGPU'} is not available ${where}, so the CPU runs the models`,
    detail,
    times: {},
  });
  if (!hasGpu) return onCpu('in this browser');
  if (build !== 'full') return onCpu('on this machine', buildNote);
  let gpu = null;
  let gpuError = null;
  // wgpu's message ends with a dump of every backend it probed: keep the first sentence.
  try { gpu = await start('webgpu'); } catch (e) { gpuError = asError(e).message.split(' for WgpuDevice')[0].split(': No suitable')[0]; }
  if (!gpu) return onCpu('on this machine', gpuError);
  if (preference === 'webgpu') return { engine: gpu, how: 'chosen by you', times: {} };
  const cpu = await start('cpu');
  const id = benchModel();
  const times = { webgpu: await gpu.benchmark(id, 5), cpu: await cpu.benchmark(id, 5) };
  const gpuWins = times.webgpu < times.cpu;
  (gpuWins ? cpu : gpu).free();
  return { engine: gpuWins ? gpu : cpu, how: 'measured: the faster of the two on a warm-up input', times };
}

const ops = {
  async init({ backend = 'auto' }) {
    const t0 = performance.now();
    const fetching = records ? null : loadStart();
    fetching?.catch(() => {}); // awaited below; an engine that fails first is the error to report
    await ensureBuild(backend);
    const constants = lib.page_constants();
    await fetching;
    if (engine) { engine.free(); engine = null; }
    choice = await choose(backend);
    engine = choice.engine;
    return {
      backend: engine.backend(),
      how: choice.how,
      detail: choice.detail ?? null,
      times: choice.times,
      loaded: engine.loaded(),
      version: lib.version(),
      build,
      build_files: buildFiles(),
      threads,
      manifest: manifest.json,
      constants,
      startup_ms: performance.now() - t0,
    };
  },
  async analyze({ bytes, request }) {
    const input = new Uint8Array(bytes);
    const r = await withModel(() => engine.analyze(input, request || {}));
    return [r, [r.display.buffer, r.seen.buffer]];
  },
  // A folder: every file read here, one at a time, into the engine's series builder.
  // `files`: [{name, file}] (name: the path inside the folder). Resolves to the engine's
  // {studies, set_aside, single_images}.
  async open_folder({ folder, files }) {
    engine.series_begin();
    for (let i = 0; i < files.length; i++) {
      if (i % 8 === 0) post({ type: 'study', stage: 'reading', done: i, total: files.length });
      engine.series_add(files[i].name, new Uint8Array(await files[i].file.arrayBuffer()));
    }
    return engine.series_finish(folder);
  },
  async open_volume({ name, file }) {
    return engine.open_volume(name, new Uint8Array(await file.arrayBuffer()));
  },
  // Scored in steps (a few slices measured, or one batch classified), letting a request to
  // show a slice in between (`view_volume` does not queue). `batch`: slices per forward pass;
  // absent, the engine's choice for its backend.
  async score_study({ index, batch }) {
    const t0 = performance.now();
    await withModel(async () => engine.study_begin(index, batch));
    for (;;) {
      const p = await engine.study_step();
      post({ type: 'study', stage: p.stage, done: p.done, total: p.total });
      if (p.stage === 'finished') break;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    return { ...engine.study_finish(), ms: performance.now() - t0 };
  },
  async view_volume({ index, plane, k, window }) {
    const v = engine.view_volume(index, plane, k, window);
    return [v, [v.display.buffer]];
  },
  async analyze_slice({ index, k }) {
    const r = await withModel(() => engine.analyze_slice(index, k));
    return [r, [r.display.buffer, r.seen.buffer]];
  },
  async redisplay({ window }) {
    const d = engine.redisplay(window);
    return [d, [d.display.buffer]];
  },
  async try_window({ window }) {
    return await engine.try_window(window);
  },
  async explain({ cls, layer, colormap }) {
    const h = await engine.explain(cls, layer, colormap);
    return [h, [h.rgba.buffer]];
  },
  async time({ runs }) {
    return await engine.time_inference(runs);
  },
  // A labelled set: labels read, then every file read past the gate and classified, one at
  // a time; resolves to the engine's measurement ({assessment, files, probabilities, …}).
  async labelled({ model, files, limit }) {
    const t0 = performance.now();
    const { layout, csv } = layoutOf(files);
    if (csv) layout.text = await csv.file.text();
    const begun = await withModel(async () => engine.labelled_begin(model, layout, limit));
    const byPath = new Map(files.map((f) => [f.path.replaceAll('\\', '/'), f.file]));
    const items = begun.items;
    for (let i = 0; i < items.length; i++) {
      post({ type: 'labelled', stage: 'reading', done: i, total: items.length });
      const file = byPath.get(items[i].path);
      const bytes = new Uint8Array(await file.arrayBuffer());
      await engine.labelled_add(items[i].path, bytes);
    }
    post({ type: 'labelled', stage: 'reading', done: items.length, total: items.length });
    return { ...engine.labelled_finish(), ms: performance.now() - t0 };
  },
  async threshold({ value }) {
    return engine.labelled_threshold(value);
  },
  // Adapt the measured set's model, one batch per engine call; between calls the worker
  // reports progress and lets a cancel in. Resolves to {entry, record, manifest, verdict, ms}; the adapted model
  // is then the one in use.
  async adapt({ part, epochs, folds }) {
    cancelAdapt = false;
    const t0 = performance.now();
    const begun = engine.adapt_begin({ part, epochs, folds });
    for (;;) {
      await yieldToMessages();
      if (cancelAdapt) {
        engine.adapt_cancel();
        throw { kind: 'cancelled', message: 'The adaptation was cancelled; the model in use is unchanged.' };
      }
      const p = await engine.adapt_step();
      post({ type: 'adapt', progress: p, steps_max: begun.steps_max, ms: performance.now() - t0 });
      if (p.stage === 'done') break;
    }
    const out = await engine.adapt_finish();
    return [{ entry: out.entry, record: out.record, manifest: out.manifest, verdict: out.verdict, ms: performance.now() - t0 }, [out.record.buffer]];
  },
  async adapt_cancel() {
    cancelAdapt = true;
    return true;
  },
  // An adapted model (its manifest entry as JSON text, its record) in place of its base: one
  // the user kept or loaded, or the one in use when the page started a new worker.
  async install({ entry, record }) {
    return engine.install_model(entry, new Uint8Array(record));
  },
  // Back to the shipped model `model` (its record fetched if it never was).
  async restore({ model: id }) {
    const shipped = manifest.json.models.find((m) => m.id === id && m.record);
    if (!shipped) throw { kind: 'model_not_loaded', message: `the ${id} model is not in the manifest` };
    if (!records[id]) await fetchModels([shipped], (got, total) => post({ type: 'progress', got, total, model: id }));
    engine.install_model(JSON.stringify(shipped), records[id]);
    return engine.model_entry(id);
  },
  // WebAssembly memory only grows, so its size is the peak the module has needed.
  async memory() {
    return { wasm_bytes: wasm?.memory?.buffer?.byteLength ?? 0 };
  },
};

// One forward pass of the first model loaded, queued after the start so that it runs while the
// page waits for a file: the kernels' first run (a baseline compile of the WebAssembly until the
// browser has optimised them, on WebGPU the shaders' compilation) is then not paid by the
// user's first image. A file given meanwhile waits for it (a few milliseconds on the CPU).
async function warmUp() {
  if (engine && records && benchModel()) await engine.benchmark(benchModel(), 1).catch(() => {});
}

// Answered at once, not after the queue: showing a slice while a study is scored, the memory
// figure (both only read the engine's state), and a request to cancel the adaptation running.
const IMMEDIATE = new Set(['view_volume', 'memory', 'adapt_cancel']);

self.onmessage = (ev) => {
  const { id, op, ...args } = ev.data || {};
  const run = async () => {
    try {
      if (!ops[op]) throw { kind: 'bad_request', message: `unknown operation ${op}` };
      if (op !== 'init' && !engine) throw { kind: 'not_ready', message: 'the models are not loaded yet' };
      const out = await ops[op](args);
      const [result, transfer] = Array.isArray(out) && out.length === 2 && Array.isArray(out[1]) ? out : [out, []];
      post({ id, ok: true, result, requests: requestCount() }, transfer);
      if (op === 'init') queue = queue.then(warmUp);
    } catch (e) {
      // A trap inside WebAssembly leaves the module unusable: the page then starts a new worker.
      const fatal = typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError;
      post({ id, ok: false, error: asError(e), fatal, requests: requestCount() });
    }
  };
  if (IMMEDIATE.has(op)) run();
  else queue = queue.then(run);
};
