// input.js — one job: take the user's files and feed them to the engine one at a time. Files
// come from a drop (files or whole folders), the two pickers, or a paste; each becomes a row of
// the batch and waits in the queue, which is analysed strictly in order so only one file is in
// memory at a time (a 300-slice folder must not be read at once). A folder is first offered to
// the engine as a CT series: its DICOM slices are stacked into studies (the study view), and
// what is not part of a study becomes rows as single files. A NIfTI file opens as a study. A
// file above the engine's size limit (`page_constants().max_file_bytes`) is refused before it
// is read.
import { call } from './rpc.js';
import { pageState, setStatus } from './status.js';
import { addRow, markWorking, recordError, recordResult, updateBatch, updateRow } from './batch.js';
import { show, showError } from './viewer.js';
import { presentStudies, showOpenStudy } from './study.js';

const $ = (id) => document.getElementById(id);
const input = {
  queue: [], // rows waiting to be analysed, and folders ({folder, files}) waiting to be opened
  running: false, // a file is being analysed (the queue or a reopened row)
  maxFileBytes: null, // the engine's byte budget; unknown until it has started
};

export function configureInput({ constants }) {
  input.maxFileBytes = constants.max_file_bytes;
}

export function enqueue(files) {
  const list = [...files].filter((f) => f && f.size !== undefined);
  if (!list.length) return;
  for (const file of list) {
    const name = file.webkitRelativePath || file.relPath || file.name || 'pasted image';
    input.queue.push(addRow(file, name));
  }
  updateBatch();
  pump();
}

// A file's path inside its top folder, and that folder.
const pathOf = (f) => f.webkitRelativePath || f.relPath || f.name;
const topFolder = (f) => pathOf(f).split('/')[0];
const inFolder = (f) => pathOf(f).split('/').slice(1).join('/');

/** Files of one or more folders: each top folder is opened as a CT series; loose files are rows. */
export function enqueueFolder(files) {
  const folders = new Map();
  const loose = [];
  for (const f of files) {
    if (!pathOf(f).includes('/')) { loose.push(f); continue; }
    if (!folders.has(topFolder(f))) folders.set(topFolder(f), []);
    folders.get(topFolder(f)).push(f);
  }
  for (const [folder, list] of folders) input.queue.push({ folder, files: list });
  enqueue(loose);
  pump();
}

/** Open one file in the viewer, read by `model` ('ct' | 'cxr'), as a new row of the batch. */
export function openFileAs(file, name, model) {
  const row = addRow(file, name);
  row.readAs = model;
  input.queue.push(row);
  updateBatch();
  pump();
}

/** Forget the files not analysed yet (the batch was cleared). */
export function clearQueue() {
  input.queue = [];
}

async function walkEntry(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    file.relPath = prefix + file.name;
    out.push(file);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await walkEntry(e, `${prefix}${entry.name}/`, out);
    }
  }
}

export function setupInput() {
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const items = [...(e.dataTransfer.items || [])];
    const entries = items.map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (entries.some((en) => en.isDirectory)) {
      const out = [];
      for (const en of entries) await walkEntry(en, '', out);
      out.sort((a, b) => a.relPath.localeCompare(b.relPath, undefined, { numeric: true }));
      enqueueFolder(out);
    } else {
      enqueue(e.dataTransfer.files);
    }
  });
  drop.addEventListener('click', () => $('files').click());
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('files').click(); }
  });
  $('files').addEventListener('change', (e) => { enqueue(e.target.files); e.target.value = ''; });
  $('folder').addEventListener('change', (e) => {
    const files = [...e.target.files].sort((a, b) => a.webkitRelativePath.localeCompare(b.webkitRelativePath, undefined, { numeric: true }));
    enqueueFolder(files);
    e.target.value = '';
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); enqueue(files); }
  });
}

/** Analyse the queued files in order; does nothing while the engine is starting or failed. */
export async function pump() {
  if (input.running || pageState() === 'loading' || pageState() === 'error') return;
  input.running = true;
  try {
    while (input.queue.length) {
      const item = input.queue.shift();
      setStatus('busy');
      if (item.folder !== undefined) await openFolder(item);
      else await analyzeRow(item, true);
      updateBatch();
    }
  } finally {
    input.running = false;
    if (pageState() === 'busy') setStatus('ready');
  }
}

/** Show a finished row again (its file is read anew: results keep no full-size pixels). */
export async function reopen(row) {
  if (input.running || row.status === 'queued') return;
  input.running = true;
  try {
    if (!row.study) await analyzeRow(row, false);
    // A study still open in the engine is shown at once; an older one is opened and scored anew.
    else if (!(await showOpenStudy(row))) await (row.study.folder !== undefined ? openFolder(row.study) : openVolume(row));
  } finally { input.running = false; pump(); }
}

// A folder: the engine stacks its DICOM series into studies, which are shown and scored; the
// files that are in no study (not DICOM, or a series of one or two images) are read as single
// files, right after. A folder with no study at all is read file by file, as before.
async function openFolder(job) {
  const files = job.files.map((file) => ({ name: inFolder(file), file }));
  let opened;
  try {
    opened = await call('open_folder', { folder: job.folder, files });
  } catch (e) {
    const row = job.rows?.[0] || addRow(null, job.folder);
    recordError(row, e, 0);
    updateRow(row);
    showError(row, e);
    return;
  }
  if (!opened.studies.length) {
    input.queue.unshift(...job.files.map((f) => addRow(f, pathOf(f))));
    return;
  }
  const byName = new Map(files.map((f) => [f.name, f.file]));
  const fresh = !job.rows;
  job.rows = job.rows || opened.studies.map((s) => {
    const row = addRow(null, s.name);
    row.study = job;
    return row;
  });
  job.rows.forEach((row) => markWorking(row));
  if (fresh) {
    const singles = [...new Set(opened.single_images)].map((n) => byName.get(n)).filter(Boolean);
    input.queue.unshift(...singles.map((f) => addRow(f, pathOf(f))));
  }
  await presentStudies(opened, job.rows);
}

// A volume file (NIfTI): its row becomes a study.
async function openVolume(row) {
  row.study = row.study || { file: row.file };
  markWorking(row);
  const opened = await call('open_volume', { name: row.name, file: row.file });
  await presentStudies(opened, [row]);
}

/** Read one file again with `model` ('ct' | 'cxr') chosen for it alone; its row is updated. */
export async function readAs(row, model) {
  if (input.running || row.status === 'queued') return;
  row.readAs = model;
  input.running = true;
  try { await analyzeRow(row, true); } finally { input.running = false; updateBatch(); pump(); }
}

/** The file on screen again, after the model choice for every file changed. */
export async function rerun(row) {
  if (!row || input.running || row.status === 'queued') return;
  input.running = true;
  try { await analyzeRow(row, true); } finally { input.running = false; updateBatch(); pump(); }
}

// The model always reads its trained input (window 'auto'): window/level is display only.
function request(row) {
  return { model: row.readAs || $('model').value, window: { kind: 'auto' }, frame: 0 };
}

function tooLarge(file) {
  const max = input.maxFileBytes;
  if (!max || file.size <= max) return null;
  return { kind: 'file_too_large', message: `the file is ${(file.size / 2 ** 20).toFixed(0)} MB, above the ${max / 2 ** 20} MB limit` };
}

// `record`: a batch file (its row is updated); otherwise a finished row shown again.
async function analyzeRow(row, record) {
  if (record) markWorking(row);
  const t = performance.now();
  try {
    // The byte budget is checked before the file is read into memory (the engine checks it too).
    const big = tooLarge(row.file);
    if (big) throw big;
    const bytes = await row.file.arrayBuffer();
    const r = await call('analyze', { bytes, request: request(row) }, [bytes]);
    if (row.cleared) return;
    if (record) recordResult(row, r, performance.now() - t);
    show(row, r);
  } catch (e) {
    if (row.cleared) return;
    if (e && e.kind === 'is_volume') {
      try { await openVolume(row); } catch (e2) { recordError(row, e2, performance.now() - t); showError(row, e2); updateRow(row); }
      return;
    }
    if (record) recordError(row, e, performance.now() - t);
    showError(row, e);
  }
  updateRow(row);
}
