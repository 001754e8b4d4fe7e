//! Manifest: `weights/manifest.json`, the one description of the shipped models that the page,
//! the CLI and the model card all read. For each model it says its id, classes, input size,
//! preprocessing, architecture, the SHA-256 of its record, how it was trained, how it measured
//! and the decision rule to apply. Every field is typed here, so a reader never re-parses free
//! JSON and a writer cannot store a field that the readers do not know.
//!
//! The bulk of the measurements (every metric of every set, ROC curves, the cross-validation)
//! is only drawn by the model card, so it lives beside the manifest in one details file per
//! model ([`Details`], named by the entry as its record is): the page starts with the
//! manifest alone (290 KB instead of 557, 66 KB gzip instead of 104) and fetches the details
//! when the card comes into view. The CLI reads and writes both (`ctxr_lab::weights`), so that
//! for it an entry is whole.

use serde::{Deserialize, Serialize};

use super::cnn::ModelConfig;
pub use super::id::{Modality, ModelId, UnknownModel, decode_options};
use super::report::{CrossValidation, Evaluation, EvaluationSets, ShortcutCheck, TrainingSummary};
use super::weights::{Expected, WeightsError, sha256_hex};
use crate::decode::DecodeOptions;
use crate::imaging::PreprocessConfig;

/// The stored decision rule: call the positive class when its probability reaches the threshold,
/// otherwise the most probable of the other classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub positive_class: String,
    pub threshold: f64,
    pub target_sensitivity: f64,
    /// Measured on the validation data the threshold was chosen on.
    pub validation_sensitivity: f64,
    pub validation_specificity: f64,
    pub chosen_on: String,
}

/// Below this AUC on sources a model never saw, each of its results is shown with a warning.
pub const WEAK_AUC: f64 = 0.75;

/// Mahalanobis model of the gate CNN's penultimate features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateParams {
    pub feature_dim: usize,
    /// One mean per gate class (ct, cxr), `feature_dim` each.
    pub means: Vec<Vec<f32>>,
    /// Inverse of the shared covariance, row-major `feature_dim²`.
    pub precision: Vec<f32>,
    /// Accept when the smallest squared distance is at most this.
    pub threshold: f32,
    /// The quantile of training distances the threshold sits at, and its margin factor.
    pub threshold_quantile: f32,
    pub threshold_margin: f32,
    /// Refuse images whose colourfulness (Hasler–Süsstrunk) exceeds this.
    pub max_colourfulness: f32,
    /// Ask the user instead of accepting when the network's larger of P(ct) and P(cxr) is
    /// below this (0: never ask). Chosen on the gate's held-out fold by `ctxr eval --model
    /// gate --store`; see [`crate::model::report::GateEvaluation::ask`].
    #[serde(default)]
    pub ask_below: f32,
}

/// Storage type of a record's floating-point parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordDtype {
    F16,
    F32,
}

/// One model of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: ModelId,
    pub title: String,
    /// What the model decides, in words ([`ModelId::definition`]; absent in older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// The kind of image the model reads (`None` for the input gate, which reads any).
    #[serde(default)]
    pub modality: Option<Modality>,
    pub classes: Vec<String>,
    /// File name of the record, relative to the manifest.
    pub record: String,
    /// Lower-case hex SHA-256 of the record file.
    pub sha256: String,
    pub record_bytes: u64,
    pub dtype: RecordDtype,
    pub params: usize,
    pub architecture: ModelConfig,
    pub preprocess: PreprocessConfig,
    /// Softmax temperature fitted on validation data (1.0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The decision rule at a stored operating point (written by `ctxr train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_point: Option<OperatingPoint>,
    /// Measured metrics; `None` means the weights were never evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
    /// The gate's distance model (the gate entry only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateParams>,
    /// Set when these weights were adapted on a user's own images (not validated): the base
    /// model and what cross-validation on that set measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapted: Option<Box<crate::model::adapted::Provenance>>,
    #[serde(default)]
    pub credits: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// File name of the model's [`Details`], relative to the manifest, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// What the model card draws besides the manifest entry: the evaluation's sets and the
/// cross-validation ([`crate::model::report::ModelEvaluation::sets`],
/// [`TrainingSummary::cross_validation`]), stored in `<id>.details.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<EvaluationSets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidation>,
}

impl Details {
    pub fn parse(json: &str) -> Result<Self, WeightsError> {
        serde_json::from_str(json).map_err(WeightsError::Manifest)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.sets.is_none() && self.cross_validation.is_none()
    }
}

/// What [`ModelEntry::new`] needs besides the record.
pub struct EntrySpec<'a> {
    pub id: ModelId,
    pub title: &'a str,
    pub classes: &'a [String],
    pub dtype: RecordDtype,
    pub params: usize,
    pub architecture: ModelConfig,
    pub preprocess: PreprocessConfig,
}

impl ModelEntry {
    /// An entry for `record` (its hash and size filled in) with no training or evaluation yet.
    pub fn new(spec: EntrySpec, record: &[u8]) -> Self {
        ModelEntry {
            id: spec.id,
            title: spec.title.into(),
            definition: Some(spec.id.definition().into()),
            modality: spec.id.modality(),
            classes: spec.classes.to_vec(),
            record: spec.id.record_file(),
            sha256: sha256_hex(record),
            record_bytes: record.len() as u64,
            dtype: spec.dtype,
            params: spec.params,
            architecture: spec.architecture,
            preprocess: spec.preprocess,
            temperature: None,
            operating_point: None,
            evaluation: None,
            training: None,
            gate: None,
            adapted: None,
            credits: Vec::new(),
            notes: Vec::new(),
            details: None,
        }
    }

    /// Take the details out of the entry (as the manifest stores it), naming their file;
    /// `None`, and no file named, when it has none.
    pub fn detach(&mut self) -> Option<Details> {
        let d = Details {
            sets: match &mut self.evaluation {
                Some(Evaluation::Model(e)) => e.sets.take(),
                _ => None,
            },
            cross_validation: self.training.as_mut().and_then(|t| t.cross_validation.take()),
        };
        self.details = (!d.is_empty()).then(|| format!("{}.details.json", self.id.name()));
        self.details.is_some().then_some(d)
    }

    /// Put details read from the entry's details file back into it.
    pub fn attach(&mut self, d: Details) {
        if let (Some(Evaluation::Model(e)), Some(sets)) = (&mut self.evaluation, d.sets) {
            e.sets = Some(sets);
        }
        if let (Some(t), Some(cv)) = (&mut self.training, d.cross_validation) {
            t.cross_validation = Some(cv);
        }
    }

    /// True when the manifest carries an evaluation of these weights.
    pub fn is_evaluated(&self) -> bool {
        self.evaluation.is_some()
    }

    /// The "new hospital" AUC: the leave-one-source-out mean when measured, else the headline
    /// of the stored evaluation (its external and held-out sets).
    pub fn unseen_source_auc(&self) -> Option<(f64, &'static str)> {
        let loso = self.training.as_ref().and_then(|t| t.leave_one_source_out.as_ref()).and_then(|l| l.mean_auc);
        if let Some(a) = loso {
            return Some((a, "on sources it was never trained on (leave-one-source-out mean)"));
        }
        match &self.evaluation {
            Some(Evaluation::Model(e)) => e.auc.or(e.macro_auc).map(|a| (a, "on its held-out and external sets")),
            _ => None,
        }
    }

    /// True when the model's AUC on unseen sources is below [`WEAK_AUC`]: every result it
    /// gives carries a warning.
    pub fn below_bar(&self) -> bool {
        self.unseen_source_auc().is_some_and(|(a, _)| a < WEAK_AUC)
    }

    /// The measured weaknesses a reader of one result must know, as sentences (from the
    /// stored evaluation; none without one): the AUC on unseen sources, and the set of images
    /// without the positive class that the model most often calls positive at its operating
    /// point (sets of 20 images or more).
    pub fn cautions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((auc, how)) = self.unseen_source_auc() {
            out.push(format!("AUC {auc:.2} {how}; 0.5 is chance."));
        }
        let audit = match &self.evaluation {
            Some(Evaluation::Model(e)) => e.audit.as_ref(),
            _ => None,
        };
        if let (Some(a), Some(op)) = (audit, &self.operating_point) {
            let called = |s: &&ShortcutCheck| s.at_operating_point.get(&op.positive_class).copied().unwrap_or(0.0);
            let worst = a.shortcuts.iter().filter(|s| s.n >= 20).max_by(|x, y| called(x).total_cmp(&called(y)));
            if let Some(s) = worst.filter(|s| called(s) > 0.0) {
                let argmax = s.by_argmax.get(&op.positive_class).copied().unwrap_or(0.0);
                out.push(format!(
                    "Of {} images without {} ({}), it called {:.0} % {} at its alert threshold ({:.0} % by the most probable class).",
                    s.n,
                    op.positive_class,
                    s.set,
                    100.0 * called(&s),
                    op.positive_class,
                    100.0 * argmax
                ));
            }
        }
        out
    }

    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The softmax temperature to apply (1 when none was fitted or the stored one is unusable).
    pub fn temperature(&self) -> f32 {
        self.temperature.filter(|t| *t > 0.0 && t.is_finite()).unwrap_or(1.0)
    }

    /// What this entry's record must be (for [`super::weights::load_model`]).
    pub fn expected(&self) -> Expected<'_> {
        Expected { sha256: &self.sha256, architecture: &self.architecture, classes: self.classes.len() }
    }

    /// How to decode files for this model (see [`decode_options`]).
    pub fn decode_options(&self) -> DecodeOptions {
        decode_options(self.modality)
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
        serde_json::from_str(json).map_err(WeightsError::Manifest)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn model(&self, id: ModelId) -> Result<&ModelEntry, WeightsError> {
        self.models.iter().find(|m| m.id == id).ok_or_else(|| WeightsError::NoSuchModel { id, known: self.models.iter().map(|m| m.id).collect() })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of `a` is in `b` with the same value. `null` and absent mean the same (not
    /// measurable); numbers compare as f32 (the gate's parameters are stored as f32, everything
    /// else survives exactly). `b` may add fields: a recipe stored before a field existed gains
    /// that field's default, written out.
    fn same(a: &serde_json::Value, b: &serde_json::Value, path: &str, diffs: &mut Vec<String>) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in x.iter().filter(|(_, v)| !v.is_null()) {
                    match y.get(k) {
                        Some(w) => same(v, w, &format!("{path}.{k}"), diffs),
                        None => diffs.push(format!("{path}.{k} lost")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    same(v, w, &format!("{path}[{i}]"), diffs);
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                if x != y && (x as f32) != (y as f32) {
                    diffs.push(format!("{path}: {x} vs {y}"));
                }
            }
            _ if a == b => {}
            _ => diffs.push(format!("{path}: {a} vs {b}")),
        }
    }

    /// The JSON as stored (`raw_text`) against what the types wrote of it (`again_text`): no
    /// field lost or changed; and what they write, read back, writes identically (`rewritten`).
    fn round_trips(raw_text: &str, again_text: &str, rewritten: &str, what: &str) {
        let raw: serde_json::Value = serde_json::from_str(raw_text).expect("json");
        let again: serde_json::Value = serde_json::from_str(again_text).expect("json");
        let mut diffs = Vec::new();
        same(&raw, &again, what, &mut diffs);
        assert!(diffs.is_empty(), "fields lost or changed by the typed {what}:\n{}", diffs.join("\n"));
        assert_eq!(again_text, rewritten, "{what}: what the types write, they read back and write identically");
    }

    #[test]
    fn the_committed_manifest_and_details_round_trip_through_the_types_without_loss() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights");
        let text = std::fs::read_to_string(dir.join("manifest.json")).expect("weights/manifest.json is committed");
        let typed = Manifest::parse(&text).expect("the committed manifest parses into the typed manifest");
        assert_eq!(typed.models.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ModelId::Gate, ModelId::Cxr, ModelId::Ct]);
        for m in &typed.models {
            assert!(m.evaluation.is_some() && m.training.is_some(), "{}: evaluation and training are typed", m.id);
        }
        round_trips(&text, &typed.to_json(), &Manifest::parse(&typed.to_json()).map(|m| m.to_json()).unwrap_or_default(), "manifest");
        // Each details file the manifest names, and the whole entries they make: detached again,
        // they give back the manifest as stored (no detail left in it, none lost).
        let mut whole = typed.clone();
        for m in &mut whole.models {
            let Some(file) = m.details.clone() else { continue };
            let text = std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("{file} (named by the manifest) is committed: {e}"));
            let d = Details::parse(&text).expect("the details parse");
            assert!(!d.is_empty(), "{file} holds details");
            round_trips(&text, &d.to_json(), &Details::parse(&d.to_json()).map(|d| d.to_json()).unwrap_or_default(), &file);
            m.attach(d);
        }
        assert!(whole.models.iter().any(|m| m.details.is_some()), "the shipped models' details are stored beside the manifest");
        for m in &mut whole.models {
            m.detach();
        }
        assert_eq!(whole.to_json(), typed.to_json(), "the manifest stores no details, and detaching loses none");
    }
}
