//! Web façade: the thin wasm-bindgen API that the page's Web Worker calls, and the only
//! `cdylib` of the workspace. It only converts between JavaScript values and
//! [`ctxr::infer::analysis`]: start a device (WebGPU or the `flex` CPU backend), load models
//! from fetched bytes (SHA-256 checked), analyse file bytes, re-window, Grad-CAM and timings;
//! open CT studies (a NIfTI file, or a folder's DICOM series added file by file), score them
//! in steps between which slices can be shown, and cut their axial, coronal and sagittal
//! views; measure and adapt a model on the user's own labelled images ([`labelled`]); and
//! hand the page the constants it must not repeat (limits, window presets, colour
//! maps).
//! Every error reaches JavaScript as `{kind, message}`; nothing a user supplies can panic
//! here, and a panic elsewhere is logged by `console_error_panic_hook`. Native builds of the
//! workspace compile this crate to nothing.
#![cfg(target_arch = "wasm32")]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
// The engine's state borrow is held across `await` on purpose: it is the engine's lock. Every
// call takes it with `try_borrow`/`try_borrow_mut`, so an overlapping call is answered `busy`
// instead of racing (or panicking).
#![allow(clippy::await_holding_refcell_ref)]

mod labelled;
mod libc_shim;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Promise, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use ctxr::decode::series::{SeriesBuilder, SetAside, StackProblem};
use ctxr::decode::{Limits, Plane, decode_volume};
use ctxr::explain::{Colormap, colormap};
use ctxr::imaging::{WindowChoice, WindowPreset};
use ctxr::infer::analysis::{Analysis, AnalyzeError, Current, DISPLAY_MAX_SIDE, Models, Request};
use ctxr::infer::study::{self, MIN_STUDY_SLICES, OpenStudy, StudyScorer};
use ctxr::model::device::{self, BackendKind};
use ctxr::model::{Manifest, Modality, ModelId, Record, decode_options, hex};

// The static constructors of the module's dependencies (cubecl registers about 4,900 for its
// WGSL compiler). Called once, here: a module whose exports never call them is linked
// "command-style", and wasm-ld then runs every constructor at the start of *every* export —
// each engine call, each malloc from the glue — which cost milliseconds per call (issue 16).
unsafe extern "C" {
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: the linker's constructor list, run once before any other export (wasm-bindgen
    // calls the start function first, on instantiation).
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

/// The threaded build's pool (`initThreadPool(n)` in JavaScript): starts `n` Web Workers that
/// share this module's memory, rayon's threads for the inference kernels. The page's worker
/// calls it once, after instantiating the module and before the first model runs.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

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
    /// The folder being read file by file (`series_add`), until `series_finish`.
    builder: Option<SeriesBuilder>,
    /// The studies last opened (a NIfTI file, or the series of one folder).
    studies: Vec<OpenStudy>,
}

/// What opening a folder or a volume file gave: the studies (indices into the engine's list),
/// the files set aside and why, and the names of those that are not part of any study and
/// should be read as single images (non-DICOM files, series too short to be a study).
#[derive(Serialize)]
struct Opened<'a> {
    studies: &'a [OpenStudy],
    set_aside: Vec<SetAside>,
    single_images: Vec<String>,
}

/// Models on one device plus the image last analysed. Calls are meant to be made one at a
/// time (the worker queues them); an overlapping call is refused with kind `busy`.
#[wasm_bindgen]
pub struct Engine {
    state: Rc<RefCell<State>>,
    /// The study being scored step by step (its index in `State::studies`), apart from the
    /// state so that slices can be shown between steps.
    scoring: Rc<RefCell<Option<(usize, StudyScorer)>>>,
    /// The user's labelled set and its adaptation ([`labelled`]).
    own: labelled::OwnCell,
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

/// The SHA-256 of `bytes` (lower-case hex) by the browser's native `crypto.subtle`, or `None`
/// where it is missing (a page served over plain HTTP from another machine is not a secure
/// context) or fails: the caller then hashes in wasm ([`Record`]).
async fn browser_sha256(bytes: &[u8]) -> Option<String> {
    let subtle = Reflect::get(&Reflect::get(&js_sys::global(), &"crypto".into()).ok()?, &"subtle".into()).ok()?;
    let digest: js_sys::Function = Reflect::get(&subtle, &"digest".into()).ok()?.dyn_into().ok()?;
    let promise: Promise = digest.call2(&subtle, &"SHA-256".into(), &Uint8Array::from(bytes)).ok()?.dyn_into().ok()?;
    let hash = Uint8Array::new(&wasm_bindgen_futures::JsFuture::from(promise).await.ok()?).to_vec();
    (hash.len() == 32).then(|| hex(&hash))
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

impl Engine {
    /// Drop a scoring in progress: the studies it refers to are being replaced.
    fn stop_scoring(&self) {
        if let Ok(mut s) = self.scoring.try_borrow_mut() {
            *s = None;
        }
    }
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
            let engine = Engine {
                state: Rc::new(RefCell::new(State { models: Models::new(kind, device, manifest), current: None, builder: None, studies: Vec::new() })),
                scoring: Rc::default(),
                own: Rc::default(),
                backend: kind,
            };
            Ok(engine.into())
        })
    }

    /// "webgpu" or "cpu" (the one spelling, [`BackendKind::name`]).
    pub fn backend(&self) -> String {
        self.backend.name().into()
    }

    /// Load model `id` ("ct", "cxr", "gate") from its record bytes; the SHA-256 must match
    /// the manifest. Resolves when loaded; rejects with `{kind, message}`.
    pub fn load_model(&self, id: String, record: Vec<u8>) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let id = model_id(&id)?;
            let record = match browser_sha256(&record).await {
                Some(sha) => Record::hashed(&record, sha),
                None => Record::from(&record),
            };
            let mut st = state.try_borrow_mut().map_err(|_| busy())?;
            st.models.load(id, record).map_err(|e| analyze_error(&e))?;
            Ok(JsValue::UNDEFINED)
        })
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

    /// The logits of model `id` for `n` preprocessed inputs (`n · S · S` values, `n` ≤ 64) in
    /// one batch, `n · classes` values: the forward pass alone, which the speed benchmark times
    /// against onnxruntime-web and at several batch sizes (tests/e2e/bench-infer.mjs).
    pub fn logits(&self, id: String, input: Vec<f32>) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let id = model_id(&id)?;
            let st = state.try_borrow().map_err(|_| busy())?;
            let v = st.models.logits(id, input).await.map_err(|e| analyze_error(&e))?;
            Ok(js_sys::Float32Array::from(v.as_slice()).into())
        })
    }

    /// Grad-CAM of class index `class` at stage `layer` (1-based) of model `id` for one
    /// preprocessed `input`, before colouring: `{layer, class, score, peak, map_width, …}`. For
    /// the speed benchmark (Grad-CAM against one forward pass).
    pub fn grad_cam(&self, id: String, input: Vec<f32>, class: usize, layer: usize) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let id = model_id(&id)?;
            let st = state.try_borrow().map_err(|_| busy())?;
            let cam = st.models.grad_cam(id, input, class, layer).await.map_err(|e| analyze_error(&e))?;
            to_js(&cam)
        })
    }

    /// The CPU forward pass of model `id` on `input`, layer by layer: `[{layer, output, macs,
    /// ms}]` (median of `runs`), or `null` on WebGPU. For the speed benchmark.
    pub fn profile(&self, id: String, input: Vec<f32>, runs: usize) -> Result<JsValue, JsValue> {
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let v = st.models.profile(model_id(&id)?, input, runs.min(1000)).map_err(|e| analyze_error(&e))?;
        to_js(&v)
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

    /// Start reading a folder (its earlier studies are closed).
    pub fn series_begin(&self) -> Result<(), JsValue> {
        let mut st = self.state.try_borrow_mut().map_err(|_| busy())?;
        st.studies.clear();
        self.stop_scoring();
        st.builder = Some(SeriesBuilder::new(Limits::default().max_voxels));
        Ok(())
    }

    /// Add one file of the folder (its path in the folder, its bytes). Returns whether it is
    /// DICOM; anything else is left for the page to read as a single image.
    pub fn series_add(&self, name: &str, bytes: &[u8]) -> Result<bool, JsValue> {
        let mut st = self.state.try_borrow_mut().map_err(|_| busy())?;
        let builder = st.builder.as_mut().ok_or_else(|| error("bad_request", "series_add before series_begin"))?;
        Ok(builder.add_file(name, bytes, &decode_options(Some(Modality::Ct))))
    }

    /// Stack the folder's series: resolves to `{studies, set_aside, single_images}`, each
    /// study `{name, series, volume, value_range}`; the studies stay open for viewing.
    pub fn series_finish(&self, folder: &str) -> Result<JsValue, JsValue> {
        let mut st = self.state.try_borrow_mut().map_err(|_| busy())?;
        let set = st.builder.take().ok_or_else(|| error("bad_request", "series_finish before series_begin"))?.finish();
        let mut single_images: Vec<String> = Vec::new();
        let mut set_aside = Vec::new();
        for s in set.set_aside {
            // A file that is not DICOM is the page's to read as a single image.
            if s.not_dicom {
                single_images.push(s.file);
            } else {
                set_aside.push(s);
            }
        }
        let (studies, short): (Vec<_>, Vec<_>) = set.series.into_iter().partition(|s| s.volume.slices >= MIN_STUDY_SLICES);
        // A short series' files, and any duplicate left out of it, are single images.
        for s in short {
            let dropped = s.problems.iter().filter_map(|p| match p {
                StackProblem::DuplicatePosition { dropped, .. } => Some(dropped.clone()),
                _ => None,
            });
            let files: Vec<String> = s.files.iter().cloned().chain(dropped).collect();
            single_images.extend(files.into_iter().map(|f| f.split('#').next().unwrap_or_default().to_string()));
        }
        single_images.dedup();
        let numbered = studies.len() > 1;
        st.studies = studies.into_iter().map(|s| OpenStudy::from_series(folder, s, numbered)).collect();
        to_js(&Opened { studies: &st.studies, set_aside, single_images })
    }

    /// Open a volume file (NIfTI `.nii`/`.nii.gz`) as the one open study.
    pub fn open_volume(&self, name: String, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let mut st = self.state.try_borrow_mut().map_err(|_| busy())?;
        st.studies.clear();
        self.stop_scoring();
        st.builder = None;
        let volume = decode_volume(bytes, &decode_options(Some(Modality::Ct))).map_err(|e| error(e.kind(), &e.to_string()))?;
        st.studies = vec![OpenStudy::new(name, None, volume)];
        to_js(&Opened { studies: &st.studies, set_aside: Vec::new(), single_images: Vec::new() })
    }

    /// Start scoring open study `index` with the CT model, `batch` slices per forward pass
    /// (absent: [`study::batch_for`] the engine's backend). The worker then calls
    /// `study_step` until it says `finished`, free to show slices between steps, and
    /// `study_finish` for the score.
    pub fn study_begin(&self, index: usize, batch: Option<usize>) -> Result<(), JsValue> {
        let batch = batch.unwrap_or_else(|| study::batch_for(self.backend)).clamp(1, study::MAX_BATCH);
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let mut scoring = self.scoring.try_borrow_mut().map_err(|_| busy())?;
        let open = st.studies.get(index).ok_or_else(|| analyze_error(&AnalyzeError::NoStudy(index)))?;
        let clf = st.models.classifier(ModelId::Ct).map_err(|e| analyze_error(&e))?;
        let scorer = StudyScorer::new(clf, &open.volume, batch).map_err(|e| analyze_error(&e.into()))?;
        *scoring = Some((index, scorer));
        Ok(())
    }

    /// One step of the scoring begun by `study_begin`: resolves to `{stage: "measuring" |
    /// "classifying" | "finished", done, total}`.
    pub fn study_step(&self) -> Promise {
        let (state, scoring) = (self.state.clone(), self.scoring.clone());
        future_to_promise(async move {
            // Shared: the page may show slices (`view_volume`) while a step awaits the device.
            let st = state.try_borrow().map_err(|_| busy())?;
            let mut scoring = scoring.try_borrow_mut().map_err(|_| busy())?;
            let (index, scorer) = scoring.as_mut().ok_or_else(|| error("bad_request", "study_step before study_begin"))?;
            let open = st.studies.get(*index).ok_or_else(|| analyze_error(&AnalyzeError::NoStudy(*index)))?;
            let clf = st.models.classifier(ModelId::Ct).map_err(|e| analyze_error(&e))?;
            let p = scorer.step(clf, &open.volume).await.map_err(|e| analyze_error(&e.into()))?;
            to_js(&p)
        })
    }

    /// The score of the study scored by `study_step` (the scorer is dropped).
    pub fn study_finish(&self) -> Result<JsValue, JsValue> {
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let (index, scorer) =
            self.scoring.try_borrow_mut().map_err(|_| busy())?.take().ok_or_else(|| error("bad_request", "study_finish before study_begin"))?;
        let open = st.studies.get(index).ok_or_else(|| analyze_error(&AnalyzeError::NoStudy(index)))?;
        to_js(&scorer.finish(&open.volume))
    }

    /// Image `k` of `plane` ("axial", "coronal", "sagittal") of open study `index` through
    /// `window`, for viewing: `{plane, index, count, window, display_width, display_height,
    /// width_mm, height_mm, display: Uint8Array}`.
    pub fn view_volume(&self, index: usize, plane: JsValue, k: u32, window: JsValue) -> Result<JsValue, JsValue> {
        let plane: Plane = serde_wasm_bindgen::from_value(plane).map_err(|e| error("bad_request", &e.to_string()))?;
        let w: WindowChoice = serde_wasm_bindgen::from_value(window).map_err(|e| error("bad_request", &e.to_string()))?;
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let study = st.studies.get(index).ok_or_else(|| analyze_error(&AnalyzeError::NoStudy(index)))?;
        let v = st.models.view_volume(&study.volume, plane, k, w).map_err(|e| analyze_error(&e))?;
        let o = to_js(&v)?;
        set_bytes(&o, "display", &v.display);
        Ok(o)
    }

    /// Axial slice `k` of open study `index` read by the CT model as a single image; it
    /// becomes the current image, so `explain` draws its Grad-CAM. Resolves to the analysis.
    pub fn analyze_slice(&self, index: usize, k: u32) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            // Shared while the model runs, so that slices can still be shown meanwhile.
            let (a, cur) = {
                let st = state.try_borrow().map_err(|_| busy())?;
                let study = st.studies.get(index).ok_or_else(|| analyze_error(&AnalyzeError::NoStudy(index)))?;
                st.models.analyze_slice(&study.volume, k).await.map_err(|e| analyze_error(&e))?
            };
            state.try_borrow_mut().map_err(|_| busy())?.current = Some(cur);
            analysis_to_js(&a)
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
