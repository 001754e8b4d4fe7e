//! Classifier: one model, its manifest entry and the device it runs on, chosen at run time.
//! Turns preprocessed images into calibrated class probabilities and Grad-CAM maps. On the CPU
//! every pass, forward and Grad-CAM's backward, runs on the batch-norm-folded network
//! ([`crate::model::fused`]), read straight from the record; burn runs them on WebGPU.

use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::decision::{argmax, softmax};
use crate::decode::{DecodeError, DecodeOptions, MedImage, decode};
use crate::explain::gradcam::{Cam, CamError, cam_from_gradient, grad_cam_from, read};
use crate::imaging::{PreprocessError, Preprocessed, WindowChoice, preprocess};
use crate::model::parallel;
use crate::model::{Cnn, FusedCnn, LayerTime, Modality, ModelEntry, Record, WeightsError, check_record, model_from_record};

/// Why an image could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Cam(#[from] CamError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("the model returned {got} outputs for {expected} classes")]
    Output { expected: usize, got: usize },
}

impl ClassifyError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ClassifyError::Decode(e) => e.kind(),
            ClassifyError::Preprocess(_) => "preprocess",
            ClassifyError::Cam(_) => "gradcam",
            ClassifyError::Weights(_) => "weights",
            ClassifyError::Output { .. } => "model_output",
        }
    }
}

/// Class probabilities for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub classes: Vec<String>,
    pub logits: Vec<f32>,
    /// softmax(logits / T) with the manifest's temperature T.
    pub probabilities: Vec<f32>,
    /// Arg-max class.
    pub label: String,
    pub label_index: usize,
}

pub struct Classifier {
    pub entry: ModelEntry,
    /// burn's network. Built at load where burn runs the passes (WebGPU); on the CPU, where
    /// the fused network runs them all, from `record` when something first needs it
    /// (adaptation, ONNX export), which a page's start then does not pay.
    model: OnceLock<Cnn>,
    /// The record's bytes, checked against `entry`.
    record: Vec<u8>,
    device: Device,
    /// On the CPU, the network with batch-norm folded, read from the record, which runs every
    /// forward pass and Grad-CAM's backward pass.
    fused: Option<FusedCnn>,
}

impl Classifier {
    /// Load from record bytes (hash-checked against the manifest entry).
    pub fn load<'a>(entry: ModelEntry, record: impl Into<Record<'a>>, device: Device) -> Result<Self, WeightsError> {
        let record = check_record(entry.expected(), record)?;
        let arch = &entry.architecture;
        let (model, fused) = if device == Device::flex() {
            (OnceLock::new(), Some(FusedCnn::from_record(arch, record)?))
        } else {
            (OnceLock::from(model_from_record(arch, record.to_vec(), &device).map_err(WeightsError::Record)?), None)
        };
        Ok(Classifier { entry, model, record: record.to_vec(), device, fused })
    }

    /// burn's network (built on first use on the CPU).
    pub fn model(&self) -> Result<&Cnn, WeightsError> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let m = model_from_record(&self.entry.architecture, self.record.clone(), &self.device).map_err(WeightsError::Record)?;
        Ok(self.model.get_or_init(|| m))
    }

    /// Number of trunk stages (Grad-CAM targets), as the architecture says.
    pub fn num_stages(&self) -> usize {
        self.entry.architecture.stage_widths.len()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn modality(&self) -> Option<Modality> {
        self.entry.modality
    }

    /// Decode options suited to this model (the 16-bit TIFF convention).
    pub fn decode_options(&self) -> DecodeOptions {
        self.entry.decode_options()
    }

    pub fn preprocess(&self, img: &MedImage, window: WindowChoice) -> Result<Preprocessed, ClassifyError> {
        Ok(preprocess(img, &self.entry.preprocess, window)?)
    }

    /// Decode and preprocess file bytes.
    pub fn prepare(&self, bytes: &[u8], window: WindowChoice) -> Result<(MedImage, Preprocessed), ClassifyError> {
        let img = decode(bytes, &self.decode_options())?;
        let p = self.preprocess(&img, window)?;
        Ok((img, p))
    }

    fn input_size(&self) -> usize {
        self.entry.preprocess.input_size as usize
    }

    /// A batch tensor `[n, 1, S, S]` on this classifier's device.
    pub fn batch_tensor(&self, items: &[&Preprocessed]) -> Tensor<4> {
        let s = self.input_size();
        let mut data = Vec::with_capacity(items.len() * s * s);
        for p in items {
            data.extend_from_slice(&p.input);
        }
        Tensor::<4>::from_data(TensorData::new(data, [items.len(), 1, s, s]), &self.device)
    }

    /// Probabilities for a batch.
    pub async fn predict_batch(&self, items: &[&Preprocessed]) -> Result<Vec<Prediction>, ClassifyError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let n = items.len();
        let k = self.entry.classes.len();
        let flat = match &self.fused {
            // One image per thread at a time where there are threads (a study's batches).
            Some(f) => parallel::map(items, |p| f.forward(&p.input, self.input_size())).concat(),
            None => read(self.model()?.forward(self.batch_tensor(items)).reshape([n * k])).await?,
        };
        if flat.len() != n * k {
            return Err(ClassifyError::Output { expected: n * k, got: flat.len() });
        }
        let t = self.entry.temperature();
        Ok(flat.chunks_exact(k).map(|l| self.prediction(l.to_vec(), t)).collect())
    }

    pub async fn predict(&self, p: &Preprocessed) -> Result<Prediction, ClassifyError> {
        let mut v = self.predict_batch(&[p]).await?;
        v.pop().ok_or(ClassifyError::Output { expected: 1, got: 0 })
    }

    fn prediction(&self, logits: Vec<f32>, temperature: f32) -> Prediction {
        let probabilities = softmax(&logits, temperature);
        let label_index = argmax(&probabilities);
        Prediction {
            classes: self.entry.classes.clone(),
            label: self.entry.classes.get(label_index).cloned().unwrap_or_default(),
            label_index,
            logits,
            probabilities,
        }
    }

    /// Where a forward pass of `p` spends its time, layer by layer (median of `runs`, clock
    /// `now` in ms); `None` off the CPU, where the layers run as burn's device schedules them.
    pub fn profile(&self, p: &Preprocessed, runs: usize, now: &(dyn Fn() -> f64 + Sync)) -> Option<Vec<LayerTime>> {
        self.fused.as_ref().map(|f| f.profile(&p.input, self.input_size(), runs, now))
    }

    /// Grad-CAM for `class` at stage `layer` (1-based).
    pub async fn explain(&self, p: &Preprocessed, class: usize, layer: usize) -> Result<Cam, ClassifyError> {
        let stages = self.num_stages();
        if layer == 0 || layer > stages {
            return Err(CamError::NoSuchLayer { layer, stages }.into());
        }
        // On the CPU the fused network runs the backward pass too; elsewhere burn's autodiff.
        let Some(fused) = &self.fused else {
            let model = self.model()?;
            let a = model.trunk_until(self.batch_tensor(&[p]), layer - 1);
            return Ok(grad_cam_from(model, a, self.input_size(), class, layer).await?);
        };
        let classes = self.entry.classes.len();
        if class >= classes {
            return Err(CamError::NoSuchClass { class, classes }.into());
        }
        let (a, g, score) = fused.class_gradient(&p.input, self.input_size(), class, layer - 1).ok_or(CamError::NoGradient)?;
        Ok(cam_from_gradient(&a, &g, score, class, layer, self.input_size()))
    }

    /// Gate features (pooled last two stages) and logits for a batch, row-major `[n, features]`.
    pub async fn features(&self, items: &[&Preprocessed]) -> Result<(Vec<f32>, Vec<f32>), ClassifyError> {
        if let Some(fused) = &self.fused {
            let (features, logits): (Vec<_>, Vec<_>) = parallel::map(items, |p| fused.gate_features(&p.input, self.input_size())).into_iter().unzip();
            return Ok((features.concat(), logits.concat()));
        }
        let n = items.len();
        let (f, l) = self.model()?.gate_features(self.batch_tensor(items));
        let [_, d] = f.dims();
        let k = self.entry.classes.len();
        Ok((read(f.reshape([n * d])).await?, read(l.reshape([n * k])).await?))
    }
}
