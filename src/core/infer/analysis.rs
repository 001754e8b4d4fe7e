//! Analysis: one user file through decode → gate → preprocess → model, as a front end (the web
//! page's worker, tests) needs it: a typed, serialisable result with the gate's verdict, the
//! calibrated probabilities, the decision at the stored operating point and per-stage timings.
//! The decoded image is kept so that a new window or a Grad-CAM for another class or layer
//! needs no second decode. Runs on whichever device the models were loaded on.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::classifier::{Classifier, ClassifyError, Prediction};
use super::decision::Decision;
use super::gate::Gatekeeper;
use super::route::{Verdict, by_metadata, without_network};
use super::study::{MAX_BATCH, Progress, StudyError, StudyScore, score_study};
use crate::decode::{MedImage, Plane, Volume, Window, decode_frame};
use crate::explain::gradcam::Cam;
use crate::explain::{Colormap, opacity, to_original};
use crate::imaging::{Letterbox, PreprocessConfig, Preprocessed, Region, WindowChoice, render, resize, resolve_window};
use crate::model::{BackendKind, LayerTime, Manifest, Modality, ModelEntry, ModelId, Record, WeightsError, decode_options};

/// Longest side of the display copy of an image (the page's canvases).
pub const DISPLAY_MAX_SIDE: u32 = 768;

/// Which model reads the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelChoice {
    /// The input gate decides (DICOM Modality first, then the gate network).
    #[default]
    Auto,
    Ct,
    Cxr,
}

impl ModelChoice {
    /// The modality the user chose (`None`: the gate decides).
    pub fn modality(self) -> Option<Modality> {
        match self {
            ModelChoice::Auto => None,
            ModelChoice::Ct => Some(Modality::Ct),
            ModelChoice::Cxr => Some(Modality::Cxr),
        }
    }
}

/// What to do with one file.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    pub model: ModelChoice,
    pub window: WindowChoice,
    /// Frame of a multi-frame DICOM (0-based).
    pub frame: u32,
}

/// Why a file could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("the {0} model is not loaded")]
    ModelNotLoaded(ModelId),
    #[error("no image has been analysed yet")]
    NoImage,
    #[error("cannot tell whether this is a chest CT slice or a chest X-ray; choose the model by hand")]
    Undecided,
    #[error(transparent)]
    Study(#[from] StudyError),
    #[error("the volume has {count} {plane:?} images; there is no image {index}")]
    NoSlice { plane: Plane, index: u32, count: u32 },
    #[error("no study is open (or study {0} is not one of those opened)")]
    NoStudy(usize),
    #[error("only a CT or X-ray model can be replaced by an adapted one, not the input gate")]
    GateNotReplaceable,
    #[error("the model reads {expected} values per image ({size} × {size}), at most {max_images} images at once; got {got} values")]
    InputSize { size: usize, expected: usize, max_images: usize, got: usize },
}

impl AnalyzeError {
    /// A stable machine-readable name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            AnalyzeError::Classify(e) => e.kind(),
            AnalyzeError::Weights(_) => "weights",
            AnalyzeError::ModelNotLoaded(_) => "model_not_loaded",
            AnalyzeError::NoImage => "no_image",
            AnalyzeError::Undecided => "undecided",
            AnalyzeError::Study(StudyError::Classify(e)) => e.kind(),
            AnalyzeError::Study(StudyError::NotCt(_)) => "not_ct",
            AnalyzeError::NoSlice { .. } => "no_slice",
            AnalyzeError::NoStudy(_) => "no_study",
            AnalyzeError::GateNotReplaceable | AnalyzeError::InputSize { .. } => "bad_request",
        }
    }
}

/// Milliseconds spent in each step (0 for steps that did not run).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub gate_ms: f64,
    pub preprocess_ms: f64,
    pub model_ms: f64,
    pub total_ms: f64,
}

/// The result for one file.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// What the decoder found (format, size, bit depth, HU, DICOM facts …).
    pub image: MedImage,
    /// The gate's verdict; `None` when the user chose the model.
    pub gate: Option<Verdict>,
    /// True when the gate refused the image (no prediction then).
    pub refused: bool,
    /// The model that read it.
    pub model: Option<ModelId>,
    pub model_title: Option<String>,
    /// False for weights whose manifest carries no evaluation: their numbers mean nothing.
    pub evaluated: bool,
    pub prediction: Option<Prediction>,
    pub decision: Option<Decision>,
    /// The intensity mapping applied (in the image's units).
    pub window: Window,
    /// Grad-CAM targets, shallow to deep.
    pub layers: Vec<String>,
    /// The part of the display image the model read (the lung crop, or all of it), in
    /// display pixels; `None` when refused.
    pub crop: Option<PixelBox>,
    /// The model's measured weaknesses, as sentences ([`crate::model::ModelEntry::cautions`]).
    pub cautions: Vec<String>,
    /// The model's AUC on unseen sources is below the bar ([`crate::model::WEAK_AUC`]).
    pub below_bar: bool,
    pub timings: Timings,
    pub backend: BackendKind,
    /// The image through `window` at display size (8-bit grey, row-major).
    pub display_width: u32,
    pub display_height: u32,
    #[serde(skip)]
    pub display: Vec<u8>,
    /// What the model saw: the square 8-bit input (empty when refused).
    pub seen_size: u32,
    #[serde(skip)]
    pub seen: Vec<u8>,
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PixelBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The display image again through another window (the model's result does not change).
#[derive(Debug, Clone, Serialize)]
pub struct Display {
    pub window: Window,
    pub display_width: u32,
    pub display_height: u32,
    #[serde(skip)]
    pub display: Vec<u8>,
}

/// The current image classified through another window, not its result.
#[derive(Debug, Clone, Serialize)]
pub struct WindowTrial {
    pub window: Window,
    pub prediction: Prediction,
    pub decision: Option<Decision>,
}

/// A Grad-CAM heatmap coloured at the display size.
#[derive(Debug, Clone, Serialize)]
pub struct Heatmap {
    pub class: usize,
    pub class_name: String,
    pub layer: usize,
    pub layer_name: String,
    pub colormap: Colormap,
    /// max of ReLU(Σ α_k A_k) before normalisation; 0 means no positive evidence for the class.
    pub peak: f32,
    /// The class logit y_c.
    pub score: f32,
    pub map_width: usize,
    pub map_height: usize,
    pub width: u32,
    pub height: u32,
    pub ms: f64,
    /// RGBA, `width × height × 4`, alpha from [`crate::explain::opacity`] (weak heat is
    /// transparent); blend it over the display image with any opacity.
    #[serde(skip)]
    pub rgba: Vec<u8>,
    /// The normalised heat, `width × height`, values in [0, 1].
    #[serde(skip)]
    pub heat: Vec<f32>,
}

/// One plane of a volume at display size, for the study viewer: view only, the model reads
/// the axial slices through its own window whatever is shown.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeView {
    pub plane: Plane,
    pub index: u32,
    /// Images along this plane.
    pub count: u32,
    pub window: Window,
    pub display_width: u32,
    pub display_height: u32,
    /// The image's physical size, so that a reformat is drawn in true proportion.
    pub width_mm: f32,
    pub height_mm: f32,
    #[serde(skip)]
    pub display: Vec<u8>,
}

/// The image last analysed, kept for re-windowing and Grad-CAM.
pub struct Current {
    pub image: MedImage,
    pub model: Option<ModelId>,
    pub prepared: Option<Preprocessed>,
    pub prediction: Option<Prediction>,
    pub display_width: u32,
    pub display_height: u32,
}

/// Milliseconds since an arbitrary start (`performance.now()` in a browser, where
/// `std::time::Instant` does not exist). Imported directly: looking `performance.now` up by
/// reflection on every call cost milliseconds per call in Chromium.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        #[wasm_bindgen::prelude::wasm_bindgen]
        extern "C" {
            #[wasm_bindgen(js_namespace = performance, js_name = now)]
            fn performance_now() -> f64;
        }
        performance_now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1000.0
    }
}

/// The loaded models on one device.
pub struct Models {
    pub backend: BackendKind,
    pub device: Device,
    pub manifest: Manifest,
    classifiers: Vec<Classifier>,
    gate: Option<Gatekeeper>,
}

impl Models {
    pub fn new(backend: BackendKind, device: Device, manifest: Manifest) -> Self {
        Models { backend, device, manifest, classifiers: Vec::new(), gate: None }
    }

    /// Load model `id` from its record bytes (SHA-256 checked against the manifest).
    pub fn load<'a>(&mut self, id: ModelId, record: impl Into<Record<'a>>) -> Result<(), AnalyzeError> {
        let entry = self.manifest.model(id)?.clone();
        let clf = Classifier::load(entry, record, self.device.clone())?;
        match id {
            ModelId::Gate => self.gate = Some(Gatekeeper::new(clf)?),
            ModelId::Ct | ModelId::Cxr => {
                self.classifiers.retain(|c| c.entry.id != id);
                self.classifiers.push(clf);
            }
        }
        Ok(())
    }

    /// Load a model whose entry is not the manifest's, in place of that model: an adapted
    /// model the user saved or just made. Its record is checked against `entry`'s SHA-256;
    /// on success the entry replaces the manifest's, so that every later answer (title,
    /// operating point, cautions) describes these weights.
    pub fn install(&mut self, entry: ModelEntry, record: &[u8]) -> Result<(), AnalyzeError> {
        if entry.id == ModelId::Gate {
            return Err(AnalyzeError::GateNotReplaceable);
        }
        let clf = Classifier::load(entry.clone(), record, self.device.clone())?;
        self.classifiers.retain(|c| c.entry.id != entry.id);
        self.classifiers.push(clf);
        self.manifest.upsert(entry);
        Ok(())
    }

    /// The input gate, once loaded (a user's labelled files are read past it as every file is).
    pub fn gate(&self) -> Option<&Gatekeeper> {
        self.gate.as_ref()
    }

    pub fn loaded(&self) -> Vec<ModelId> {
        let mut v: Vec<ModelId> = self.classifiers.iter().map(|c| c.entry.id).collect();
        if self.gate.is_some() {
            v.push(ModelId::Gate);
        }
        v
    }

    /// The loaded model `id` (the gate's network too).
    pub fn classifier(&self, id: ModelId) -> Result<&Classifier, AnalyzeError> {
        let gate = self.gate.as_ref().map(|g| &g.classifier).filter(|_| id == ModelId::Gate);
        gate.or_else(|| self.classifiers.iter().find(|c| c.entry.id == id)).ok_or(AnalyzeError::ModelNotLoaded(id))
    }

    fn for_modality(&self, m: Modality) -> Result<&Classifier, AnalyzeError> {
        self.classifier(m.model())
    }

    /// Median time of `runs` forward passes (after one untimed warm-up, which on WebGPU
    /// compiles the shaders) of model `id` on a blank input, read back to the host.
    pub async fn benchmark(&self, id: ModelId, runs: usize) -> Result<f64, AnalyzeError> {
        let clf = self.classifier(id)?;
        let s = clf.entry.preprocess.input_size as usize;
        let blank = model_input(s, vec![0.0; s * s]);
        clf.predict(&blank).await?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let t = now_ms();
            clf.predict(&blank).await?;
            times.push(now_ms() - t);
        }
        Ok(median(&mut times))
    }

    /// The logits of model `id` for a batch of inputs as preprocessing makes them (`n` images
    /// of `S × S` values, row-major, one after the other; `n` ≤ [`MAX_BATCH`]), `n · classes`
    /// values: the forward pass alone, in one batch, for benchmarks against other runtimes and
    /// of batch sizes.
    pub async fn logits(&self, id: ModelId, input: Vec<f32>) -> Result<Vec<f32>, AnalyzeError> {
        let (clf, inputs) = self.given_input(id, input, MAX_BATCH)?;
        let batch: Vec<&Preprocessed> = inputs.iter().collect();
        Ok(clf.predict_batch(&batch).await?.into_iter().flat_map(|p| p.logits).collect())
    }

    /// Grad-CAM of class index `class` at stage `layer` (1-based) of model `id` for one
    /// preprocessed `input`, as the page computes it for the current image (before colouring):
    /// for the speed benchmark, which compares its time with one forward pass.
    pub async fn grad_cam(&self, id: ModelId, input: Vec<f32>, class: usize, layer: usize) -> Result<Cam, AnalyzeError> {
        let (clf, inputs) = self.given_input(id, input, 1)?;
        let p = inputs.first().ok_or(AnalyzeError::NoImage)?;
        Ok(clf.explain(p, class, layer).await?)
    }

    /// The CPU forward pass of model `id` on one `input`, layer by layer (median ms of
    /// `runs`): `None` on WebGPU.
    pub fn profile(&self, id: ModelId, input: Vec<f32>, runs: usize) -> Result<Option<Vec<LayerTime>>, AnalyzeError> {
        let (clf, inputs) = self.given_input(id, input, 1)?;
        Ok(inputs.first().and_then(|p| clf.profile(p, runs, &now_ms)))
    }

    /// Model `id` and `input` as its inputs, checked to be 1 to `max_images` images of
    /// `S × S` values.
    fn given_input(&self, id: ModelId, input: Vec<f32>, max_images: usize) -> Result<(&Classifier, Vec<Preprocessed>), AnalyzeError> {
        let clf = self.classifier(id)?;
        let size = clf.entry.preprocess.input_size as usize;
        let per = size * size;
        if per == 0 || input.is_empty() || !input.len().is_multiple_of(per) || input.len() / per > max_images {
            return Err(AnalyzeError::InputSize { size, expected: per, max_images, got: input.len() });
        }
        if input.len() == per {
            return Ok((clf, vec![model_input(size, input)]));
        }
        Ok((clf, input.chunks_exact(per).map(|image| model_input(size, image.to_vec())).collect()))
    }

    /// Decode, gate, preprocess and classify one file.
    pub async fn analyze(&self, bytes: &[u8], req: &Request) -> Result<(Analysis, Current), AnalyzeError> {
        let t0 = now_ms();
        let image = decode_frame(bytes, req.frame, &decode_options(req.model.modality())).map_err(ClassifyError::from)?;
        let t1 = now_ms();
        let (gate, modality) = match req.model {
            // A hand choice replaces the gate's network, never its colour and DICOM rules: a
            // photograph or an MR file is refused whatever the user chose.
            ModelChoice::Ct | ModelChoice::Cxr => {
                let colourful = self.gate.as_ref().map_or(f32::INFINITY, |g| g.params.max_colourfulness);
                match by_metadata(&image, colourful).filter(|v| !v.accepted) {
                    Some(refusal) => (Some(refusal), None),
                    None => (None, req.model.modality()),
                }
            }
            ModelChoice::Auto => {
                let v = match &self.gate {
                    Some(g) => g.judge(&image, false).await?,
                    None => without_network(&image).ok_or(AnalyzeError::Undecided)?,
                };
                let m = if v.accepted { v.modality } else { None };
                (Some(v), m)
            }
        };
        let t2 = now_ms();
        let mut current = Current { image, model: None, prepared: None, prediction: None, display_width: 0, display_height: 0 };
        let mut a = match modality {
            Some(m) => {
                current.model = Some(self.for_modality(m)?.entry.id);
                self.classify_current(&mut current, req.window).await?
            }
            None => self.refused(&mut current, req.window)?,
        };
        a.gate = gate;
        a.timings.decode_ms = t1 - t0;
        a.timings.gate_ms = t2 - t1;
        a.timings.total_ms = now_ms() - t0;
        Ok((a, current))
    }

    /// Preprocess and classify the current image with `window` (a new window needs no decode).
    pub async fn classify_current(&self, cur: &mut Current, window: WindowChoice) -> Result<Analysis, AnalyzeError> {
        let id = cur.model.ok_or(AnalyzeError::NoImage)?;
        let clf = self.classifier(id)?;
        let t0 = now_ms();
        let prepared = clf.preprocess(&cur.image, window)?;
        let t1 = now_ms();
        let prediction = clf.predict(&prepared).await?;
        let t2 = now_ms();
        let decision = Decision::at_operating_point(&clf.entry, &prediction.probabilities);
        let (display, dw, dh) = display_image(&cur.image, prepared.window);
        cur.display_width = dw;
        cur.display_height = dh;
        let (x0, y0, x1, y1) = prepared.letterbox.source.to_pixels(dw, dh);
        let a = Analysis {
            image: cur.image.clone_meta(),
            gate: None,
            refused: false,
            model: Some(id),
            model_title: Some(clf.entry.title.clone()),
            evaluated: clf.entry.is_evaluated(),
            prediction: Some(prediction.clone()),
            decision,
            window: prepared.window,
            layers: clf.entry.architecture.layer_names(),
            crop: Some(PixelBox { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }),
            cautions: clf.entry.cautions(),
            below_bar: clf.entry.below_bar(),
            timings: Timings { preprocess_ms: t1 - t0, model_ms: t2 - t1, ..Timings::default() },
            backend: self.backend,
            display_width: dw,
            display_height: dh,
            display,
            seen_size: prepared.size,
            seen: prepared.seen.clone(),
        };
        cur.prepared = Some(prepared);
        cur.prediction = Some(prediction);
        Ok(a)
    }

    fn refused(&self, cur: &mut Current, window: WindowChoice) -> Result<Analysis, AnalyzeError> {
        let w = resolve_window(&cur.image, &PreprocessConfig::new(128), window).map_err(ClassifyError::from)?;
        let (display, dw, dh) = display_image(&cur.image, w);
        cur.display_width = dw;
        cur.display_height = dh;
        Ok(Analysis {
            image: cur.image.clone_meta(),
            gate: None,
            refused: true,
            model: None,
            model_title: None,
            evaluated: false,
            prediction: None,
            decision: None,
            window: w,
            layers: Vec::new(),
            crop: None,
            cautions: Vec::new(),
            below_bar: false,
            timings: Timings::default(),
            backend: self.backend,
            display_width: dw,
            display_height: dh,
            display,
            seen_size: 0,
            seen: Vec::new(),
        })
    }

    /// Grad-CAM of `class` at stage `layer` (1-based) for the current image, coloured with
    /// `colormap` at the display size.
    pub async fn explain(&self, cur: &Current, class: usize, layer: usize, colormap: Colormap) -> Result<Heatmap, AnalyzeError> {
        let id = cur.model.ok_or(AnalyzeError::NoImage)?;
        let p = cur.prepared.as_ref().ok_or(AnalyzeError::NoImage)?;
        let clf = self.classifier(id)?;
        let t = now_ms();
        let cam = clf.explain(p, class, layer).await?;
        let (w, h) = (cur.display_width, cur.display_height);
        let heat = to_original(&cam.heat, p.size, p.letterbox, w, h);
        let mut rgba = Vec::with_capacity(heat.len() * 4);
        for &v in &heat {
            let [r, g, b] = colormap.rgb(v);
            rgba.extend_from_slice(&[r, g, b, (opacity(v) * 255.0).round() as u8]);
        }
        Ok(Heatmap {
            class,
            class_name: clf.entry.classes.get(class).cloned().unwrap_or_default(),
            layer,
            layer_name: format!("stage{layer}"),
            colormap,
            peak: cam.peak,
            score: cam.score,
            map_width: cam.map_width,
            map_height: cam.map_height,
            width: w,
            height: h,
            ms: now_ms() - t,
            rgba,
            heat,
        })
    }

    /// The current image classified through another `window`, without changing what the
    /// current analysis holds (its result, its input for Grad-CAM): the page's labelled one-off
    /// "how does the model react to inputs it was not trained on".
    pub async fn try_window(&self, cur: &Current, window: WindowChoice) -> Result<WindowTrial, AnalyzeError> {
        let id = cur.model.ok_or(AnalyzeError::NoImage)?;
        let clf = self.classifier(id)?;
        let prepared = clf.preprocess(&cur.image, window)?;
        let prediction = clf.predict(&prepared).await?;
        let decision = Decision::at_operating_point(&clf.entry, &prediction.probabilities);
        Ok(WindowTrial { window: prepared.window, prediction, decision })
    }

    /// The current image through `window` at display size, for viewing only: the model's
    /// input and result stay as they were.
    pub fn redisplay(&self, cur: &Current, window: WindowChoice) -> Result<Display, AnalyzeError> {
        let cfg = match cur.model {
            Some(id) => self.classifier(id)?.entry.preprocess.clone(),
            None => PreprocessConfig::new(128),
        };
        let w = resolve_window(&cur.image, &cfg, window).map_err(ClassifyError::from)?;
        let (display, display_width, display_height) = display_image(&cur.image, w);
        Ok(Display { window: w, display_width, display_height, display })
    }

    /// Score `volume` as a study with the CT model (see [`score_study`]), `batch` slices per
    /// forward pass.
    pub async fn score_study(&self, volume: &Volume, batch: usize, progress: impl FnMut(Progress)) -> Result<StudyScore, AnalyzeError> {
        let clf = self.classifier(ModelId::Ct)?;
        Ok(score_study(clf, volume, batch, progress).await?)
    }

    /// Image `index` of `plane` through `window` at display size, for viewing only. The
    /// window is resolved as the CT model's input is ("auto" is its lung window on HU), from
    /// its manifest entry, so that it works before the model is downloaded.
    pub fn view_volume(&self, volume: &Volume, plane: Plane, index: u32, window: WindowChoice) -> Result<VolumeView, AnalyzeError> {
        let count = volume.count(plane);
        let img = volume.cut(plane, index).ok_or(AnalyzeError::NoSlice { plane, index, count })?;
        let cfg = self.manifest.model(ModelId::Ct).map(|e| e.preprocess.clone()).unwrap_or_else(|_| PreprocessConfig::new(128));
        let w = resolve_window(&img, &cfg, window).map_err(ClassifyError::from)?;
        let (display, display_width, display_height) = display_image(&img, w);
        let [px, py] = volume.pixel_mm(plane);
        Ok(VolumeView {
            plane,
            index,
            count,
            window: w,
            display_width,
            display_height,
            width_mm: px * img.width as f32,
            height_mm: py * img.height as f32,
            display,
        })
    }

    /// Axial slice `index` of `volume` read by the CT model as a single image (its full result,
    /// kept as the current image for Grad-CAM): the viewer's "explain this slice".
    pub async fn analyze_slice(&self, volume: &Volume, index: u32) -> Result<(Analysis, Current), AnalyzeError> {
        let t0 = now_ms();
        let count = volume.slices;
        let image = volume.axial(index).ok_or(AnalyzeError::NoSlice { plane: Plane::Axial, index, count })?;
        let model = Some(self.classifier(ModelId::Ct)?.entry.id);
        let mut current = Current { image, model, prepared: None, prediction: None, display_width: 0, display_height: 0 };
        let mut a = self.classify_current(&mut current, WindowChoice::Auto).await?;
        a.timings.total_ms = now_ms() - t0;
        Ok((a, current))
    }

    /// Times `runs` classifications of the current image's input (model + read-back), in ms.
    pub async fn time_current(&self, cur: &Current, runs: usize) -> Result<Vec<f64>, AnalyzeError> {
        let id = cur.model.ok_or(AnalyzeError::NoImage)?;
        let p = cur.prepared.as_ref().ok_or(AnalyzeError::NoImage)?;
        let clf = self.classifier(id)?;
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = now_ms();
            clf.predict(p).await?;
            v.push(now_ms() - t);
        }
        Ok(v)
    }
}

/// The image through `window` at display size (longest side at most [`DISPLAY_MAX_SIDE`]).
pub fn display_image(img: &MedImage, window: Window) -> (Vec<u8>, u32, u32) {
    let (w, h) = (img.width.max(1), img.height.max(1));
    let full = render(img, window);
    if w.max(h) <= DISPLAY_MAX_SIDE {
        return (full, w, h);
    }
    let scale = DISPLAY_MAX_SIDE as f64 / w.max(h) as f64;
    let (nw, nh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let unit: Vec<f32> = full.iter().map(|&v| f32::from(v)).collect();
    let small = resize(&unit, w, h, nw, nh).into_iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    (small, nw, nh)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A model input given directly (no image behind it): the whole frame is content.
fn model_input(size: usize, input: Vec<f32>) -> Preprocessed {
    Preprocessed {
        size: size as u32,
        input,
        seen: Vec::new(),
        letterbox: Letterbox { x: 0, y: 0, width: size as u32, height: size as u32, source: Region::FULL },
        window: Window { center: 0.5, width: 1.0 },
    }
}
