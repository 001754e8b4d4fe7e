// sw.js — makes the page work offline after the first visit: on install it caches the app
// shell and the input gate's weights (same origin only); afterwards every same-origin GET goes
// to the network first (so a new deployment is picked up), is cached, and falls back to the
// cache when offline. A CT or X-ray model is therefore cached when the page first needs it,
// never downloaded in advance. Of the engine's two builds, only the one this browser runs is
// kept: the page posts its files (`{ keep: [paths] }`) once the worker has loaded it, because
// on a first visit the worker fetched it before this service worker was in control (a WebGPU
// browser never downloads the CPU-only build, and a CPU one never the WebGPU build; offline
// without the WebGPU build cached, the worker starts the CPU build). Requests to other origins
// are never made or answered.
const CACHE = 'ctxr-v7';
const SHELL = [
  './', 'index.html', 'style.css',
  'main.js', 'hooks.js', 'status.js', 'rpc.js', 'input.js', 'viewer.js', 'batch.js', 'study.js', 'card.js', 'labelled.js', 'store.js', 'worker.js',
  'weights/manifest.json',
];
// What a page may ask to keep: the engine's files, nothing else.
const KEEPABLE = /^\.\/pkg\/[\w-]+\.(js|wasm)$/;

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

self.addEventListener('message', (event) => {
  const paths = Array.isArray(event.data?.keep) ? event.data.keep.filter((p) => typeof p === 'string' && KEEPABLE.test(p)) : [];
  if (!paths.length) return;
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const missing = [];
    for (const p of paths) if (!(await cache.match(p))) missing.push(p);
    await cache.addAll(missing);
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
