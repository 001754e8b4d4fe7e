// store.js — one job: keep adapted models in this browser (IndexedDB), so that a model adapted
// on a user's images survives a reload without leaving the machine. Each is kept whole — its
// manifest entry (JSON text, with the base's SHA-256, the data summary and the cross-validation)
// and its record — under its own SHA-256, so keeping the same model twice keeps it once.
const DB = 'ctxr';
const STORE = 'adapted';

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'sha256' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject({ kind: 'storage', message: `this browser's storage is not available: ${req.error?.message || 'unknown error'}` });
  });
}

async function run(mode, f) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject({ kind: 'storage', message: `could not use this browser's storage: ${tx.error?.message || 'unknown error'}` });
    });
  } finally { db.close(); }
}

/** Keep `{entry (object), record (Uint8Array)}`; resolves when it is written. */
export function keep({ entry, record }) {
  return run('readwrite', (s) => s.put({ sha256: entry.sha256, id: entry.id, title: entry.title, entry: JSON.stringify(entry), record, saved: new Date().toISOString() }));
}

/** Every kept model: [{sha256, id, title, entry (JSON text), record, saved}], newest first. */
export async function kept() {
  const all = await run('readonly', (s) => s.getAll());
  return all.sort((a, b) => b.saved.localeCompare(a.saved));
}

export function forget(sha256) {
  return run('readwrite', (s) => s.delete(sha256));
}
