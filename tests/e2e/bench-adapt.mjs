// bench-adapt.mjs — a benchmark, not a test: how long the page takes to measure the CT model
// on 500 labelled CT slices and to run one epoch of adapting it, and the module's memory, on
// each backend (Debian's Chromium, headless; WebGPU through SwiftShader on a machine without a
// GPU). It prints numbers and asserts nothing. Needs ../shared/data and a built www/ (./build.sh).
//   node tests/e2e/bench-adapt.mjs [webgpu,cpu]
// The set: MosMed half A, every non-COVID slice and COVID slices up to 500, one per patient.
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './server.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const data = process.env.CTXR_SHARED_DATA || join(root, '..', 'shared', 'data');
const BACKENDS = {
  webgpu: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'],
  cpu: ['--no-sandbox', '--disable-gpu', '--disable-features=WebGPU,Vulkan'],
};
const N = 500;

const rows = readFileSync(join(data, 'ct', 'manifest.csv'), 'utf8').split('\n').slice(1).map((l) => l.split(',')).filter((f) => f[2] === 'mosmed');
const noncovid = rows.filter((f) => f[1] === 'noncovid');
const covid = rows.filter((f) => f[1] === 'covid').slice(0, N - noncovid.length);
const set = [...noncovid, ...covid];
const dir = mkdtempSync(join(tmpdir(), 'ctxr-bench-'));
writeFileSync(join(dir, 'labels.csv'), `file,label,group\n${set.map((f) => `${f[0].split('/').pop()},${f[1]},${f[3]}`).join('\n')}\n`);
const files = [join(dir, 'labels.csv'), ...set.map((f) => join(data, 'ct', f[0]))];

const { url, close } = await serve(join(root, 'www'));
try {
  for (const backend of (process.argv[2] || 'webgpu,cpu').split(',')) {
    const profile = mkdtempSync(join(tmpdir(), 'ctxr-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: BACKENDS[backend] });
    try {
      const page = context.pages()[0] || (await context.newPage());
      await page.goto(`${url}index.html?backend=${backend}`);
      await page.waitForFunction(() => globalThis.ctxrHooks?.state === 'ready', null, { timeout: 300000 });
      const mem = async () => (await page.evaluate(() => globalThis.ctxrHooks.call('memory'))).wasm_bytes / 2 ** 20;
      const m0 = await mem();
      await page.setInputFiles('#own-files', files);
      await page.waitForFunction(() => globalThis.ctxrHooks.labelled, null, { timeout: 3600000 });
      const measured = await page.evaluate(() => globalThis.ctxrHooks.labelled);
      const m1 = await mem();
      // One epoch of the first fold's fit (about 4/5 × 4/5 of the set trains, 1/5 of it is held out).
      await page.fill('#own-epochs', '1');
      await page.click('#own-adapt-start');
      await page.waitForFunction(() => globalThis.ctxrHooks.adapt?.stage === 'step', null, { timeout: 3600000 });
      const start = await page.evaluate(() => globalThis.ctxrHooks.adapt.ms);
      await page.waitForFunction(() => ['epoch', 'done', 'failed'].includes(globalThis.ctxrHooks.adapt?.stage), null, { timeout: 3600000 });
      const epoch = await page.evaluate(() => globalThis.ctxrHooks.adapt);
      const m2 = await mem();
      await page.click('#own-adapt-cancel');
      await page.waitForFunction(() => ['cancelled', 'done', 'failed'].includes(globalThis.ctxrHooks.adapt?.stage), null, { timeout: 600000 });
      console.log(JSON.stringify({
        backend,
        images: measured.n,
        auc: measured.auc,
        measure_s: +(measured.ms / 1000).toFixed(1),
        first_epoch_s: +((epoch.ms - start) / 1000).toFixed(1),
        scoring_before_s: +(start / 1000).toFixed(1),
        wasm_mb: { start: +m0.toFixed(1), after_measuring: +m1.toFixed(1), after_an_epoch: +m2.toFixed(1) },
      }));
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  }
} finally {
  await close();
  rmSync(dir, { recursive: true, force: true });
}
