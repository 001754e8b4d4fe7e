//! Weights: trained records (burnpack bytes, f32 or f16) plus `weights/manifest.json`, which
//! says for each model its classes, input size, preprocessing, architecture, the SHA-256 of
//! its record, what it was trained on and how it measured. Records load from bytes so the
//! browser can fetch and cache them; a record whose SHA-256 differs is refused.

use burn::module::{Module, ModuleMapper, Param};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Cnn, ModelConfig};
use crate::preprocess::PreprocessConfig;

/// Which kind of image a model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Ct,
    Cxr,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Modality::Ct => "ct",
            Modality::Cxr => "cxr",
        }
    }
}

/// One model of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Short id ("ct", "cxr").
    pub id: String,
    pub title: String,
    /// The kind of image the model reads (`None` for the input gate, which reads any).
    #[serde(default)]
    pub modality: Option<Modality>,
    pub classes: Vec<String>,
    /// File name of the record, relative to the manifest.
    pub record: String,
    /// Lower-case hex SHA-256 of the record file.
    pub sha256: String,
    pub record_bytes: u64,
    /// Storage dtype of the record ("f32" or "f16").
    pub dtype: String,
    pub params: usize,
    pub architecture: ModelConfig,
    pub preprocess: PreprocessConfig,
    /// Softmax temperature fitted on validation data (1.0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Decision rule at a stored operating point (free-form, written by `ctxr train`/`eval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_point: Option<serde_json::Value>,
    /// Measured metrics; `None` means the weights were never evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<serde_json::Value>,
    #[serde(default)]
    pub credits: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

impl ModelEntry {
    /// An entry for `record` (its hash and size filled in) with no training or evaluation yet.
    pub fn new(id: &str, title: &str, modality: Option<Modality>, classes: &[&str], record_name: &str, record: &[u8], dtype: &str, params: usize, architecture: ModelConfig, preprocess: PreprocessConfig) -> Self {
        ModelEntry {
            id: id.into(),
            title: title.into(),
            modality,
            classes: classes.iter().map(|c| c.to_string()).collect(),
            record: record_name.into(),
            sha256: sha256_hex(record),
            record_bytes: record.len() as u64,
            dtype: dtype.into(),
            params,
            architecture,
            preprocess,
            temperature: None,
            operating_point: None,
            evaluation: None,
            training: None,
            gate: None,
            credits: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// True when the manifest carries an evaluation of these weights.
    pub fn is_evaluated(&self) -> bool {
        self.evaluation.as_ref().is_some_and(|v| !v.is_null())
    }

    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.eq_ignore_ascii_case(name))
    }
}

/// `weights/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub disclaimer: String,
    pub models: Vec<ModelEntry>,
}

pub const DISCLAIMER: &str = "Research and teaching tool. Not a medical device; not for clinical use or diagnosis.";

impl Manifest {
    pub fn parse(json: &str) -> Result<Self, WeightsError> {
        serde_json::from_str(json).map_err(|e| WeightsError::Manifest(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn model(&self, id: &str) -> Result<&ModelEntry, WeightsError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| WeightsError::NoSuchModel { id: id.into(), known: self.models.iter().map(|m| m.id.clone()).collect() })
    }

    /// Insert or replace the entry with the same id.
    pub fn upsert(&mut self, entry: ModelEntry) {
        match self.models.iter_mut().find(|m| m.id == entry.id) {
            Some(m) => *m = entry,
            None => self.models.push(entry),
        }
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest { format_version: 1, disclaimer: DISCLAIMER.into(), models: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("the manifest could not be read: {0}")]
    Manifest(String),
    #[error("no model '{id}' in the manifest (it has: {})", known.join(", "))]
    NoSuchModel { id: String, known: Vec<String> },
    #[error("the weights file does not match the manifest (SHA-256 {got}, expected {expected}): it is damaged, truncated or from another version; download it again")]
    ShaMismatch { expected: String, got: String },
    #[error("the weights could not be loaded into the model: {0}")]
    Record(String),
    #[error("the manifest's architecture is invalid: {0}")]
    Architecture(String),
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check the record's hash, then build the model on `device` and load the record into it.
/// The model comes back in inference mode.
pub fn load_model(entry: &ModelEntry, record: &[u8], device: &Device) -> Result<Cnn, WeightsError> {
    let got = sha256_hex(record);
    if !got.eq_ignore_ascii_case(entry.sha256.trim()) {
        return Err(WeightsError::ShaMismatch { expected: entry.sha256.clone(), got });
    }
    let arch = &entry.architecture;
    if arch.stage_widths.is_empty() || arch.num_classes == 0 || arch.num_classes != entry.classes.len() || arch.stage_widths.len() > 8 {
        return Err(WeightsError::Architecture(format!(
            "{} stages, {} outputs for {} classes",
            arch.stage_widths.len(),
            arch.num_classes,
            entry.classes.len()
        )));
    }
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(record.to_vec())).map_err(|e| WeightsError::Record(e.to_string()))?;
    let model = arch.init(device);
    let model = model.try_load_record(rec.cast_to_module_dtype()).map_err(|e| WeightsError::Record(e.to_string()))?;
    Ok(model.valid())
}

struct Cast(DType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// Serialise a model's parameters (inference copy) to burnpack bytes, as f16 or f32.
pub fn record_bytes(model: &Cnn, half: bool) -> Result<Vec<u8>, WeightsError> {
    let m = model.valid();
    let m = if half { m.map(&mut Cast(DType::F16)) } else { m };
    let bytes = m.into_record().into_bytes().map_err(|e| WeightsError::Record(e.to_string()))?;
    Ok(bytes.to_vec())
}
