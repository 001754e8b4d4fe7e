// sw.js — makes the page work offline after the first visit: on install it caches the app
// shell, the CPU-only wasm build (which every browser runs) and the input gate's weights (same
// origin only); afterwards every same-origin GET goes to the network first (so a new
// deployment is picked up), is cached, and falls back to the cache when offline. A CT or X-ray
// model, and the WebGPU build, are therefore cached when the page first needs them, never
// downloaded in advance (offline without the WebGPU build cached, the worker starts the CPU
// build). Requests to other origins are never made or answered.
const CACHE = 'ctxr-v6';
const SHELL = [
  './', 'index.html', 'style.css',
  'main.js', 'hooks.js', 'status.js', 'rpc.js', 'input.js', 'viewer.js', 'batch.js', 'study.js', 'card.js', 'labelled.js', 'store.js', 'worker.js',
  'pkg/ctxr_cpu.js', 'pkg/ctxr_cpu_bg.wasm', 'weights/manifest.json',
];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL);
    const manifest = await (await cache.match('weights/manifest.json')).json();
    await cache.addAll(manifest.models.filter((m) => m.record && m.id === 'gate').map((m) => `weights/${m.record}`));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(req);
      if (res.ok) cache.put(req, res.clone());
      return res;
    } catch (err) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
