// run.mjs — browser tests of the built page (www/, after `./build.sh`): Debian's Chromium driven
// by playwright-core, page served from 127.0.0.1, run twice — WebGPU (SwiftShader) and WebGPU
// disabled (CPU fallback) — asserting the backend each time. Each run classifies real files
// from ../shared/data (or generated images when it is absent), checks the gate's refusal, a
// broken file's readable error and that the next file still works, the Grad-CAM overlay, the
// CSV export, and every request: all same-origin, and none while a file is being classified.
// On the CPU run it also drops the generated hostile corpus (tests/corpus) and a 300-slice folder.
// It waits on the page's test hooks (globalThis.ctxrHooks, www/hooks.js), checks that the page's
// ES modules are served, precached and loaded, and that its menus come from the engine's
// page_constants(). It prints sizes and timings per backend and ends with "N passed, N failed".
import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { ISOLATION, serve } from './server.mjs';
import { dicomStudyFolder, niftiGz, phantomHu, phantomStudy, syntheticFiles, syntheticSeries, tiff16 } from './synthetic.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const www = join(root, 'www');
const out = join(root, 'target', 'e2e');
const data = process.env.CTXR_SHARED_DATA || join(root, '..', 'shared', 'data');
const haveData = existsSync(join(data, 'decoder-references.json'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const COMMON = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const BACKENDS = {
  webgpu: [...COMMON, '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'],
  cpu: [...COMMON, '--disable-features=WebGPU,Vulkan'],
};

// The engine builds the worker may load (www/worker.js), by their wasm file.
const BUILD_WASM = { cpu: 'ctxr_cpu_bg.wasm', threads: 'ctxr_threads_bg.wasm', full: 'ctxr_bg.wasm' };
const MAX_THREADS = 8; // www/worker.js

let passed = 0;
let failed = 0;
function check(ok, what, detail = '') {
  if (ok) { passed++; console.log(`  ok   ${what}`); } else { failed++; console.log(`  FAIL ${what}${detail ? `: ${detail}` : ''}`); }
  return ok;
}

function file(rel) {
  const p = join(data, rel);
  return { name: rel.split('/').pop(), mimeType: 'application/octet-stream', buffer: readFileSync(p) };
}

function firstIn(dir, re) {
  const d = join(data, dir);
  const f = readdirSync(d).filter((n) => re.test(n)).sort()[0];
  if (!f) throw new Error(`no file matching ${re} in ${d}`);
  return `${dir}/${f}`;
}

// The files each run classifies: {label, file, model (request), expect: {model}|{refused}|{error}}.
function cases() {
  if (!haveData) {
    console.log(`SKIPPED real images: ${data} not found; using generated images`);
    return syntheticFiles();
  }
  const png = file(firstIn('ct/images/sarscov2-ct/covid', /\.png$/i));
  const broken = { ...png, name: 'broken.png', buffer: png.buffer.subarray(0, Math.floor(png.buffer.length / 3)) };
  return [
    { label: 'CT DICOM', file: file('ct/decoder-samples/dicom-chest-ct/ID_0000_AGE_0060_CONTRAST_1_CT.dcm'), expect: { model: 'ct' } },
    // JPEG 2000 once trapped inside wasm (openjp2 freeing a null pointer under dlmalloc).
    { label: 'JPEG 2000 lossless DICOM', file: file('ct/decoder-samples/dicom-other-ct/693_J2KR.dcm'), expect: { model: 'ct' } },
    { label: '16-bit TIFF (COVID-CTset convention)', file: file('ct/decoder-samples/tiff-uint16-ct/ID_0008_AGE_0051_CONTRAST_1_CT.tif'), expect: { model: 'ct' } },
    { label: 'PNG CT slice', file: png, expect: { model: 'ct' }, heatmap: true },
    { label: 'CXR JPEG', file: file(firstIn('cxr/images/kermany-224/pneumonia', /\.jpe?g$/i)), expect: { model: 'cxr' } },
    // A Hannover film the gate once accepted as a CT slice at 39 %: below the gate's bar it asks.
    { label: 'X-ray the gate is unsure about', file: file('cxr/images/hannover/covid/0a7faa2a.png'), expect: { asked: 'cxr' } },
    { label: 'natural photo', file: file('odd-inputs/image-rs/tests/images/jpg/progressive/cat.jpg'), expect: { refused: true } },
    { label: 'broken file', file: broken, expect: { error: 'malformed' } },
    { label: 'next file after the broken one', file: png, expect: { model: 'ct' } },
  ];
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function canvasPixels(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
  }, id);
}

function meanAbsDiff(a, b) {
  if (a.length !== b.length || !a.length) return Infinity;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

// `ctxr analyze` (the page's own path in the native CLI, flex backend) on the same bytes with
// the page's weights: the browser's probabilities must match within 1e-4 on either backend.
const cli = join(root, 'target', 'release', 'ctxr');
function sameAsCli(c, r) {
  if (!existsSync(cli)) {
    check(false, `${c.label}: compared with the CLI`, `${cli} missing: run \`cargo build --release --bin ctxr\` first`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ctxr-cli-'));
  const path = join(dir, c.file.name);
  writeFileSync(path, c.file.buffer);
  try {
    const stdout = execFileSync(cli, ['analyze', '--weights', join(www, 'weights'), '--model', c.model || 'auto', path], { encoding: 'utf8' });
    const want = JSON.parse(stdout.split('\n').find((l) => l.startsWith('{'))).probabilities;
    const got = r.probabilities || [];
    const diff = want.length === got.length ? Math.max(...want.map((p, i) => Math.abs(p - got[i]))) : Infinity;
    check(diff <= 1e-4, `${c.label}: same probabilities as the CLI (max |Δ| ${diff.toExponential(1)})`, `page ${JSON.stringify(got)} CLI ${JSON.stringify(want)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Models fetched on demand so far (per browser context): the first image of a modality may
// fetch that model's record (a GET of weights/ct.bpk or weights/cxr.bpk, nothing sent); no
// other request may happen between a file dropped and its result.
const onDemand = new WeakMap();
async function classify(page, requests, c) {
  if (c.model) await setModel(page, c.model);
  const nReq = requests.length;
  const r = await dropFile(page, c.file);
  const during = requests.slice(nReq);
  const fetched = onDemand.get(requests) || new Set();
  onDemand.set(requests, fetched);
  const model = (u) => (u.match(/\/weights\/(ct|cxr)\.bpk$/) || [])[1];
  const allowed = during.filter((q) => q.method === 'GET' && model(q.url) && model(q.url) === r.model && !fetched.has(model(q.url)));
  allowed.forEach((q) => fetched.add(model(q.url)));
  check(during.length === allowed.length, `${c.label}: no request between file dropped and result shown${allowed.length ? ` but the ${r.model} model's weights, fetched on first use` : ''}`,
    during.map((q) => `${q.method} ${q.url}`).join(' '));
  if (c.model) await setModel(page, 'auto');
  if (r.model && !r.refused) sameAsCli(c, r);
  const e = c.expect;
  if (e.model) check(r.model === e.model && !r.refused, `${c.label}: read by the ${e.model} model (→ ${r.label})`, JSON.stringify(r));
  if (e.refused) check(r.refused === true && !r.asked && /colour|does not look/.test(r.message), `${c.label}: refused with a reason`, JSON.stringify(r));
  if (e.asked) await askedCheck(page, c, r);
  if (e.error) check(r.kind === e.error && /^Could not read this file: .{10,}/.test(r.message), `${c.label}: readable error (${r.message})`, JSON.stringify(r));
  return r;
}

// The page reports what it has done in one read-only object, globalThis.ctxrHooks (www/hooks.js):
// the tests wait on its counters and read its state, never the DOM's data attributes.
const hook = (page, name) => page.evaluate((name) => globalThis.ctxrHooks?.[name] ?? null, name);
const heatmaps = async (page) => (await hook(page, 'heatmaps')) ?? 0;
const ENGINE_SETTLED = () => ['ready', 'error'].includes(globalThis.ctxrHooks?.state);

// Choose `value` in a heatmap control and wait for the redrawn overlay (no change, no redraw).
async function choose(page, selector, value) {
  if ((await page.inputValue(selector)) === value) return;
  const n = await heatmaps(page);
  await page.selectOption(selector, value);
  await page.waitForFunction((n) => globalThis.ctxrHooks.heatmaps > n, n, { timeout: 120000 });
}

async function heatmapChecks(page, heatmapsBefore) {
  await page.waitForFunction((n) => globalThis.ctxrHooks.heatmaps > n, heatmapsBefore, { timeout: 120000 });
  const original = await canvasPixels(page, 'original');
  const overlays = [];
  for (const cls of ['0', '1']) {
    await choose(page, '#cam-class', cls);
    overlays.push(await canvasPixels(page, 'overlay'));
  }
  check(meanAbsDiff(original, overlays[0]) > 1, 'heatmap overlay is not empty (differs from the image)', `mean |Δ| ${meanAbsDiff(original, overlays[0])}`);
  check(meanAbsDiff(overlays[0], overlays[1]) > 0.5, 'heatmap differs between classes', `mean |Δ| ${meanAbsDiff(overlays[0], overlays[1]).toFixed(2)}`);
  const layers = [];
  for (const layer of ['1', '4']) {
    await choose(page, '#cam-layer', layer);
    layers.push(await canvasPixels(page, 'overlay'));
  }
  check(meanAbsDiff(layers[0], layers[1]) > 0.5, 'heatmap differs between a shallow and a deep layer');
}

// A folder of CT slices (a series): every file gets a row, the series gets a patient-level
// score (max and mean of P(covid)) with its top slices, and no request is made meanwhile.
async function seriesCheck(page, requests) {
  let dir = join(data, 'ct/decoder-samples/dicom-chest-ct');
  let model = 'auto';
  if (!haveData) {
    dir = mkdtempSync(join(tmpdir(), 'ctxr-series-'));
    syntheticSeries(dir, 4);
    model = 'ct';
  }
  const n = readdirSync(dir).filter((f) => statSync(join(dir, f)).isFile()).length;
  const done = await hook(page, 'done');
  await setModel(page, model);
  const nReq = requests.length;
  await page.setInputFiles('#folder', dir);
  await page.waitForFunction((want) => globalThis.ctxrHooks.done >= want, done + n, { timeout: 300000 });
  await setModel(page, 'auto');
  check(requests.length === nReq, `folder of ${n} files: no request while classifying`);
  const series = await page.evaluate(() => [...document.querySelectorAll('#series-list .series')].map((e) => ({
    slices: Number(e.dataset.slices), max: Number(e.dataset.max), mean: Number(e.dataset.mean), positive: e.dataset.positive, thumbs: e.querySelectorAll('canvas').length,
  })));
  const s = series[0];
  check(series.length === 1 && s.slices >= 2 && s.max >= s.mean && s.mean > 0 && s.thumbs === Math.min(5, s.slices),
    `folder gives one series score with its top slices (${s ? `${s.slices} slices, max ${s.max.toFixed(3)}, mean ${s.mean.toFixed(3)}` : 'none'})`, JSON.stringify(series));
  const ct = JSON.parse(readFileSync(join(www, 'weights', 'manifest.json'), 'utf8')).models.find((m) => m.id === 'ct');
  const want = ct?.operating_point?.positive_class;
  check(s && want && s.positive === want, `series scored on the decision rule's positive class (${s?.positive})`, `manifest says ${want}`);
  return n;
}

async function exportCsv(page, n) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
  const text = readFileSync(await download.path(), 'utf8');
  const lines = text.trim().split('\n');
  check(lines[0].startsWith('file,series,status,model,decision') && lines.length === n + 1, `CSV export has a header and ${n} rows`, `${lines.length - 1} rows: ${lines[0]}`);
  check(/,error,/.test(text) && /,refused,|,ok,/.test(text), 'CSV records errors and results');
}

// The generated hostile corpus (tests/corpus, written by `ctxr corpus`): every file gives its
// expected outcome — a typed error in plain words, or an image classified, refused with a
// reason or asked about — and after every bad file a valid one still classifies (the module survived).
async function corpusCheck(page, requests) {
  const dir = join(root, 'tests', 'corpus');
  if (!existsSync(join(dir, 'expected.json'))) {
    check(false, 'hostile corpus present', `${dir}/expected.json missing: run \`cargo run --release --bin ctxr -- corpus\` first`);
    return;
  }
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  const buf = (name) => ({ name, mimeType: 'application/octet-stream', buffer: readFileSync(join(dir, name)) });
  const valid = { label: 'valid CT DICOM', file: buf('ct-explicit-le.dcm'), expect: { model: 'ct' } };
  const bad = [];
  let good = 0;
  let survived = 0;
  const memory = async () => (await page.evaluate(() => globalThis.ctxrHooks.call('memory'))).wasm_bytes;
  const memStart = await memory();
  const growth = [];
  for (const e of expected) {
    const m0 = await memory();
    if (e.outcome === 'volume') {
      // A valid volume opens as a study of its size and is scored.
      const s = await dropStudy(page, buf(e.file));
      if (s.study && s.study.slices === e.slices && s.shown) good++; else bad.push(`${e.file}: expected a study of ${e.slices} slices, got ${JSON.stringify(s)}`);
      continue;
    }
    const r = await dropFile(page, buf(e.file));
    const grew = (await memory()) - m0;
    if (grew > 0) growth.push(`${e.file} +${(grew / 2 ** 20).toFixed(0)} MB`);
    if (e.outcome === 'error') {
      const plain = /^Could not read this file: [^{}]{10,}$/.test(r.message) && !/panicked|RuntimeError|unreachable/.test(r.message);
      if (r.kind === e.kind && plain) good++; else bad.push(`${e.file}: expected ${e.kind}, got ${r.kind || r.model || 'nothing'} "${r.message}"`);
      const v = await dropFile(page, valid.file);
      if (v.model === 'ct' && !v.refused) survived++; else bad.push(`valid DICOM after ${e.file}: ${JSON.stringify(v)}`);
    } else if ((r.model && !r.refused) || (r.refused && (r.message.length > 10 || (r.asked && r.gate)))) {
      good++;
    } else {
      bad.push(`${e.file}: expected an image, got ${JSON.stringify(r)}`);
    }
  }
  const nErr = expected.filter((e) => e.outcome === 'error').length;
  const nVol = expected.filter((e) => e.outcome === 'volume').length;
  check(good === expected.length, `hostile corpus: ${good}/${expected.length} files gave their expected outcome (${nErr} typed errors in plain words, ${nVol} volumes opened as studies, ${expected.length - nErr - nVol} images classified or refused)`, bad.join(' | '));
  const memEnd = await memory();
  console.log(`  wasm memory over the corpus: ${(memStart / 2 ** 20).toFixed(0)} → ${(memEnd / 2 ** 20).toFixed(0)} MB; grew on: ${growth.join(', ') || 'none'}`);
  // Budgets are enforced before allocation: no corpus file (bombs, lying lengths) may make the
  // module grow by more than a normal image needs (WebAssembly memory never shrinks).
  check(memEnd - memStart < 64 * 2 ** 20, `hostile corpus: wasm memory stays bounded (${(memStart / 2 ** 20).toFixed(0)} → ${(memEnd / 2 ** 20).toFixed(0)} MB)`, growth.join(', '));
  check(survived === nErr, `hostile corpus: a valid DICOM classified after each of the ${nErr} bad files (the module survived)`, `${survived}/${nErr}`);
}

// The result on screen: the model, the decision, whether the page asks which model should read
// it, the message shown and its error kind, the gate's reason.
function current(page) {
  return page.evaluate(() => {
    const cur = globalThis.ctxrHooks.current;
    const m = document.getElementById('message');
    return {
      model: cur?.model ?? null, refused: cur?.refused ?? null, asked: cur?.asked ?? null, label: cur?.label ?? null, probabilities: cur?.probabilities ?? null,
      message: m.hidden ? '' : m.textContent, kind: m.hidden ? '' : m.dataset.kind, gate: cur?.gate ?? null,
    };
  });
}

// Files dropped one by one in this browser context (each is a row of the table and the CSV).
const dropped = new WeakMap();

// Drop one file on the page and wait for its result.
async function dropFile(page, f) {
  const before = await hook(page, 'results');
  await page.setInputFiles('#files', f);
  dropped.set(page, (dropped.get(page) || 0) + 1);
  await page.waitForFunction((n) => globalThis.ctxrHooks.results > n, before, { timeout: 120000 });
  return current(page);
}

// Drop one volume file (or a folder, with `folder`) and wait until its studies are scored.
async function dropStudy(page, f, { folder = false, studies = 1 } = {}) {
  const before = await hook(page, 'studies');
  await page.setInputFiles(folder ? '#folder' : '#files', f);
  dropped.set(page, (dropped.get(page) || 0) + studies);
  await page.waitForFunction((n) => globalThis.ctxrHooks.studies >= n, before + studies, { timeout: 300000 });
  return page.evaluate(() => ({ study: globalThis.ctxrHooks.study, shown: !document.getElementById('study').hidden }));
}

// The model for every file ('auto': the gate decides per file). A new choice re-runs the file on
// screen (when one is), so wait for that result before anything else.
async function setModel(page, value) {
  if ((await page.inputValue('#model')) === value) return;
  const shown = await hook(page, 'current');
  const n = await hook(page, 'results');
  await page.selectOption('#model', value);
  if (shown) await page.waitForFunction((n) => globalThis.ctxrHooks.results > n, n, { timeout: 120000 });
}

const sameProbabilities = (a, b) => !!a && !!b && a.length === b.length && a.every((p, i) => p === b[i]);

// An image the gate is unsure about gets a question, never a result of either model; the answer
// ("read this file as …") applies to that file alone.
async function askedCheck(page, c, r) {
  const shown = await page.evaluate(() => ({
    ask: !document.getElementById('ask').hidden, text: document.getElementById('ask-text').textContent, prediction: !document.getElementById('prediction').hidden,
  }));
  check(r.refused === true && r.asked === true && r.model === null && !r.probabilities && shown.ask && !shown.prediction && /not sure/.test(shown.text),
    `${c.label}: asked which model should read it, no result shown (${r.gate})`, JSON.stringify({ r, shown }));
  const n = await hook(page, 'results');
  await page.click(`#read-as-${c.expect.asked}`);
  await page.waitForFunction((n) => globalThis.ctxrHooks.results > n, n, { timeout: 120000 });
  const a = await current(page);
  const words = await page.evaluate(() => document.getElementById('model-read').textContent);
  check(a.model === c.expect.asked && !a.refused && /chosen by you for this file/.test(words), `${c.label}: "read this file as" gives the ${c.expect.asked} model's result (${words})`, JSON.stringify(a));
  if (a.model === c.expect.asked) sameAsCli({ ...c, model: c.expect.asked }, a);
  check((await page.inputValue('#model')) === 'auto' && (await page.isHidden('#override')), `${c.label}: the choice was for this file only (the gate still decides for the next)`);
}

// A result says which model read it and who chose it, states the decision against the alert
// threshold drawn on the positive class's bar, lists the model's measured cautions, and (with a
// heatmap) shows a colour bar and what the map means.
const MODEL_WORDS = { ct: 'chest CT model', cxr: 'chest X-ray model' };
async function resultWords(page, c, r) {
  const v = await page.evaluate(() => {
    const scale = document.getElementById('cam-scale');
    const px = scale.getContext('2d').getImageData(0, 0, scale.width, 1).data;
    const colours = new Set();
    for (let i = 0; i < px.length; i += 4) colours.add(`${px[i]},${px[i + 1]},${px[i + 2]}`);
    return {
      read: document.getElementById('model-read').textContent,
      decision: document.getElementById('decision').textContent,
      rule: document.getElementById('decision-rule').textContent,
      ticks: document.querySelectorAll('#bars .bar[data-threshold] .threshold').length,
      cautions: [...document.querySelectorAll('#cautions li')].map((li) => li.textContent),
      help: !document.getElementById('cam-help').hidden,
      scaleColours: colours.size,
    };
  });
  check(v.read.startsWith(`Read by the ${MODEL_WORDS[r.model]}`) && /chosen by (the input gate|you)/.test(v.read), `${c.label}: says which model read it and who chose it (${v.read})`, JSON.stringify(v));
  check(v.ticks === 1 && /^P\(\w+\) [\d.]+ is (at or above|below) the \w+ alert threshold [\d.]+, chosen for \d+ % sensitivity/.test(v.rule) && v.decision.length > 3,
    `${c.label}: the decision in words against the threshold drawn on the bar (${v.decision}; ${v.rule})`, JSON.stringify(v));
  check(v.cautions.length >= 1 && /^AUC [\d.]+ /.test(v.cautions[0]), `${c.label}: the model's measured cautions (${v.cautions.join(' ')})`, JSON.stringify(v.cautions));
  if (c.heatmap) check(v.help && v.scaleColours > 8, `${c.label}: a colour bar (${v.scaleColours} colours) and what the heatmap shows`, JSON.stringify(v));
}

// A model chosen for every file: a loud banner, the file on screen re-run at once, and the gate's
// colour rule still on (the cat is refused, never classified).
async function handChoiceChecks(page, list) {
  const xray = list.find((c) => c.expect.model === 'cxr');
  const photo = list.find((c) => c.expect.refused);
  if (!xray || !photo) { console.log('  SKIPPED hand-choice checks: no X-ray case without ../shared/data'); return; }
  const a = await dropFile(page, xray.file);
  await setModel(page, 'ct');
  const b = await current(page);
  const banner = await page.evaluate(() => ({ shown: !document.getElementById('override').hidden, text: document.getElementById('override').textContent }));
  check(a.model === 'cxr' && b.model === 'ct' && banner.shown && /every file/i.test(banner.text) && /still refused/.test(banner.text),
    `choosing a model for every file re-runs the file on screen (${a.model} → ${b.model}) under a banner`, JSON.stringify({ a, b, banner }));
  await setModel(page, 'cxr');
  const cat = await dropFile(page, photo.file);
  const ask = await page.isVisible('#ask');
  check(cat.refused === true && cat.model === null && !cat.probabilities && !ask && /colour/.test(cat.message),
    `${photo.label} after choosing the X-ray model for every file: refused, not classified (${cat.message})`, JSON.stringify({ cat, ask }));
  await setModel(page, 'auto');
  check((await page.isHidden('#override')) && (await current(page)).refused === true, 'back to "detected per file": the banner goes, the photo is still refused');
}

// Window/level is a display control: a preset redraws the image, never the result; a teaching
// one-off is recorded apart; the same file again, and the next file, get the trained input.
async function windowChecks(page, list) {
  const hu = list.filter((c) => c.expect.model === 'ct' && /\.(dcm|tif)$/.test(c.file.name));
  if (hu.length < 2) { console.log('  SKIPPED window checks: fewer than two Hounsfield images'); return; }
  const [first, next] = hu;
  const a = await dropFile(page, first.file);
  const k = await hook(page, 'constants');
  const preset = k.window_presets.find((p) => p.id !== 'lung') || k.window_presets[0];
  const before = await canvasPixels(page, 'original');
  const d = await hook(page, 'displays');
  await page.selectOption('#window-preset', preset.id);
  await page.waitForFunction((d) => globalThis.ctxrHooks.displays > d, d, { timeout: 120000 });
  const shown = await current(page);
  const redrawn = meanAbsDiff(before, await canvasPixels(page, 'original'));
  check(redrawn > 1 && sameProbabilities(a.probabilities, shown.probabilities),
    `${first.label}: the ${preset.id} preset redraws the image (mean |Δ| ${redrawn.toFixed(1)}) and leaves the result as it was`, JSON.stringify({ a: a.probabilities, shown: shown.probabilities }));
  await page.click('#try-window');
  await page.waitForFunction(() => /^One-off|^Could not/.test(document.getElementById('window-trial').textContent), null, { timeout: 120000 });
  const trial = await page.evaluate(() => ({ text: document.getElementById('window-trial').textContent, row: [...document.querySelectorAll('#batch-table tbody tr')].pop()?.textContent || '' }));
  check(/^One-off with W .* not trained on/.test(trial.text) && /teaching window trial/.test(trial.row) && sameProbabilities(a.probabilities, (await current(page)).probabilities),
    `${first.label}: a teaching one-off is labelled, recorded in the table, and does not replace the result`, JSON.stringify(trial));
  const again = await dropFile(page, first.file);
  check(sameProbabilities(a.probabilities, again.probabilities) && (await page.inputValue('#window-preset')) === 'auto',
    `${first.label}: the same file again after window/level play gives identical probabilities (the preset is not carried)`, JSON.stringify({ a: a.probabilities, again: again.probabilities }));
  await page.selectOption('#window-preset', preset.id);
  const r = await dropFile(page, next.file);
  check(r.model === 'ct' && (await page.inputValue('#window-preset')) === 'auto', `${next.label}: the next file starts from the model's window`);
  sameAsCli({ ...next, label: `${next.label} after a preset` }, r);
}

// The exported overlay PNG carries what it shows: a caption band and a tEXt chunk "ctxr" with the
// file, model, decision, probabilities, class and layer.
function pngText(buf) {
  const out = {};
  for (let i = 8; i + 8 <= buf.length;) {
    const len = buf.readUInt32BE(i);
    const type = buf.toString('latin1', i + 4, i + 8);
    if (type === 'tEXt') {
      const body = buf.subarray(i + 8, i + 8 + len);
      const z = body.indexOf(0);
      out[body.toString('latin1', 0, z)] = body.toString('latin1', z + 1);
    }
    i += 12 + len;
  }
  return out;
}

async function exportPngCheck(page, c) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const buf = readFileSync(await download.path());
  const cur = await current(page);
  let stamp = null;
  try { stamp = JSON.parse(pngText(buf).ctxr || 'null'); } catch { /* checked below */ }
  const probs = stamp ? Object.values(stamp.probabilities || {}) : [];
  const layer = await page.evaluate(() => document.getElementById('cam-layer').selectedOptions[0]?.textContent);
  check(buf.subarray(1, 4).toString() === 'PNG' && stamp && stamp.file === c.file.name && /CT/.test(stamp.model) && stamp.decision && stamp.gradcam_class && stamp.gradcam_layer === layer
    && probs.length === cur.probabilities.length && probs.every((p, i) => Math.abs(p - cur.probabilities[i]) < 1e-4),
    `exported overlay PNG (${download.suggestedFilename()}) is stamped with file, model, decision, probabilities, class and layer`, JSON.stringify(stamp));
}

// Clear empties the table, the queue and the result panel, and says so; `file` is dropped and
// cleared at once.
async function clearCheck(page, file) {
  await page.click('#clear');
  const left = await page.evaluate(() => ({
    result: !document.getElementById('result').hidden,
    batch: !document.getElementById('batch').hidden,
    rows: document.querySelectorAll('#batch-table tbody tr').length,
    canvases: ['original', 'seen', 'overlay'].map((id) => document.getElementById(id).width).reduce((a, b) => a + b, 0),
    current: globalThis.ctxrHooks.current,
    said: document.getElementById('cleared').textContent,
  }));
  check(!left.result && !left.batch && left.rows === 0 && left.canvases === 0 && left.current === null && /^Cleared: \d+ files? /.test(left.said),
    `Clear leaves nothing on screen (${left.said})`, JSON.stringify(left));
  // Cleared while a file is being read: its result never appears. The file is given and Clear
  // clicked in one task of the page, after the change handler has started reading it, so that
  // the reply cannot arrive in between (with two steps from here, a fast engine could finish
  // the file first).
  const results = await hook(page, 'results');
  const reading = await page.evaluate(({ name, bytes }) => {
    const given = new DataTransfer();
    given.items.add(new File([new Uint8Array(bytes)], name));
    const input = document.getElementById('files');
    input.files = given.files;
    input.dispatchEvent(new Event('change', { bubbles: true }));
    const state = globalThis.ctxrHooks.state;
    document.getElementById('clear').click();
    return state;
  }, { name: file.name, bytes: [...file.buffer] });
  check(reading === 'busy', 'the file given before Clear was being read when Clear was clicked', reading);
  await page.waitForFunction(() => globalThis.ctxrHooks.state === 'ready', null, { timeout: 120000 });
  await page.waitForTimeout(1000);
  const after = await page.evaluate(() => ({ result: !document.getElementById('result').hidden, batch: !document.getElementById('batch').hidden, current: globalThis.ctxrHooks.current }));
  check(!after.result && !after.batch && after.current === null && (await hook(page, 'results')) === results, 'Clear while a file is being read: its result never appears', JSON.stringify(after));
  dropped.set(page, 0);
}

// axe-core (npm) injected into the page (through the debugger protocol: the page's CSP allows no
// inline script): zero violations of any impact, with a result, its heatmap and the table shown.
const axeSource = (() => {
  const p = join(root, 'node_modules', 'axe-core', 'axe.min.js');
  return existsSync(p) ? readFileSync(p, 'utf8') : null;
})();
async function axeCheck(page, what) {
  if (!axeSource) { check(false, `axe-core audit (${what})`, 'node_modules/axe-core missing: run ./build.sh test'); return; }
  if (!(await page.evaluate(() => typeof globalThis.axe === 'object'))) await page.evaluate(`${axeSource}\n;0`);
  const v = await page.evaluate(async () => (await globalThis.axe.run(document, { resultTypes: ['violations'] })).violations
    .map((x) => `${x.id} (${x.impact}): ${x.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`));
  check(v.length === 0, `axe-core: 0 accessibility violations of any impact (${what})`, v.join(' | '));
}

// WebGPU asked for where there is none: the engine starts on the CPU, says so in one sentence,
// and a file gets its result (nothing stays queued).
async function forcedWebgpuCheck(origin, c) {
  console.log('\n# backend: webgpu asked for, no adapter');
  const profile = mkdtempSync(join(tmpdir(), 'ctxr-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, headless: true, args: BACKENDS.cpu });
  try {
    const page = context.pages()[0] || (await context.newPage());
    await page.goto(`${origin}index.html?backend=webgpu`);
    await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const s = await page.evaluate(() => ({ state: globalThis.ctxrHooks.state, backend: globalThis.ctxrHooks.backend, how: document.getElementById('backend-how').textContent }));
    check(s.state === 'ready' && s.backend === 'cpu' && /^\(You asked for WebGPU, but it is not available[^.]*, so the CPU runs the models\)$/.test(s.how),
      `forced WebGPU without an adapter: the CPU runs the models, said in one sentence (${s.how})`, JSON.stringify(s));
    if (c.model) await setModel(page, c.model);
    const r = await dropFile(page, c.file);
    const text = await page.evaluate(() => document.getElementById('batch-text').textContent);
    check(r.model === 'ct' && r.probabilities && /^1 of 1 done/.test(text), `forced WebGPU without an adapter: ${c.label} gets a CPU result (${text})`, JSON.stringify(r));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

// Resident memory (kB) of all Chromium processes together.
function chromiumRssKb() {
  try {
    return execSync('ps -eo rss=,comm=', { encoding: 'utf8' }).split('\n')
      .filter((l) => /chrom/i.test(l)).reduce((s, l) => s + (parseInt(l, 10) || 0), 0);
  } catch { return 0; }
}

// A 300-slice folder (512² 16-bit TIFF, HU + 1024, 150 MB) is read one file at a time with
// bounded memory: prints the wasm module's peak linear memory and Chromium's peak RSS.
async function bigFolderCheck(page, numbers) {
  const n = 300;
  const dir = mkdtempSync(join(tmpdir(), 'ctxr-300-'));
  const hu = phantomHu(512);
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `slice-${String(i).padStart(3, '0')}.tif`), tiff16(512, 512, Array.from(hu, (v) => v + 1024 + (i % 7))));
  const done = await hook(page, 'done');
  const memBefore = await page.evaluate(() => globalThis.ctxrHooks.call('memory'));
  await setModel(page, 'ct');
  let peakRss = chromiumRssKb();
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, chromiumRssKb()); }, 250);
  const t0 = Date.now();
  try {
    await page.setInputFiles('#folder', dir);
    await page.waitForFunction((want) => globalThis.ctxrHooks.done >= want, done + n, { timeout: 600000, polling: 500 });
  } finally {
    clearInterval(sampler);
    await setModel(page, 'auto');
    rmSync(dir, { recursive: true, force: true });
  }
  const memAfter = await page.evaluate(() => globalThis.ctxrHooks.call('memory'));
  const mb = (b) => (b / 2 ** 20).toFixed(1);
  numbers.folder_300_seconds = (Date.now() - t0) / 1000;
  numbers.folder_300_wasm_peak_mb = Number(mb(memAfter.wasm_bytes));
  numbers.folder_300_chromium_peak_rss_mb = Number(mb(peakRss * 1024));
  console.log(`  300-slice folder (150 MB): ${numbers.folder_300_seconds.toFixed(1)} s; wasm memory ${mb(memBefore.wasm_bytes)} → ${mb(memAfter.wasm_bytes)} MB; Chromium peak RSS ${mb(peakRss * 1024)} MB`);
  // One file at a time: the module's memory must stay far below the folder's size.
  check(memAfter.wasm_bytes - memBefore.wasm_bytes < 64 * 2 ** 20, `300-slice folder read one file at a time: wasm memory ${mb(memBefore.wasm_bytes)} → ${mb(memAfter.wasm_bytes)} MB for 150 MB of files`);
}

// The study on screen, and whether its view, reformats and strip plot are drawn.
function studyState(page) {
  return page.evaluate(() => {
    // The spread of grey levels drawn (0: blank or uniform).
    const lit = (id) => {
      const c = document.getElementById(id);
      if (!c.width || !c.height) return 0;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      let sq = 0;
      for (let i = 0; i < d.length; i += 4) { sum += d[i]; sq += d[i] * d[i]; }
      const n = d.length / 4;
      return Math.sqrt(Math.max(0, sq / n - (sum / n) ** 2));
    };
    const h = globalThis.ctxrHooks;
    return {
      ...h.study, views: h.studyViews, heatmaps: h.heatmaps, shown: !document.getElementById('study').hidden,
      axial: lit('study-axial'), coronal: lit('study-coronal'), sagittal: lit('study-sagittal'),
      top: document.querySelectorAll('#study-top button').length,
      aside: document.getElementById('study-aside').textContent, text: document.getElementById('study-score-text').textContent,
    };
  });
}

async function waitSlice(page, k) {
  await page.waitForFunction((want) => globalThis.ctxrHooks.study?.k === want, k, { timeout: 60000 });
}

// CT studies: a generated NIfTI volume (.nii.gz) and a generated DICOM series folder (with a
// localiser, file names in no anatomical order) open in the study view, are scored on their
// lung-level slices, and the viewer scrolls (keys, wheel, slider, strip plot, reformats),
// draws its strip plot and a Grad-CAM on demand, with no request made.
async function studyCheck(page, requests, numbers) {
  const size = 256;
  const slices = 60;
  const [lungFrom, lungTo] = [12, 47];
  const nii = niftiGz(size, slices, phantomStudy(size, slices, lungFrom, lungTo));
  const nReq = requests.length;
  const mem0 = (await page.evaluate(() => globalThis.ctxrHooks.call('memory'))).wasm_bytes;
  const t0 = Date.now();
  let s = await dropStudy(page, { name: 'phantom-study.nii.gz', mimeType: 'application/gzip', buffer: nii });
  numbers.study_nifti_open_and_score_ms = Date.now() - t0;
  s = { ...s, ...(await studyState(page)) };
  const ok = s.shown && s.slices === slices && s.score !== null && s.score >= 0 && s.score <= 1 && s.classified > 0;
  check(ok, `a .nii.gz opens as a study of ${slices} slices and is scored (score ${s.score?.toFixed(3)}, ${s.classified} slices classified, lung-level ${s.lungRange?.join('–')})`, JSON.stringify(s));
  check(s.lungRange && s.lungRange[0] >= lungFrom && s.lungRange[1] <= lungTo && s.classified <= lungTo - lungFrom + 1,
    `only slices through the lungs are classified (lungs on ${lungFrom}–${lungTo}; classified ${s.lungRange?.join('–')})`, JSON.stringify(s.lungRange));
  check(s.stripPoints === s.classified && s.top === Math.min(5, s.classified), `the strip plot draws every classified slice (${s.stripPoints}) and the top slices are listed (${s.top})`);
  check(s.axial > 10 && s.coronal > 10 && s.sagittal > 10, `axial, coronal and sagittal views are drawn (grey-level spread ${[s.axial, s.coronal, s.sagittal].map((x) => x.toFixed(0)).join(', ')})`);
  numbers.study_slices_per_s = Number((s.classified / (s.ms / 1000)).toFixed(1));
  // Scrolling: keys, wheel, slider, a click on the strip plot and on a reformat.
  const k0 = s.k;
  await page.focus('#study-axial');
  for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowDown');
  await waitSlice(page, k0 + 3);
  await page.keyboard.press('Home');
  await waitSlice(page, 0);
  const box = await page.locator('#study-axial').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 100);
  await waitSlice(page, 1);
  await page.evaluate(() => { const r = document.getElementById('study-slice'); r.value = '30'; r.dispatchEvent(new Event('input', { bubbles: true })); });
  await waitSlice(page, 30);
  // A click at a position inside the element (Playwright scrolls it into view first).
  const clickAt = async (id, fx, fy) => {
    const el = page.locator(id);
    await el.scrollIntoViewIfNeeded();
    const b = await el.boundingBox();
    await el.click({ position: { x: b.width * fx, y: b.height * fy } });
  };
  await clickAt('#study-strip', (50 + 0.5) / slices, 0.5);
  await waitSlice(page, 50);
  await clickAt('#study-coronal', 0.5, (20 + 0.5) / slices);
  await waitSlice(page, 20);
  check(true, 'the viewer scrolls with the arrow keys, Home, the wheel, the slider, a click on the strip plot and on the coronal reformat');
  // Grad-CAM of the shown slice, on demand.
  const before = (await studyState(page)).heatmaps;
  await page.click('#study-explain');
  await page.waitForFunction((n) => globalThis.ctxrHooks.heatmaps > n && globalThis.ctxrHooks.study?.heatOf === 20, before, { timeout: 120000 });
  const cam = await page.evaluate(() => document.getElementById('study-explain-text').textContent);
  mkdirSync(out, { recursive: true });
  const backend = await hook(page, 'backend');
  await page.locator('#study').screenshot({ path: join(out, `study-${backend}.png`) });
  // The README's picture of the study view (a generated phantom, so the same on every clone).
  if (backend === 'cpu') await page.locator('#study').screenshot({ path: join(root, 'docs', 'study.png') });
  check(/^Slice 21 read alone: P\(\w+\) [01]\.\d{3}\. Grad-CAM/.test(cam), `Grad-CAM of the shown slice on demand: "${cam.slice(0, 60)}…"`, cam);
  // A DICOM series folder with a localiser.
  const dir = mkdtempSync(join(tmpdir(), 'ctxr-dicom-study-'));
  const series = join(dir, 'phantom-series');
  mkdirSync(series);
  const n = dicomStudyFolder(series, 192, 40, 8, 31);
  try {
    const d = { ...(await dropStudy(page, series, { folder: true })), ...(await studyState(page)) };
    check(d.shown && d.slices === n && d.score !== null && d.lungRange && d.lungRange[0] >= 8 && d.lungRange[1] <= 31,
      `a DICOM series folder (shuffled names) opens as a study of ${n} slices, scored on slices ${d.lungRange?.join('–')} (score ${d.score?.toFixed(3)})`, JSON.stringify(d));
    check(/1 file set aside: SCOUT0001 \(a localiser/.test(d.aside), `its localiser is set aside and said so ("${d.aside}")`, d.aside);
    // Slices per forward pass: the same study scored again at each batch size (the page uses 16).
    const rates = [];
    for (const batch of [1, 4, 16, 32]) {
      const r = await page.evaluate((b) => globalThis.ctxrHooks.call('score_study', { index: 0, batch: b }), batch);
      rates.push(`${batch}: ${(r.classified / (r.ms / 1000)).toFixed(1)}`);
      numbers[`study_slices_per_s_batch_${batch}`] = Number((r.classified / (r.ms / 1000)).toFixed(1));
      check(r.study_score !== null && Math.abs(r.study_score - d.score) < 1e-4, `batch ${batch} gives the same study score (${r.study_score?.toFixed(4)})`, JSON.stringify(r.study_score));
    }
    console.log(`  slices/s by batch size (192², lung measure included): ${rates.join(', ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const mem1 = (await page.evaluate(() => globalThis.ctxrHooks.call('memory'))).wasm_bytes;
  check(requests.length === nReq, `no request while opening, scoring, scrolling and explaining studies (${requests.length - nReq})`, requests.slice(nReq).map((r) => r.url).join(' '));
  console.log(`  study of ${slices} slices (${size}²): opened and scored in ${(numbers.study_nifti_open_and_score_ms / 1000).toFixed(1)} s, ${numbers.study_slices_per_s} slices/s; wasm memory ${(mem0 / 2 ** 20).toFixed(0)} → ${(mem1 / 2 ** 20).toFixed(0)} MB`);
}

// A big 512² study (as a .nii.gz): time to its score, slices/s and the module's memory, which
// must stay under 600 MB for a 600-slice study (one i16 volume, never an f32 copy per slice);
// the viewer must scroll while it is being scored.
async function bigStudyCheck(page, numbers, slices) {
  const size = 512;
  const nii = niftiGz(size, slices, phantomStudy(size, slices, Math.round(slices * 0.13), Math.round(slices * 0.86)));
  const t0 = Date.now();
  const before = await hook(page, 'studies');
  await page.setInputFiles('#files', { name: `study-${slices}.nii.gz`, mimeType: 'application/gzip', buffer: nii });
  dropped.set(page, (dropped.get(page) || 0) + 1);
  // The viewer scrolls while the study is being scored (the worker shows slices between steps).
  await page.waitForFunction(() => /^Scoring: \d+ of/.test(document.getElementById('study-progress').textContent) && globalThis.ctxrHooks.study, null, { timeout: 300000 });
  const k = (await hook(page, 'study')).k;
  await page.focus('#study-axial');
  await page.keyboard.press('ArrowDown');
  await page.waitForFunction((want) => globalThis.ctxrHooks.study?.k === want, k + 1, { timeout: 60000 });
  const during = await page.evaluate(() => ({ score: globalThis.ctxrHooks.study.score, progress: document.getElementById('study-progress').textContent }));
  check(during.score === null, `${slices}-slice study: the viewer scrolls while it is being scored (slice ${k + 1} → ${k + 2} during "${during.progress}")`, JSON.stringify(during));
  await page.waitForFunction((n) => globalThis.ctxrHooks.studies > n, before, { timeout: 600000 });
  const s = await studyState(page);
  const mem = (await page.evaluate(() => globalThis.ctxrHooks.call('memory'))).wasm_bytes;
  const key = `study_${slices}`;
  numbers[`${key}_to_score_s`] = (Date.now() - t0) / 1000;
  numbers[`${key}_slices_per_s`] = Number((s.classified / (s.ms / 1000)).toFixed(1));
  numbers[`${key}_wasm_mb`] = Number((mem / 2 ** 20).toFixed(0));
  console.log(`  ${slices}-slice 512² study (${(nii.length / 2 ** 20).toFixed(1)} MB .nii.gz, ${(size * size * slices * 2 / 2 ** 20).toFixed(0)} MB of voxels): score after ${numbers[`${key}_to_score_s`].toFixed(1)} s; ${s.classified} slices classified at ${numbers[`${key}_slices_per_s`]} slices/s (lung measure included); wasm memory ${numbers[`${key}_wasm_mb`]} MB`);
  check(s.slices === slices && s.score !== null, `a ${slices}-slice 512² study is scored (${s.classified} lung-level slices)`, JSON.stringify(s));
  check(mem < 600 * 2 ** 20, `${slices}-slice study: the module's memory stays under 600 MB (${numbers[`${key}_wasm_mb`]} MB)`);
}

function sizes() {
  const wasm = readFileSync(join(www, 'pkg', 'ctxr_bg.wasm'));
  const cpu = readFileSync(join(www, 'pkg', 'ctxr_cpu_bg.wasm'));
  const threads = readFileSync(join(www, 'pkg', 'ctxr_threads_bg.wasm'));
  const js = readFileSync(join(www, 'pkg', 'ctxr.js'));
  const weights = readdirSync(join(www, 'weights')).map((f) => readFileSync(join(www, 'weights', f)));
  const w = Buffer.concat(weights);
  return {
    wasm: wasm.length, wasm_gzip: gzipSync(wasm, { level: 9 }).length, cpu_wasm: cpu.length, cpu_wasm_gzip: gzipSync(cpu, { level: 9 }).length,
    threads_wasm: threads.length, threads_wasm_gzip: gzipSync(threads, { level: 9 }).length,
    glue_js: js.length, weights: w.length, weights_gzip: gzipSync(w, { level: 9 }).length,
  };
}

// A small labelled CT set from a hospital the shipped model never trained on (MosMed, one
// slice per patient): `n` COVID-19 and `n` non-COVID slices, as a CSV of file names for the
// page and one of absolute paths for the CLI.
function labelledSet(n) {
  const rows = readFileSync(join(data, 'ct', 'manifest.csv'), 'utf8').split('\n').slice(1).map((l) => l.split(',')).filter((f) => f[2] === 'mosmed');
  const pick = (label) => rows.filter((f) => f[1] === label).map((f) => f[0]).sort().slice(0, n);
  const files = [...pick('covid').map((p) => [p, 'covid']), ...pick('noncovid').map((p) => [p, 'noncovid'])];
  const dir = mkdtempSync(join(tmpdir(), 'ctxr-labelled-'));
  const group = (p) => p.split('/').pop().replace(/\.\w+$/, '');
  writeFileSync(join(dir, 'labels.csv'), `file,label,group\n${files.map(([p, l]) => `${p.split('/').pop()},${l},${group(p)}`).join('\n')}\n`);
  writeFileSync(join(dir, 'cli.csv'), `file,label,group\n${files.map(([p, l]) => `${join(data, 'ct', p)},${l},${group(p)}`).join('\n')}\n`);
  return { dir, csv: join(dir, 'labels.csv'), cliCsv: join(dir, 'cli.csv'), images: files.map(([p]) => join(data, 'ct', p)) };
}

// Evaluate and adapt on the user's own labelled images (issue 12): the page measures the CT
// model on a labelled set exactly as `ctxr eval --labelled` does (AUC within 1e-3), draws the
// ROC and moves the threshold; adapts (a cancel mid-epoch leaves the model unchanged; a
// finished run reports the cross-validated AUC before and after); saves the model to files and
// to IndexedDB; after a reload, the kept model is used again and classifies as the CLI does with
// the saved files. No request is made from choosing the data to the end.
async function labelledCheck(page, requests, backend, numbers) {
  if (!haveData) { console.log('SKIPPED labelled-set checks: they need ../shared/data'); return; }
  const set = labelledSet(8);
  const nReq = requests.length;
  try {
    // Wrong inputs, answered in words: one class only (and a row naming a missing file), then
    // three images, too few to adapt with three folds.
    const answered = async (files, after) => {
      const before = await page.evaluate(() => document.getElementById('own-progress').textContent);
      await page.setInputFiles('#own-files', files);
      await page.waitForFunction((b) => !document.getElementById('own-message').hidden || (document.getElementById('own-progress').textContent !== b && /^Measured/.test(document.getElementById('own-progress').textContent)), before, { timeout: 120000 });
      if (after) await after();
      return page.evaluate(() => ({ message: document.getElementById('own-message').hidden ? '' : document.getElementById('own-message').textContent, aside: document.getElementById('own-aside').textContent, adapt: document.getElementById('own-adapt-result').textContent }));
    };
    writeFileSync(join(set.dir, 'one-class.csv'), `file,label\n${set.images.slice(0, 3).map((p) => `${p.split('/').pop()},covid`).join('\n')}\nnot-here.png,covid\n`);
    const one = await answered([join(set.dir, 'one-class.csv'), ...set.images.slice(0, 3)]);
    check(/every usable file is labelled 'covid'/.test(one.message), `one class only: "${one.message}"`, JSON.stringify(one));
    writeFileSync(join(set.dir, 'three.csv'), `file,label\n${set.images.slice(0, 2).map((p) => `${p.split('/').pop()},covid`).join('\n')}\n${set.images.at(-1).split('/').pop()},noncovid\nnot-here.png,covid\nx.png,pneumonia\n`);
    const three = await answered([join(set.dir, 'three.csv'), ...set.images.slice(0, 2), set.images.at(-1)], async () => {
      await page.fill('#own-folds', '3');
      await page.click('#own-adapt-start');
      await page.waitForFunction(() => ['failed', 'done', 'cancelled'].includes(globalThis.ctxrHooks.adapt?.stage), null, { timeout: 60000 });
    });
    check(/not there/.test(three.aside) && /'pneumonia' is not one of the model's classes/.test(three.aside) && /too few to split 3 ways/.test(three.adapt),
      `a missing file and an unknown label are set aside in words; 3 images are refused for adapting: "${three.adapt}"`, JSON.stringify(three));
    await page.setInputFiles('#own-files', [set.csv, ...set.images]);
    await page.waitForFunction((n) => globalThis.ctxrHooks.labelled?.n === n, set.images.length, { timeout: 600000 });
    const got = await hook(page, 'labelled');
    const shown = await page.evaluate(() => ({
      summary: document.getElementById('own-summary').textContent,
      roc: (document.getElementById('own-roc-curve')?.getAttribute('points') || '').trim().split(/\s+/).length,
    }));
    const cliJson = join(set.dir, 'cli.json');
    execFileSync(cli, ['eval', '--model', 'ct', '--weights', join(www, 'weights'), '--labelled', set.cliCsv, '--json', cliJson], { encoding: 'utf8' });
    const native = JSON.parse(readFileSync(cliJson, 'utf8'));
    const nativeAuc = native.assessment.report.auc;
    numbers.labelled_ms = got.ms;
    check(got.n === native.files.length && Math.abs(got.auc - nativeAuc) <= 1e-3,
      `labelled set (${got.n} MosMed slices) measured in ${(got.ms / 1000).toFixed(1)} s: AUC ${got.auc?.toFixed(4)}, the CLI's ${nativeAuc?.toFixed(4)} (within 1e-3)`, JSON.stringify({ got, native: native.assessment.auc_ci }));
    check(shown.roc > 2 && /AUC \d\.\d{3}, 95 % CI \d\.\d{3}–\d\.\d{3}/.test(shown.summary), `the ROC curve is drawn (${shown.roc} points) and the AUC shown with its interval`, JSON.stringify(shown));
    // The threshold slider: the confusion at 0.9 counts every image.
    await page.evaluate(() => { const r = document.getElementById('own-threshold'); r.value = '0.9'; r.dispatchEvent(new Event('input', { bubbles: true })); });
    await page.waitForFunction(() => document.getElementById('own-threshold-out').textContent === '0.900', null, { timeout: 30000 });
    const cells = await page.evaluate(() => [...document.querySelectorAll('#own-at > :first-child table tbody td')].map((td) => Number(td.textContent)));
    check(cells.reduce((a, b) => a + b, 0) === got.n, `the confusion at a moved threshold (0.900) counts all ${got.n} images`, JSON.stringify(cells));
    // The CSV export: a row per image with its probabilities and the decision at the threshold shown.
    const [csvDownload] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), page.click('#own-csv')]);
    const csvPath = join(set.dir, 'export.csv');
    await csvDownload.saveAs(csvPath);
    const csvLines = readFileSync(csvPath, 'utf8').trim().split('\n');
    const decidedCovid = csvLines.slice(1).filter((l) => l.split(',').at(-2) === 'covid').length;
    check(csvLines[0] === 'file,label,p_noncovid,p_covid,decided,threshold' && csvLines.length === got.n + 1 && decidedCovid === cells[1] + cells[3],
      `the CSV export has a row per image, decided at the threshold shown (${decidedCovid} called covid, as the confusion says)`, csvLines.slice(0, 3).join(' | '));
    // A worst-classified file opens in the viewer with its Grad-CAM.
    const [results0, heat0] = [await hook(page, 'results'), await heatmaps(page)];
    const worstName = await page.textContent('#own-worst li button');
    await page.click('#own-worst li button');
    await page.waitForFunction(([r, h]) => globalThis.ctxrHooks.results > r && globalThis.ctxrHooks.heatmaps > h && globalThis.ctxrHooks.heatmapOf === globalThis.ctxrHooks.results, [results0, heat0], { timeout: 120000 });
    const opened = await page.evaluate(() => ({ file: document.getElementById('result-file').textContent, model: globalThis.ctxrHooks.current?.model }));
    check(opened.file.includes(worstName) && opened.model === 'ct', `the worst-classified file ${worstName} opens with its Grad-CAM, read by the CT model`, JSON.stringify(opened));
    // Cancel mid-epoch: the model in use stays the shipped one.
    await page.fill('#own-epochs', '2');
    await page.fill('#own-folds', '3');
    await page.click('#own-adapt-start');
    await page.waitForFunction(() => globalThis.ctxrHooks.adapt?.stage === 'step', null, { timeout: 600000 });
    await page.click('#own-adapt-cancel');
    await page.waitForFunction(() => ['cancelled', 'done', 'failed'].includes(globalThis.ctxrHooks.adapt?.stage), null, { timeout: 120000 });
    check((await hook(page, 'adapt')).stage === 'cancelled' && (await hook(page, 'adapted')) === null, 'an adaptation cancelled mid-epoch stops, and the shipped model stays in use');
    // A whole (short) adaptation: 3 folds, 2 epochs at most.
    const t0 = Date.now();
    await page.click('#own-adapt-start');
    await page.waitForFunction(() => ['cancelled', 'done', 'failed'].includes(globalThis.ctxrHooks.adapt?.stage), null, { timeout: 1200000 });
    numbers.adapt_16_ct_3_folds_2_epochs_s = Math.round((Date.now() - t0) / 1000);
    const adapted = await hook(page, 'adapted');
    const said = await page.evaluate(() => ({
      result: document.getElementById('own-adapt-result').textContent,
      banner: document.getElementById('adapted-banner').hidden ? '' : document.getElementById('adapted-text').textContent,
      epochs: document.querySelectorAll('#own-epochs-log li').length,
      card: [...document.querySelectorAll('#card-body .mc-op')].map((e) => e.textContent).find((t) => t.startsWith('Adapted locally: not validated')) || '',
    }));
    check(adapted && adapted.images === got.n && /AUC \d\.\d{3} \([\d.–]+\) before → \d\.\d{3} \([\d.–]+\) after/.test(said.result) && /adapted locally on \d+ images — not validated/.test(said.banner) && said.epochs > 0
      && new RegExp(`${got.n / 2} noncovid, ${got.n / 2} covid images`).test(said.card),
      `adapted in ${numbers.adapt_16_ct_3_folds_2_epochs_s} s with per-epoch progress (${said.epochs} epochs logged); the cross-validated AUC is shown before → after, and the banner and the model card say "not validated"`, JSON.stringify({ adapted, said }));
    // The README's screenshot of the workflow: the measurement, its plots and the adaptation.
    if (backend === 'cpu') await page.locator('#own').screenshot({ path: join(root, 'docs', 'adapt.png') });
    // Save: to files (the record and a manifest naming it) and to IndexedDB.
    const downloads = [];
    page.on('download', (d) => downloads.push(d));
    await page.click('#own-save-file');
    await page.waitForFunction(() => /^Saved /.test(document.getElementById('own-save-text').textContent), null, { timeout: 30000 });
    for (let i = 0; i < 50 && downloads.length < 2; i++) await page.waitForTimeout(100);
    const saved = join(set.dir, 'weights');
    mkdirSync(saved, { recursive: true });
    for (const d of downloads) await d.saveAs(join(saved, d.suggestedFilename()));
    const savedManifest = JSON.parse(readFileSync(join(saved, 'manifest.json'), 'utf8'));
    const entry = savedManifest.models.find((m) => m.id === 'ct');
    const sha = createHash('sha256').update(readFileSync(join(saved, entry.record))).digest('hex');
    check(entry.adapted && entry.sha256 === sha && sha === adapted.sha256 && entry.adapted.base_sha256 && entry.adapted.counts.reduce((a, b) => a + b, 0) === got.n,
      `saved to files: ${entry.record} (SHA-256 ${sha.slice(0, 12)}… as its manifest entry says) and manifest.json with the base model, data summary and cross-validation`, JSON.stringify(entry.adapted?.counts));
    for (const m of savedManifest.models.filter((x) => x.id !== 'ct')) writeFileSync(join(saved, m.record), readFileSync(join(www, 'weights', m.record)));
    await page.click('#own-save-db');
    await page.waitForFunction(() => globalThis.ctxrHooks.saved >= 1, null, { timeout: 30000 });
    // The CT model's weights are fetched on first use if no CT image came before (nothing is sent).
    const during = requests.slice(nReq).filter((q) => !(q.method === 'GET' && /\/weights\/ct\.bpk$/.test(q.url)));
    check(during.length === 0, `no request from choosing the labelled set to saving the adapted model (${requests.length - nReq - during.length} GET of the CT model on first use)`, during.map((q) => `${q.method} ${q.url}`).join(' '));
    // Reload: the kept model is listed, used again, and classifies as the CLI does with the saved files.
    await page.reload();
    await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    await page.waitForFunction(() => globalThis.ctxrHooks.saved >= 1, null, { timeout: 30000 });
    const nReq2 = requests.length;
    await page.click('#own-kept li button');
    await page.waitForFunction(() => globalThis.ctxrHooks.adapted, null, { timeout: 60000 });
    await setModel(page, 'ct');
    const probe = { name: set.images[0].split('/').pop(), mimeType: 'application/octet-stream', buffer: readFileSync(set.images[0]) };
    const r = await dropFile(page, probe);
    await setModel(page, 'auto');
    const read = await page.evaluate(() => document.getElementById('model-read').textContent);
    const stdout = execFileSync(cli, ['analyze', '--weights', saved, '--model', 'ct', set.images[0]], { encoding: 'utf8' });
    const want = JSON.parse(stdout.split('\n').find((l) => l.startsWith('{'))).probabilities;
    const diff = want.length === (r.probabilities || []).length ? Math.max(...want.map((p, i) => Math.abs(p - r.probabilities[i]))) : Infinity;
    check(/adapted locally on \d+ images, not validated/.test(read) && diff <= 1e-4,
      `after a reload the kept model is used again: "${read.slice(0, 90)}…", probabilities as the CLI's with the saved files (max |Δ| ${diff.toExponential(1)})`, JSON.stringify({ read, got: r.probabilities, want }));
    check(requests.length === nReq2, `no request from using the kept model to its result (${requests.length - nReq2})`, requests.slice(nReq2).map((q) => q.url).join(' '));
    // Another backend starts a new worker: the adapted model is installed again, not dropped.
    const chosen = await page.inputValue('#backend-select');
    await page.selectOption('#backend-select', 'cpu');
    await page.waitForFunction(() => globalThis.ctxrHooks.state === 'loading', null, { timeout: 30000 }).catch(() => {});
    await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    await setModel(page, 'ct');
    const again = await dropFile(page, probe);
    const readAgain = await page.evaluate(() => document.getElementById('model-read').textContent);
    await setModel(page, 'auto');
    const diffAgain = Math.max(...want.map((p, i) => Math.abs(p - (again.probabilities || [])[i])));
    check(/adapted locally on \d+ images, not validated/.test(readAgain) && diffAgain <= 1e-4 && (await hook(page, 'adapted')) !== null,
      `after switching the backend to the CPU the adapted model is still the one in use (max |Δ| to the CLI ${diffAgain.toExponential(1)})`, JSON.stringify({ readAgain, got: again.probabilities }));
    await page.selectOption('#backend-select', chosen);
    await page.waitForFunction(() => globalThis.ctxrHooks.state === 'loading', null, { timeout: 30000 }).catch(() => {});
    await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const restore = async () => {
      await page.click('#adapted-restore');
      await page.waitForFunction(() => globalThis.ctxrHooks.adapted === null || /[Ee]rror|not /.test(document.getElementById('adapted-text').textContent.slice(0, 40)), null, { timeout: 60000 });
      return page.evaluate(() => ({ adapted: globalThis.ctxrHooks.adapted, said: document.getElementById('adapted-text').textContent }));
    };
    const back = await restore();
    check(back.adapted === null, 'the shipped model can be put back in use', JSON.stringify(back));
    // The saved files load the adapted model again.
    await page.setInputFiles('#own-load', [join(saved, entry.record), join(saved, 'manifest.json')]);
    await page.waitForFunction((sha) => globalThis.ctxrHooks.adapted?.sha256 === sha || /^(Pick|.*not JSON|.*names no)/.test(document.getElementById('own-load-text').textContent), sha, { timeout: 60000 });
    const loaded = await page.evaluate(() => ({ adapted: globalThis.ctxrHooks.adapted, said: document.getElementById('own-load-text').textContent }));
    check(loaded.adapted?.sha256 === sha && /adapted locally on \d+ images, not validated/.test(loaded.said), `the saved .bpk and manifest.json load the adapted model back: "${loaded.said.slice(0, 60)}…"`, JSON.stringify(loaded));
    check((await restore()).adapted === null, 'and the shipped model is put back again');
  } catch (e) {
    check(false, 'labelled set: evaluate, adapt, save, reload, use', e.message);
  } finally {
    rmSync(set.dir, { recursive: true, force: true });
  }
}

async function runBackend(backend, origin) {
  console.log(`\n# backend: ${backend}`);
  const profile = mkdtempSync(join(tmpdir(), 'ctxr-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath, headless: true, args: BACKENDS[backend], acceptDownloads: true, viewport: { width: 1280, height: 900 },
  });
  // The model card's details files load whenever the card comes into view, which a reload
  // that restores the scroll position can make happen during any other check: GETs of static
  // files that send nothing, kept apart so that each "no request while …" counts the rest.
  const requests = [];
  const cardRequests = [];
  context.on('request', (r) => {
    const q = { url: r.url(), method: r.method(), t: Date.now() };
    (q.method === 'GET' && /\/weights\/(ct|cxr)\.details\.json$/.test(q.url) ? cardRequests : requests).push(q);
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const numbers = { backend };
  try {
    const t0 = Date.now();
    await page.goto(`${origin}index.html?backend=${backend === 'webgpu' ? 'webgpu' : 'auto'}`);
    await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const shown = await page.evaluate(() => ({ backend: globalThis.ctxrHooks.backend, how: document.getElementById('backend-how').textContent, state: globalThis.ctxrHooks.state }));
    if (!check(shown.state === 'ready' && shown.backend === backend, `engine started on ${backend}`, JSON.stringify(shown))) return numbers;
    if (backend === 'cpu') check(/not available|failed to start/.test(shown.how), `CPU fallback says why ${shown.how}`, shown.how);
    // Where WebGPU cannot run, the worker loads the CPU-only build and never the full one.
    const build = await hook(page, 'build');
    const wasmFetched = requests.map((q) => q.url.split('/').pop()).filter((f) => /^ctxr(_cpu|_threads)?_bg\.wasm$/.test(f));
    check(build === (backend === 'cpu' ? 'cpu' : 'full') && (backend !== 'cpu' || !wasmFetched.includes('ctxr_bg.wasm')),
      `the ${backend} page runs the ${backend === 'cpu' ? 'CPU-only' : 'full (WebGPU and CPU)'} engine build`, `${build}; fetched ${wasmFetched.join(', ')}`);
    // The service worker keeps, for starts without the network, the build that runs here and
    // not the other one (a WebGPU browser never downloads the CPU-only build).
    const running = BUILD_WASM[build];
    let kept = [];
    for (let i = 0; i < 60 && !kept.includes(running); i++) {
      kept = await page.evaluate(async () => {
        const names = [];
        for (const key of await caches.keys()) for (const req of await (await caches.open(key)).keys()) names.push(new URL(req.url).pathname.split('/').pop());
        return names.filter((n) => n.endsWith('.wasm'));
      });
      if (!kept.includes(running)) await page.waitForTimeout(500);
    }
    check(kept.length === 1 && kept[0] === running && !wasmFetched.some((f) => f !== running),
      `the service worker keeps only the engine build this page runs (${running})`, `cached ${kept.join(', ') || 'none'}; fetched ${wasmFetched.join(', ')}`);
    // The modules main.js imports (worker.js is proven by the engine having started).
    const fetched = new Set([...requests.map((r) => r.url), ...(await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name)))]);
    const imported = PAGE_MODULES.filter((f) => f !== 'worker.js');
    const notLoaded = imported.filter((f) => !fetched.has(`${origin}${f}`));
    check(notLoaded.length === 0, `the page loaded its ${imported.length} modules from ${origin}`, `missing: ${notLoaded.join(' ')}`);
    // The page repeats none of the engine's constants: the menus are built from page_constants().
    const menus = await page.evaluate(() => ({
      constants: globalThis.ctxrHooks.constants,
      presets: [...document.querySelectorAll('#window-preset option')].map((o) => o.value),
      cmaps: [...document.querySelectorAll('#cam-cmap option')].map((o) => o.value),
    }));
    const k = menus.constants;
    check(k && k.max_file_bytes > 0 && k.display_max_side > 0 && Array.isArray(k.window_presets) && Array.isArray(k.backends) && k.backends.includes(backend),
      `the engine's page constants reached the page (file limit ${k ? (k.max_file_bytes / 2 ** 20).toFixed(0) : '?'} MB, backends ${k?.backends})`, JSON.stringify(k));
    check(k && JSON.stringify(menus.presets) === JSON.stringify(['auto', ...k.window_presets.map((p) => p.id), 'file', 'custom'])
      && JSON.stringify(menus.cmaps) === JSON.stringify(k.colormaps), 'window presets and colour maps come from the engine\'s constants', JSON.stringify(menus));
    await page.waitForFunction(() => globalThis.ctxrHooks.sw === 'ready', null, { timeout: 120000 });
    // Live regions speak only when something happens: none changes while the page is idle.
    const chatter = await page.evaluate(() => new Promise((done) => {
      const seen = [];
      const mo = new MutationObserver((ms) => ms.forEach((m) => seen.push(m.target.parentElement?.closest('[aria-live], [role=status], [role=alert]')?.id || m.target.id || '?')));
      document.querySelectorAll('[aria-live], [role=status], [role=alert]').forEach((e) => mo.observe(e, { subtree: true, childList: true, characterData: true }));
      setTimeout(() => { mo.disconnect(); done(seen); }, 3000);
    }));
    check(chatter.length === 0, 'no live region changes while the page is idle (3 s)', chatter.join(' '));
    const list = cases();
    let first = true;
    for (const c of list) {
      const heatmapsBefore = await heatmaps(page);
      let r;
      try {
        r = await classify(page, requests, c);
      } catch (e) {
        check(false, `${c.label}: classified`, e.message);
        continue;
      }
      // Bytes the page fetched before its first result of each model (files as served).
      const key = `bytes_to_first_${r.model}_result`;
      if (r.model && !(key in numbers)) {
        const urls = new Set(requests.map((q) => q.url).filter((u) => u.startsWith(origin)));
        numbers[key] = [...urls].map((u) => join(www, new URL(u).pathname)).filter((f) => existsSync(f) && statSync(f).isFile()).reduce((sum, f) => sum + statSync(f).size, 0);
        const models = [...urls].map((u) => (u.match(/\/weights\/(\w+)\.bpk$/) || [])[1]).filter(Boolean).sort();
        console.log(`  bytes to the first ${r.model} result: ${(numbers[key] / 1e6).toFixed(2)} MB (models fetched: ${models.join(', ')})`);
        check(!models.includes(r.model === 'ct' ? 'cxr' : 'ct') || numbers[`bytes_to_first_${r.model === 'ct' ? 'cxr' : 'ct'}_result`] !== undefined,
          `the first ${r.model} result needed only the gate and the ${r.model} model`,
          requests.filter((q) => /\.bpk$/.test(q.url)).map((q) => `${q.t - t0} ms ${q.method} ${q.url}`).join('; '));
      }
      if (first) {
        numbers.cold_start_to_first_result_ms = Date.now() - t0;
        first = false;
        check(cardRequests.length === 0, 'the first result needed none of the model card\'s details (they load when the card is seen)', cardRequests.map((q) => q.url).join(' '));
        const timings = await page.evaluate(() => document.getElementById('timings').textContent);
        if (r.model) check(timings.startsWith(backend === 'webgpu' ? 'WebGPU · ' : 'CPU · '), `the result names the engine that ran it (${backend})`, timings);
      }
      if (r.model && !r.refused && (c.heatmap || r.model === 'cxr')) {
        if (c.heatmap) await page.waitForFunction((n) => globalThis.ctxrHooks.heatmaps > n && globalThis.ctxrHooks.heatmapOf === globalThis.ctxrHooks.results, heatmapsBefore, { timeout: 120000 });
        await resultWords(page, c, r);
      }
      if (c.heatmap && r.model) {
        await heatmapChecks(page, heatmapsBefore);
        numbers.inference_median_ms = median(await page.evaluate(() => globalThis.ctxrHooks.call('time', { runs: 20 })));
        const cams = await page.evaluate(async () => {
          const v = [];
          for (let i = 0; i < 5; i++) v.push((await globalThis.ctxrHooks.call('explain', { cls: 1, layer: 4, colormap: 'viridis' })).ms);
          return v;
        });
        numbers.gradcam_median_ms = median(cams);
        mkdirSync(out, { recursive: true });
        await page.locator('#result').screenshot({ path: join(out, `result-${backend}.png`) });
      }
    }
    await handChoiceChecks(page, list);
    await windowChecks(page, list);
    // The result view of a CT slice with its heatmap: the stamped export, the README's
    // screenshot (colour bar, threshold on the bar) and the accessibility audit.
    const ctCase = list.find((c) => c.heatmap);
    const hb = await heatmaps(page);
    await setModel(page, ctCase.model || 'auto');
    await dropFile(page, ctCase.file);
    await page.waitForFunction((n) => globalThis.ctxrHooks.heatmaps > n && globalThis.ctxrHooks.heatmapOf === globalThis.ctxrHooks.results, hb, { timeout: 120000 });
    await exportPngCheck(page, ctCase);
    if (backend === 'cpu' && haveData) await page.locator('#result').screenshot({ path: join(root, 'docs', 'screenshot.png') });
    await setModel(page, 'auto');
    const folderRows = await seriesCheck(page, requests);
    await exportCsv(page, dropped.get(page) + folderRows);
    await cardDetailsCheck(page, cardRequests);
    await axeCheck(page, 'a result with its heatmap, the table and the model card');
    await studyCheck(page, requests, numbers);
    await axeCheck(page, 'the CT study view');
    await bigStudyCheck(page, numbers, 300);
    if (backend === 'cpu') await bigStudyCheck(page, numbers, 600);
    if (backend === 'cpu') {
      await corpusCheck(page, requests);
      await bigFolderCheck(page, numbers);
    }
    await labelledCheck(page, requests, backend, numbers);
    // After the reloads above, the card's details load when it is seen again.
    await page.locator('#card').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => globalThis.ctxrHooks.cardDetails, null, { timeout: 60000 });
    const card = await page.evaluate(() => document.querySelectorAll('#card-body svg').length);
    check(card > 0, 'model card panel draws ROC curves from the manifest and its details', await hook(page, 'cardDetails'));
    await page.setViewportSize({ width: 360, height: 800 });
    const overflow = await page.evaluate(() => ({
      px: document.documentElement.scrollWidth - window.innerWidth,
      culprits: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll, .mc-scroll'))
        .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`),
      // Probabilities and the file name whole: no text cut off, no name broken every few letters.
      cut: [...document.querySelectorAll('#bars .bar > span, #result-file, #decision')].filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.textContent),
      tableNameLines: (() => { const b = document.querySelector('#batch-table tbody td:nth-child(2) button'); return b ? Math.round(b.getBoundingClientRect().height / (parseFloat(getComputedStyle(b).lineHeight) || 20)) : 0; })(),
      nameLines: (() => { const e = document.getElementById('result-file'); const lh = parseFloat(getComputedStyle(e).lineHeight) || 20; return Math.round(e.getBoundingClientRect().height / lh); })(),
    }));
    check(overflow.px <= 1, 'page fits a 360 px wide screen (no horizontal scroll)', `overflow ${overflow.px}px: ${overflow.culprits.join(' ')}`);
    check(overflow.cut.length === 0 && overflow.nameLines <= 2 && overflow.tableNameLines <= 3,
      `at 360 px no probability is cut; the file name takes ${overflow.nameLines} line(s), ${overflow.tableNameLines} in the table`, JSON.stringify(overflow));
    await page.screenshot({ path: join(out, `page-360-${backend}.png`), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: join(out, `page-${backend}.png`), fullPage: true });
    await clearCheck(page, list.find((c) => c.heatmap).file);
    // Offline after the first visit: the service worker serves the shell, wasm and weights.
    await context.setOffline(true);
    await page.reload();
    await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const offline = await hook(page, 'state');
    if (check(offline === 'ready', 'page starts again with the network off (service worker cache)', offline)) {
      const c = list.find((x) => x.heatmap);
      onDemand.delete(requests); // a new worker: its first CT image fetches the model again (from the cache)
      await classify(page, requests, { ...c, label: `offline: ${c.label}` });
    }
    await context.setOffline(false);
    if (backend === 'webgpu') {
      // Automatic choice: both backends are timed and the faster is kept.
      await page.goto(`${origin}index.html?backend=auto`);
      await page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
      const how = await page.evaluate(() => document.getElementById('backend-how').textContent);
      check(/measured/.test(how) && /WebGPU [\d.]+ ms/.test(how) && /CPU [\d.]+ ms/.test(how), 'automatic choice measures both backends', how);
      numbers.auto_choice = `${await hook(page, 'backend')} ${how}`;
    }
    const origins = new Set([...requests, ...cardRequests].map((r) => (r.url.startsWith('data:') || r.url.startsWith('blob:') ? origin : new URL(r.url).origin + '/')));
    check(origins.size === 1 && origins.has(origin), `all ${requests.length + cardRequests.length} requests went to ${origin}`, [...origins].join(' '));
    check(errors.length === 0, 'no uncaught page errors', errors.join(' | '));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  return numbers;
}

// With cross-origin isolation, on the CPU: the worker loads the threaded build and runs one
// thread per core (the header says how many), with the same answers as the CLI, Grad-CAM and a
// scored study. First from a host that sends the headers itself; then from one that does not
// (`plainOrigin`), where the page's service worker isolates the second visit, which then also
// starts offline. Without isolation (every first visit of runBackend) the CPU build runs one
// thread and says why.
async function isolationCheck(plainOrigin) {
  console.log('\n# cross-origin isolated: the threaded CPU build');
  const iso = await serve(www, 0, ISOLATION);
  const numbers = { backend: 'cpu_threaded' };
  const open = async () => {
    const profile = mkdtempSync(join(tmpdir(), 'ctxr-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, headless: true, args: BACKENDS.cpu, viewport: { width: 1280, height: 900 } });
    const requests = [];
    context.on('request', (r) => { if (!/\.details\.json$/.test(r.url())) requests.push({ url: r.url(), method: r.method(), t: Date.now() }); });
    const page = context.pages()[0] || (await context.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const close = async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); };
    return { context, page, requests, errors, close };
  };
  const engineState = (page) => page.evaluate(() => ({
    isolated: globalThis.crossOriginIsolated, state: globalThis.ctxrHooks.state, backend: globalThis.ctxrHooks.backend, build: globalThis.ctxrHooks.build,
    threads: globalThis.ctxrHooks.threads, engine: document.getElementById('backend').textContent, cores: navigator.hardwareConcurrency,
  }));
  const threaded = (s) => s.isolated === true && s.state === 'ready' && s.backend === 'cpu' && s.build === 'threads'
    && s.threads?.count === Math.min(s.cores, MAX_THREADS) && s.threads.count > 1 && s.engine.includes(`${s.threads.count} threads`);
  let b = await open();
  try {
    await b.page.goto(`${iso.url}index.html`);
    await b.page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const s = await engineState(b.page);
    if (check(threaded(s), `a host's isolation headers: the CPU runs the threaded build on ${s.threads?.count} threads and says so ("${s.engine}")`, JSON.stringify(s))) {
      for (const c of cases()) {
        try {
          await classify(b.page, b.requests, c);
        } catch (e) {
          check(false, `threaded: ${c.label}: classified`, e.message);
        }
      }
      const ct = cases().find((c) => c.heatmap);
      const hb = await heatmaps(b.page);
      await dropFile(b.page, ct.file);
      await heatmapChecks(b.page, hb);
      numbers.inference_median_ms = median(await b.page.evaluate(() => globalThis.ctxrHooks.call('time', { runs: 20 })));
      numbers.gradcam_median_ms = median(await b.page.evaluate(async () => {
        const v = [];
        for (let i = 0; i < 5; i++) v.push((await globalThis.ctxrHooks.call('explain', { cls: 1, layer: 4, colormap: 'viridis' })).ms);
        return v;
      }));
      await studyCheck(b.page, b.requests, numbers);
      await bigStudyCheck(b.page, numbers, 300);
    }
    check(b.errors.length === 0, 'threaded: no uncaught page errors', b.errors.join(' | '));
  } finally {
    await b.close();
    await iso.close();
  }
  b = await open();
  try {
    await b.page.goto(`${plainOrigin}index.html`);
    await b.page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const first = await engineState(b.page);
    check(first.isolated === false && first.build === 'cpu' && first.threads?.count === 1 && /not cross-origin isolated/.test(first.threads.why) && first.engine.includes('1 thread'),
      `without isolation (a first visit) the CPU build runs one thread and says why ("${first.engine}": ${first.threads?.why})`, JSON.stringify(first));
    await b.page.waitForFunction(() => globalThis.ctxrHooks.sw === 'ready', null, { timeout: 120000 });
    await b.page.reload();
    await b.page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
    const second = await engineState(b.page);
    if (check(threaded(second), `the service worker isolates the second visit on a host without the headers: ${second.threads?.count} threads`, JSON.stringify(second))) {
      const ct = cases().find((c) => c.heatmap);
      await classify(b.page, b.requests, { ...ct, label: `SW-isolated: ${ct.label}` });
      await b.context.setOffline(true);
      await b.page.reload();
      await b.page.waitForFunction(ENGINE_SETTLED, null, { timeout: 300000 });
      const offline = await engineState(b.page);
      if (check(threaded(offline), 'offline, the isolated page starts the threaded build from the cache', JSON.stringify(offline))) {
        onDemand.delete(b.requests);
        await classify(b.page, b.requests, { ...ct, label: `offline, threaded: ${ct.label}` });
      }
      await b.context.setOffline(false);
    }
    check(b.errors.length === 0, 'SW-isolated: no uncaught page errors', b.errors.join(' | '));
  } finally {
    await b.close();
  }
  return numbers;
}

// The page's own code: a CSP that allows scripts only from the origin (WebAssembly compilation
// aside), no inline script or handler, no eval or Function constructor in any module.
function staticChecks() {
  console.log('\n# static checks');
  const html = readFileSync(join(www, 'index.html'), 'utf8');
  const csp = (html.match(/http-equiv="Content-Security-Policy" content="([^"]+)"/) || [])[1] || '';
  const directive = (name) => (csp.split(';').map((d) => d.trim()).find((d) => d.startsWith(`${name} `)) || '');
  check(/^script-src 'self' 'wasm-unsafe-eval'$/.test(directive('script-src')) && /^connect-src 'self'$/.test(directive('connect-src')) && /^default-src 'self'$/.test(directive('default-src')),
    'CSP: scripts, connections and everything else only from the page\'s origin', csp);
  const inline = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)].filter((m) => !/\bsrc=/.test(m[1]) || m[2].trim());
  check(inline.length === 0 && !/\son[a-z]+\s*=/.test(html) && !/<style\b/.test(html) && !/\sstyle=/.test(html), 'index.html: no inline script, handler or style');
  const js = readdirSync(www).filter((f) => f.endsWith('.js')).map((f) => [f, readFileSync(join(www, f), 'utf8')]);
  const bad = js.filter(([, src]) => /\beval\s*\(|new\s+Function\s*\(|setTimeout\s*\(\s*['"`]/.test(src)).map(([f]) => f);
  check(bad.length === 0, `no eval or Function constructor in ${js.length} modules`, bad.join(' '));
}

// The model card's details (every set's metrics, ROC curves, cross-validation) load when the
// card is first seen, from the files the manifest names, and the card then draws them.
async function cardDetailsCheck(page, cardRequests) {
  const named = JSON.parse(readFileSync(join(www, 'weights', 'manifest.json'), 'utf8')).models.map((m) => m.details).filter(Boolean);
  await page.locator('#card').scrollIntoViewIfNeeded();
  await page.waitForFunction(() => globalThis.ctxrHooks.cardDetails !== null, null, { timeout: 60000 });
  const got = await page.evaluate(() => ({ state: globalThis.ctxrHooks.cardDetails, rocs: document.querySelectorAll('#card-body svg').length }));
  const fetched = [...new Set(cardRequests.map((q) => new URL(q.url).pathname.split('/').pop()))].sort();
  check(named.length >= 2 && got.state === 'loaded' && got.rocs > 0 && JSON.stringify(fetched) === JSON.stringify([...named].sort()),
    `the model card fetched its details when seen (${fetched.join(', ')}) and draws ${got.rocs} ROC charts`, JSON.stringify({ got, fetched, named }));
}

// The page is small ES modules (www/*.js), each opening with a comment on its one job: index.html
// loads main.js as its only entry, the service worker precaches every module, and the server
// serves each as JavaScript.
const PAGE_MODULES = ['main.js', 'hooks.js', 'status.js', 'rpc.js', 'input.js', 'viewer.js', 'batch.js', 'study.js', 'card.js', 'labelled.js', 'store.js', 'worker.js'];
async function moduleChecks(origin) {
  console.log('\n# page modules');
  const html = readFileSync(join(www, 'index.html'), 'utf8');
  const scripts = [...html.matchAll(/<script\b([^>]*)>/g)].map((m) => m[1]);
  check(scripts.length === 1 && /type="module"/.test(scripts[0]) && /src="main\.js"/.test(scripts[0]), 'index.html loads main.js as its only (module) script', scripts.join(' | '));
  // The modules reachable from the two entries (main.js, and worker.js which the page starts).
  const reached = new Set();
  const visit = (f) => {
    if (reached.has(f) || !existsSync(join(www, f))) return;
    reached.add(f);
    const src = readFileSync(join(www, f), 'utf8');
    for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?['"]\.\/([\w.-]+\.js)['"]/g)) visit(m[1]);
  };
  visit('main.js');
  visit('worker.js');
  check(JSON.stringify([...reached].sort()) === JSON.stringify([...PAGE_MODULES].sort()), `the page's modules are ${PAGE_MODULES.join(', ')}`, [...reached].sort().join(' '));
  // Any other .js in www/ (but the service worker) may hold only comments: JSDoc typedefs (types.js).
  const codeOnly = (src) => src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '').replace(/export\s*\{\s*\}\s*;?/g, '').trim();
  const dead = readdirSync(www).filter((f) => f.endsWith('.js') && f !== 'sw.js' && !reached.has(f) && codeOnly(readFileSync(join(www, f), 'utf8')));
  check(dead.length === 0, 'no module in www/ that the page does not load (type-only files aside)', dead.join(' '));
  const sw = readFileSync(join(www, 'sw.js'), 'utf8');
  const shell = (sw.match(/const SHELL = \[([\s\S]*?)\];/) || [])[1] || '';
  const listed = [...shell.matchAll(/'([^']+)'/g)].map((m) => m[1]);
  const missing = PAGE_MODULES.filter((f) => !listed.includes(f));
  const stale = listed.filter((f) => (f.endsWith('.js') && !f.startsWith('pkg/') && !PAGE_MODULES.includes(f)) || (f.startsWith('pkg/') && !existsSync(join(www, f))));
  check(missing.length === 0 && stale.length === 0, 'the service worker precaches every page module and no other', `missing ${missing.join(' ')}; not in www: ${stale.join(' ')}`);
  const undocumented = PAGE_MODULES.filter((f) => !/^\s*(\/\/|\/\*\*?)[\s*]*\S+\.js — one job: /.test(readFileSync(join(www, f), 'utf8')));
  check(undocumented.length === 0, 'each page module opens with a comment saying its one job', undocumented.join(' '));
  const bad = [];
  for (const f of [...PAGE_MODULES, 'sw.js']) {
    const res = await fetch(new URL(f, origin));
    const type = res.headers.get('content-type') || '';
    if (!res.ok || !type.startsWith('text/javascript')) bad.push(`${f}: HTTP ${res.status} ${type}`);
  }
  const gone = await fetch(new URL('app.js', origin));
  if (gone.status !== 404) bad.push(`app.js: HTTP ${gone.status} (should be gone)`);
  check(bad.length === 0, `the server serves all ${PAGE_MODULES.length} page modules as JavaScript (and no app.js)`, bad.join(' | '));
}

staticChecks();
const { url, close } = await serve(www);
const results = [];
try {
  await moduleChecks(url);
  const s = sizes();
  console.log(`sizes: wasm ${s.wasm} B (gzip ${s.wasm_gzip}), CPU-only wasm ${s.cpu_wasm} B (gzip ${s.cpu_wasm_gzip}), threaded CPU wasm ${s.threads_wasm} B (gzip ${s.threads_wasm_gzip}), glue JS ${s.glue_js} B, weights ${s.weights} B (gzip ${s.weights_gzip})`);
  // CTXR_E2E_BACKENDS=cpu (or webgpu) runs one backend while developing; CI
  // (CTXR_REQUIRE_DATA=1) always runs both.
  const wanted = process.env.CTXR_REQUIRE_DATA ? '' : process.env.CTXR_E2E_BACKENDS;
  const backends = (wanted || 'webgpu,cpu').split(',');
  for (const backend of backends) results.push({ ...(await runBackend(backend, url)), ...s });
  if (backends.length === 2) await forcedWebgpuCheck(url, cases().find((c) => c.heatmap));
  if (backends.includes('cpu') || process.env.CTXR_E2E_ISOLATED) results.push(await isolationCheck(url));
} finally {
  await close();
}
console.log('\n# numbers (per backend)');
for (const r of results) console.log(JSON.stringify(r));
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
