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
//
// It also makes the pages it serves cross-origin isolated, by adding the two headers a host
// would send (COOP and COEP), which GitHub Pages cannot be told to: an isolated page may share
// memory between threads, which the engine's threaded CPU build needs (www/worker.js). Every
// resource of the page is same-origin, so `require-corp` blocks nothing. The first visit, which
// this worker does not serve yet, runs on one thread.
const CACHE = 'ctxr-v8';
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
const SHELL = [
  './', 'index.html', 'style.css',
  'main.js', 'hooks.js', 'status.js', 'rpc.js', 'input.js', 'viewer.js', 'batch.js', 'study.js', 'card.js', 'labelled.js', 'store.js', 'worker.js',
  'weights/manifest.json',
];
// What a page may ask to keep: the engine's files (and its glue's snippets), nothing else.
const KEEPABLE = /^\.\/pkg\/(snippets\/[\w-]+\/src\/)?[\w.-]+\.(js|wasm)$/;

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
      return isolated(res);
    } catch (err) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return isolated(hit);
      throw err;
    }
  })());
});

// `res` with the isolation headers added (a redirect or an opaque response is passed as it is:
// its headers cannot be read or rewritten).
function isolated(res) {
  if (res.type === 'opaqueredirect' || res.type === 'opaque' || res.status < 200) return res;
  const headers = new Headers(res.headers);
  for (const [name, value] of Object.entries(ISOLATION)) headers.set(name, value);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}
