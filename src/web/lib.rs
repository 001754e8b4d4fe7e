//! Web façade: the thin wasm-bindgen API that the page's Web Worker calls, and the only
//! `cdylib` of the workspace. It only converts between JavaScript values and
//! [`ctxr::infer::analysis`]: start a device (WebGPU or the `flex` CPU backend), load models
//! from fetched bytes (SHA-256 checked), analyse file bytes, re-window, Grad-CAM and timings,
//! and hand the page the constants it must not repeat (limits, window presets, colour maps).
//! Every error reaches JavaScript as `{kind, message}`; nothing a user supplies can panic
//! here, and a panic elsewhere is logged by `console_error_panic_hook`. Native builds of the
//! workspace compile this crate to nothing.
#![cfg(target_arch = "wasm32")]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
// The engine's state borrow is held across `await` on purpose: it is the engine's lock. Every
// call takes it with `try_borrow`/`try_borrow_mut`, so an overlapping call is answered `busy`
// instead of racing (or panicking).
#![allow(clippy::await_holding_refcell_ref)]

mod libc_shim;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Promise, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use ctxr::decode::Limits;
use ctxr::explain::{Colormap, colormap};
use ctxr::imaging::{WindowChoice, WindowPreset};
use ctxr::infer::analysis::{Analysis, AnalyzeError, Current, DISPLAY_MAX_SIDE, Models, Request};
use ctxr::model::device::{self, BackendKind};
use ctxr::model::{Manifest, ModelId};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The crate version (shown on the page).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

/// One named CT window, for the page's preset menu.
#[derive(Serialize)]
struct PresetOut {
    id: WindowPreset,
    label: &'static str,
    center: f32,
    width: f32,
}

/// What the page must know and not repeat.
#[derive(Serialize)]
struct PageConstants {
    /// Files larger than this are refused before they are read.
    max_file_bytes: usize,
    /// Longest side of the display copy of an image.
    display_max_side: u32,
    window_presets: Vec<PresetOut>,
    colormaps: Vec<Colormap>,
    /// Each colour map sampled at 33 evenly spaced values from 0 to 1 (the page's colour bar).
    colormap_stops: Vec<ColormapStops>,
    /// Heat below this is transparent, from `heat_opaque_from` up fully opaque (the
    /// overlay's alpha; the colour bar shows the fade).
    heat_transparent_below: f32,
    heat_opaque_from: f32,
    backends: Vec<BackendKind>,
}

/// One colour map's colours along its scale.
#[derive(Serialize)]
struct ColormapStops {
    colormap: Colormap,
    rgb: Vec<[u8; 3]>,
}

/// The limits, window presets, colour maps and backends the page offers.
#[wasm_bindgen]
pub fn page_constants() -> Result<JsValue, JsValue> {
    let c = PageConstants {
        max_file_bytes: Limits::default().max_file_bytes,
        display_max_side: DISPLAY_MAX_SIDE,
        window_presets: WindowPreset::ALL
            .into_iter()
            .map(|p| {
                let w = p.window();
                PresetOut { id: p, label: p.label(), center: w.center, width: w.width }
            })
            .collect(),
        colormaps: Colormap::ALL.to_vec(),
        colormap_stops: Colormap::ALL.into_iter().map(|c| ColormapStops { colormap: c, rgb: (0..=32).map(|i| c.rgb(i as f32 / 32.0)).collect() }).collect(),
        heat_transparent_below: colormap::TRANSPARENT_BELOW,
        heat_opaque_from: colormap::OPAQUE_FROM,
        backends: vec![BackendKind::WebGpu, BackendKind::Cpu],
    };
    to_js(&c)
}

struct State {
    models: Models,
    current: Option<Current>,
}

/// Models on one device plus the image last analysed. Calls are meant to be made one at a
/// time (the worker queues them); an overlapping call is refused with kind `busy`.
#[wasm_bindgen]
pub struct Engine {
    state: Rc<RefCell<State>>,
    backend: BackendKind,
}

fn error(kind: &str, message: &str) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"kind".into(), &kind.into());
    let _ = Reflect::set(&o, &"message".into(), &message.into());
    o.into()
}

/// `{kind, message}`, plus `model` (its id) when a model that is not loaded yet is needed, so
/// the worker can fetch it on demand and ask again.
fn analyze_error(e: &AnalyzeError) -> JsValue {
    let o = error(e.kind(), &e.to_string());
    if let AnalyzeError::ModelNotLoaded(id) = e {
        let _ = Reflect::set(&o, &"model".into(), &id.name().into());
    }
    o
}

fn model_id(id: &str) -> Result<ModelId, JsValue> {
    id.parse::<ModelId>().map_err(|e| error("bad_request", &e.to_string()))
}

fn busy() -> JsValue {
    error("busy", "the engine is still working on the previous request")
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| error("internal", &format!("result conversion failed: {e}")))
}

fn set_bytes(o: &JsValue, key: &str, bytes: &[u8]) {
    let _ = Reflect::set(o, &key.into(), &Uint8Array::from(bytes).into());
}

fn analysis_to_js(a: &Analysis) -> Result<JsValue, JsValue> {
    let o = to_js(a)?;
    set_bytes(&o, "display", &a.display);
    set_bytes(&o, "seen", &a.seen);
    Ok(o)
}

#[wasm_bindgen]
impl Engine {
    /// Start `backend` ("webgpu" or "cpu") with the manifest's JSON text. Resolves to an
    /// `Engine`, or rejects with `{kind, message}` (e.g. no WebGPU adapter).
    pub fn create(backend: String, manifest_json: String) -> Promise {
        future_to_promise(async move {
            let manifest = Manifest::parse(&manifest_json).map_err(|e| error("manifest", &e.to_string()))?;
            let kind = BackendKind::parse(&backend).ok_or_else(|| error("bad_backend", &format!("unknown backend '{backend}' (webgpu or cpu)")))?;
            let device = match kind {
                BackendKind::WebGpu => device::wgpu().await.map_err(|e| error("no_webgpu", &format!("WebGPU is not available: {e}")))?,
                BackendKind::Cpu => device::cpu(),
            };
            let engine = Engine { state: Rc::new(RefCell::new(State { models: Models::new(kind, device, manifest), current: None })), backend: kind };
            Ok(engine.into())
        })
    }

    /// "webgpu" or "cpu" (the one spelling, [`BackendKind::name`]).
    pub fn backend(&self) -> String {
        self.backend.name().into()
    }

    /// Load model `id` ("ct", "cxr", "gate") from its record bytes; the SHA-256 must match
    /// the manifest.
    pub fn load_model(&self, id: &str, record: &[u8]) -> Result<(), JsValue> {
        let id = model_id(id)?;
        let mut st = self.state.try_borrow_mut().map_err(|_| busy())?;
        st.models.load(id, record).map_err(|e| analyze_error(&e))
    }

    /// Ids of the loaded models.
    pub fn loaded(&self) -> Result<Vec<String>, JsValue> {
        Ok(self.state.try_borrow().map_err(|_| busy())?.models.loaded().into_iter().map(|m| m.name().to_string()).collect())
    }

    /// Median milliseconds of `runs` forward passes of model `id` on a blank input (after an
    /// untimed warm-up): what the page uses to pick the faster backend.
    pub fn benchmark(&self, id: String, runs: usize) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let id = model_id(&id)?;
            let st = state.try_borrow().map_err(|_| busy())?;
            let ms = st.models.benchmark(id, runs).await.map_err(|e| analyze_error(&e))?;
            Ok(ms.into())
        })
    }

    /// Analyse file bytes. `request` is `{model: "auto"|"ct"|"cxr", window: {kind: "auto"} |
    /// {kind: "from_file"} | {kind: "custom", center, width}, frame}` (all optional). Resolves
    /// to the analysis (with `display` and `seen` as `Uint8Array`s), rejects with `{kind, message}`.
    pub fn analyze(&self, bytes: Vec<u8>, request: JsValue) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let req: Request = if request.is_undefined() || request.is_null() {
                Request::default()
            } else {
                serde_wasm_bindgen::from_value(request).map_err(|e| error("bad_request", &e.to_string()))?
            };
            let mut st = state.try_borrow_mut().map_err(|_| busy())?;
            st.current = None;
            let (a, cur) = st.models.analyze(&bytes, &req).await.map_err(|e| analyze_error(&e))?;
            st.current = Some(cur);
            analysis_to_js(&a)
        })
    }

    /// Classify the current image through another window without changing its result (the
    /// page's labelled one-off): resolves to `{window, prediction, decision}`.
    pub fn try_window(&self, window: JsValue) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let w: WindowChoice = serde_wasm_bindgen::from_value(window).map_err(|e| error("bad_request", &e.to_string()))?;
            let st = state.try_borrow().map_err(|_| busy())?;
            let cur = st.current.as_ref().ok_or_else(|| analyze_error(&AnalyzeError::NoImage))?;
            let t = st.models.try_window(cur, w).await.map_err(|e| analyze_error(&e))?;
            to_js(&t)
        })
    }

    /// The current image through another window, for viewing only: returns `{window,
    /// display_width, display_height, display: Uint8Array}`; the model's result is unchanged.
    pub fn redisplay(&self, window: JsValue) -> Result<JsValue, JsValue> {
        let w: WindowChoice = serde_wasm_bindgen::from_value(window).map_err(|e| error("bad_request", &e.to_string()))?;
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let cur = st.current.as_ref().ok_or_else(|| analyze_error(&AnalyzeError::NoImage))?;
        let d = st.models.redisplay(cur, w).map_err(|e| analyze_error(&e))?;
        let o = to_js(&d)?;
        set_bytes(&o, "display", &d.display);
        Ok(o)
    }

    /// Grad-CAM of class index `class` at stage `layer` (1-based) of the current image,
    /// coloured with `colormap` (viridis, cividis, turbo, jet) at the display size. Resolves to
    /// `{…, rgba: Uint8Array}`.
    pub fn explain(&self, class: usize, layer: usize, colormap: String) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let cmap = Colormap::parse(&colormap).ok_or_else(|| error("bad_request", &format!("unknown colour map '{colormap}'")))?;
            let st = state.try_borrow().map_err(|_| busy())?;
            let cur = st.current.as_ref().ok_or_else(|| analyze_error(&AnalyzeError::NoImage))?;
            let h = st.models.explain(cur, class, layer, cmap).await.map_err(|e| analyze_error(&e))?;
            let o = to_js(&h)?;
            set_bytes(&o, "rgba", &h.rgba);
            Ok(o)
        })
    }

    /// Milliseconds of each of `runs` classifications of the current image's input.
    pub fn time_inference(&self, runs: usize) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let st = state.try_borrow().map_err(|_| busy())?;
            let cur = st.current.as_ref().ok_or_else(|| analyze_error(&AnalyzeError::NoImage))?;
            let v = st.models.time_current(cur, runs.min(1000)).await.map_err(|e| analyze_error(&e))?;
            to_js(&v)
        })
    }
}
