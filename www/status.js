// status.js — one job: the page's state and the engine line of the status bar (the header's
// aria-live region, so screen readers hear when the engine starts, is ready or failed).
// Every module sets the state through `setStatus` and reads it through `pageState`, so there is
// one writer and one place to look: 'loading' (the engine is starting), 'ready', 'busy' (a file
// is being analysed) or 'error' (the engine could not start). The state is reported to the
// test hooks; no CSS depends on it, so it is not mirrored into the DOM.
import { record } from './hooks.js';

const $ = (id) => document.getElementById(id);
const status = { state: 'loading' };

/**
 * Set the page state and, when given, the live region's text: `engine` (the engine's name or
 * what it is doing) and `how` (why that engine, or why it failed).
 */
export function setStatus(state, text = {}) {
  status.state = state;
  if (text.engine !== undefined) $('backend').textContent = text.engine;
  if (text.how !== undefined) $('backend-how').textContent = text.how;
  record({ state });
}

export const pageState = () => status.state;

/**
 * The engine's name for a backend id ('webgpu' | 'cpu'): short ("CPU") or long, with the CPU's
 * threads ("CPU (WebAssembly, 2 threads)").
 */
export function engineName(backend, long = false, threads = 1) {
  if (backend === 'webgpu') return 'WebGPU';
  return long ? `CPU (WebAssembly, ${threads} thread${threads === 1 ? '' : 's'})` : 'CPU';
}
