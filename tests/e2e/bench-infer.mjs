// bench-infer.mjs — a benchmark, not a test (`./build.sh bench`): ctxr against onnxruntime-web
// on the same networks and weights, in one headless Chromium session (Debian's chromium;
// WebGPU through SwiftShader on a machine without a GPU). It prints numbers and asserts only
// that both runtimes compute the same logits (otherwise the times would compare different work).
//
// Needs a built www/ (./build.sh), the networks exported to ONNX in target/bench/onnx
// (`ctxr export-onnx`) and onnxruntime-web in node_modules (build.sh bench installs both).
//   node tests/e2e/bench-infer.mjs [models=cxr,ct] [runs=50]
// For each model and configuration, one page loads both runtimes; then 3 repeats alternate
// `runs` timed passes of ctxr and of onnxruntime-web (after untimed ones for 1.5 s each), then ctxr's
// images/s at batch 1, 8 and 32 and its Grad-CAM time at every stage, on the CPU (one thread,
// and threaded) and on WebGPU. Threaded, each runtime has its own page per repeat, so that
// neither's waiting threads take the other's cores. Cold start
// is measured in a fresh browser context per runtime and repeat: wasm compile, engine or
// session, model, to the first logits. Bytes to the first result are the files that fetched,
// gzipped (-6) as a static host would serve them.
import { chromium } from 'playwright-core';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { ISOLATION, serve } from './server.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bench = join(root, 'target', 'bench');
const site = join(bench, 'site');
const MODELS = (process.argv[2] || 'cxr,ct').split(',');
const RUNS = Number(process.argv[3] || 50);
const GPU_RUNS = Math.max(3, Math.round(RUNS / 5));
const REPEATS = 3;
// Untimed passes before the timed ones: at least 10, and at least this long (bench-page.mjs `warm`).
const WARM_MS = 1500;
const BATCHES = [1, 8, 32];
const CAM_LAYERS = [4, 3, 2, 1];
const ARGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];
// ctxr's threads where the page is isolated: one per core, as the page's worker (www/worker.js).
const THREADS = Math.min(8, cpus().length);

// The served folder: links to the built page's wasm and weights, onnxruntime-web's files, the
// exported networks and the in-page half.
for (const need of [join(root, 'www', 'pkg', 'ctxr_bg.wasm'), join(root, 'www', 'pkg', 'ctxr_cpu_bg.wasm'), join(root, 'www', 'pkg', 'ctxr_threads_bg.wasm'), join(root, 'node_modules', 'onnxruntime-web', 'dist'), ...MODELS.map((m) => join(bench, 'onnx', `${m}.onnx`))]) {
  if (!existsSync(need)) { console.error(`missing ${need}: run ./build.sh bench`); process.exit(2); }
}
rmSync(site, { recursive: true, force: true });
mkdirSync(site, { recursive: true });
symlinkSync(join(root, 'www', 'pkg'), join(site, 'pkg'));
symlinkSync(join(root, 'www', 'weights'), join(site, 'weights'));
symlinkSync(join(root, 'node_modules', 'onnxruntime-web', 'dist'), join(site, 'ort'));
symlinkSync(join(bench, 'onnx'), join(site, 'models'));
copyFileSync(join(root, 'tests', 'e2e', 'bench-page.mjs'), join(site, 'bench-page.mjs'));
writeFileSync(join(site, 'index.html'), '<!doctype html><meta charset="utf-8"><title>ctxr speed benchmark</title>\n');

const quantile = (v, q) => { const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
const median = (v) => quantile(v, 0.5);
const gz = (path) => { const f = join(site, decodeURIComponent(path)); return existsSync(f) ? gzipSync(readFileSync(f), { level: 6 }).length : 0; };
const maxDiff = (a, b) => (a.length === b.length ? Math.max(...a.map((v, i) => Math.abs(v - b[i]))) : Infinity);
const round = (v, d = 2) => Number(v.toFixed(d));

const plain = await serve(site);
const isolated = await serve(site, 0, ISOLATION);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS });
const call = (page, fn, ...args) => page.evaluate(async ([fn, args]) => (await import('./bench-page.mjs'))[fn](...args), [fn, args]);
async function withPage(url, f) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url);
  try { return await f(page); } finally { await context.close(); }
}

// ctxr's images/s at the batch sizes a study could use (the exported networks take one image)
// and its Grad-CAM at every stage (the issue's bar: ≤ 1.5× one forward pass), in `page`.
async function batchAndCam(page, c) {
  const batch = {};
  for (const n of BATCHES) {
    const times = await call(page, 'timeBatch', n, Math.max(3, Math.round(c.runs / n)));
    batch[n] = round((1000 * n) / median(times), 1);
  }
  const cam = {};
  for (const layer of CAM_LAYERS) cam[layer] = round(median(await call(page, 'timeCam', layer, Math.max(3, Math.round(c.runs / 5)))));
  return { images_per_s: batch, grad_cam_ms: cam };
}

const timing = (t) => ({
  ctxr_median_ms: round(median(t.ctxr)), ctxr_p90_ms: round(quantile(t.ctxr, 0.9)),
  ort_median_ms: round(median(t.ort)), ort_p90_ms: round(quantile(t.ort, 0.9)),
  ratio: round(median(t.ctxr) / median(t.ort)),
});

// One thread (or WebGPU): both runtimes in one page, alternating.
async function oneConfig(c, id) {
  return withPage(c.url, async (page) => {
    const a = await call(page, 'ctxrStart', c.ctxr, id);
    const b = await call(page, 'ortStart', c.ort[0], id, c.ort[1], sizes[id]);
    const diff = maxDiff(a.logits, b.logits);
    if (!(diff <= 1e-4)) mismatch = true;
    await call(page, 'warm', 'ctxr', WARM_MS);
    await call(page, 'warm', 'ort', WARM_MS);
    const t = { ctxr: [], ort: [] };
    for (let i = 0; i < REPEATS; i++) {
      t.ctxr.push(...(await call(page, 'time', 'ctxr', c.runs)));
      t.ort.push(...(await call(page, 'time', 'ort', c.runs)));
    }
    return { ...(await batchAndCam(page, c)), ctxr_backend: a.backend, ctxr_threads: 1, ort_threads: b.threads, isolated: b.isolated, logits_max_diff: diff, ...timing(t) };
  });
}

// Threads: each runtime in a page of its own, never both at once (a pool's idle threads, such
// as onnxruntime-web's, which spin while they wait for work, take the cores from the other's),
// alternating pages per repeat. ctxr's threaded build runs in a worker (bench-page.mjs); the
// one-thread build in its page gives the per-layer profile (the kernels' own cost), where the
// clock is finest (5 µs when cross-origin isolated), and the threaded build's profile beside it.
async function threadedConfig(c, id) {
  const t = { ctxr: [], ort: [] };
  const pages = { ctxr: [], ort: [] }; // each page's median: a page's state can differ from the next's
  let out = {};
  let ctxrLogits = [];
  let ortLogits = [];
  for (let i = 0; i < REPEATS; i++) {
    await withPage(c.url, async (page) => {
      const a = await call(page, 'ctxrWorkerStart', id, THREADS);
      ctxrLogits = a.logits;
      await call(page, 'warm', 'ctxr', WARM_MS);
      const times = await call(page, 'time', 'ctxr', c.runs);
      t.ctxr.push(...times);
      pages.ctxr.push(round(median(times)));
      if (i > 0) return;
      const more = await batchAndCam(page, c);
      const threadedProfile = await call(page, 'threadedProfile', c.runs);
      const one = await call(page, 'ctxrStart', 'cpu', id);
      if (!(maxDiff(one.logits, a.logits) <= 1e-4)) mismatch = true;
      out = { ...more, profile: await call(page, 'profile', c.runs), threaded_profile: threadedProfile, ctxr_backend: a.backend, ctxr_threads: a.threads };
    });
    await withPage(c.url, async (page) => {
      const b = await call(page, 'ortStart', c.ort[0], id, c.ort[1], sizes[id]);
      ortLogits = b.logits;
      out.ort_threads = b.threads;
      out.isolated = b.isolated;
      await call(page, 'warm', 'ort', WARM_MS);
      const times = await call(page, 'time', 'ort', c.runs);
      t.ort.push(...times);
      pages.ort.push(round(median(times)));
    });
  }
  const diff = maxDiff(ctxrLogits, ortLogits);
  if (!(diff <= 1e-4)) mismatch = true;
  return { ...out, logits_max_diff: diff, page_medians_ms: pages, ...timing(t) };
}

const sizes = Object.fromEntries(JSON.parse(readFileSync(join(root, 'www', 'weights', 'manifest.json'), 'utf8')).models.map((m) => [m.id, m.preprocess.input_size]));
const results = { date: new Date().toISOString(), machine: `${cpus().length} × ${cpus()[0]?.model}`, chromium: browser.version(), runs: RUNS, models: {} };
let mismatch = false;
try {
  for (const id of MODELS) {
    const r = (results.models[id] = {});
    // Cold start, fresh context each time.
    // ctxr_cpu: the CPU-only build a page on the CPU loads; ctxr_full_cpu: the build with
    // WebGPU that a browser with a WebGPU adapter loads, started on the CPU.
    const starts = [['ctxr_cpu', ['ctxrStart', 'cpu', id]], ['ctxr_full_cpu', ['ctxrStart', 'cpu', id, 'ctxr']], ['ort_wasm', ['ortStart', 'wasm', id, 1, sizes[id]]]];
    for (const [name, start] of starts) {
      const runs = [];
      for (let i = 0; i < REPEATS; i++) {
        runs.push(await withPage(plain.url, async (page) => {
          const s = await call(page, ...start);
          const files = await call(page, 'fetched');
          const here = files.filter((f) => gz(f) > 0);
          return { ...s, bytes: here.reduce((n, f) => n + gz(f), 0), files: here };
        }));
      }
      r[`${name}_cold`] = { ready_ms: round(median(runs.map((x) => x.ready)), 0), first_ms: round(median(runs.map((x) => x.first)), 0), gzip_bytes: runs[0].bytes, files: runs[0].files };
    }
    // Warm: alternating runs of the two runtimes (oneConfig, threadedConfig).
    const configs = [
      { name: 'cpu_1_thread', url: plain.url, ctxr: 'cpu', ort: ['wasm', 1], runs: RUNS },
      { name: 'cpu_threaded', url: isolated.url, ctxr: 'threads', ort: ['wasm', Math.min(4, cpus().length)], runs: RUNS },
      { name: 'webgpu', url: plain.url, ctxr: 'webgpu', ort: ['webgpu', 1], runs: GPU_RUNS },
    ];
    for (const c of configs) r[c.name] = await (c.ctxr === 'threads' ? threadedConfig(c, id) : oneConfig(c, id));
  }
} finally {
  await browser.close();
  await plain.close();
  await isolated.close();
}

writeFileSync(join(bench, 'infer.json'), JSON.stringify(results, null, 2));
console.log(`ctxr vs onnxruntime-web ${JSON.parse(readFileSync(join(root, 'node_modules', 'onnxruntime-web', 'package.json'))).version}, ${results.chromium}, ${results.machine}, ${results.date}`);
console.log('model  configuration   ctxr median (p90) ms   ORT median (p90) ms   ratio ctxr/ORT   max |Δlogit|');
for (const [id, r] of Object.entries(results.models)) {
  for (const name of ['cpu_1_thread', 'cpu_threaded', 'webgpu']) {
    const c = r[name];
    const ort = name === 'cpu_threaded' ? `${c.ort_threads} threads${c.isolated ? '' : ' (NOT isolated)'}` : '';
    const ours = name === 'cpu_threaded' ? ` ${c.ctxr_threads} thr.` : '';
    console.log(`${id.padEnd(6)} ${name.padEnd(15)} ${`${c.ctxr_median_ms} (${c.ctxr_p90_ms})${ours}`.padEnd(22)} ${`${c.ort_median_ms} (${c.ort_p90_ms}) ${ort}`.padEnd(21)} ${String(c.ratio).padEnd(16)} ${c.logits_max_diff.toExponential(1)}`);
    if (c.page_medians_ms) console.log(`${''.padEnd(22)} by page: ctxr ${c.page_medians_ms.ctxr.join(', ')} ms; ORT ${c.page_medians_ms.ort.join(', ')} ms`);
  }
  for (const name of ['ctxr_cpu', 'ctxr_full_cpu', 'ort_wasm']) {
    const c = r[`${name}_cold`];
    console.log(`${id.padEnd(6)} cold ${name.padEnd(13)} ready ${c.ready_ms} ms, first result ${c.first_ms} ms, ${(c.gzip_bytes / 1e6).toFixed(2)} MB gzip (${c.files.map((f) => f.split('/').pop()).join(', ')})`);
  }
}
console.log(`\nctxr images/s by batch size (${BATCHES.join(', ')} images per forward pass)`);
for (const [id, r] of Object.entries(results.models)) {
  for (const name of ['cpu_1_thread', 'cpu_threaded', 'webgpu']) {
    console.log(`${id.padEnd(6)} ${(name === 'cpu_threaded' ? `cpu ×${r[name].ctxr_threads}` : r[name].ctxr_backend ?? name).padEnd(8)} ${BATCHES.map((n) => `${n}: ${r[name].images_per_s[n]}`).join('   ')}`);
  }
}
console.log(`\nctxr Grad-CAM by stage: median ms, and × one forward pass (target ≤ 1.5× for the deepest stage, ${CAM_LAYERS[0]})`);
for (const [id, r] of Object.entries(results.models)) {
  for (const name of ['cpu_1_thread', 'cpu_threaded', 'webgpu']) {
    const c = r[name];
    console.log(`${id.padEnd(6)} ${(name === 'cpu_threaded' ? `cpu ×${c.ctxr_threads}` : c.ctxr_backend ?? name).padEnd(8)} ${CAM_LAYERS.map((l) => `stage ${l}: ${c.grad_cam_ms[l]} ms (${round(c.grad_cam_ms[l] / c.ctxr_median_ms)}×)`).join('   ')}`);
  }
}
for (const [id, r] of Object.entries(results.models)) {
  const p = r.cpu_threaded.profile;
  if (!p) continue;
  const t = r.cpu_threaded.threaded_profile;
  const total = (v) => v.reduce((n, l) => n + l.ms, 0);
  console.log(`\n${id}: ctxr CPU forward pass by layer, one thread (median of ${RUNS}; sum ${total(p).toFixed(2)} ms)${t ? ` and ${r.cpu_threaded.ctxr_threads} threads (sum ${total(t).toFixed(2)} ms)` : ''}`);
  console.log(`layer         output          MMAC     ms     GMAC/s${t ? `   ms ×${r.cpu_threaded.ctxr_threads}  speed-up` : ''}`);
  for (const [i, l] of p.entries()) {
    const m = t?.[i];
    const threads = m ? `${m.ms.toFixed(3).padStart(9)} ${m.ms > 0 ? (l.ms / m.ms).toFixed(2).padStart(9) : ''}` : '';
    console.log(`${l.layer.padEnd(13)} ${l.output.join('×').padEnd(14)} ${(l.macs / 1e6).toFixed(2).padStart(6)} ${l.ms.toFixed(3).padStart(7)} ${(l.macs && l.ms > 0 ? (l.macs / l.ms / 1e6).toFixed(1) : '').padStart(8)} ${threads}`);
  }
}
console.log(`written: ${join(bench, 'infer.json')}`);
if (mismatch) { console.error('ctxr and onnxruntime-web computed different logits (> 1e-4): the times compare different work'); process.exit(1); }
