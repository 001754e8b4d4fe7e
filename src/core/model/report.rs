//! Reports: the typed shape of what the manifest says about a model's training and measured
//! performance. The lab builds these, the manifest stores them, and the model card (Markdown
//! and the page's panel) renders them, so a number has one name from the metric code to the
//! reader. Floats are `f64` and `None` where a metric is undefined (a set without positives
//! has no AUC), written as `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::ModelId;
use super::recipe::TrainConfig;

/// Images per source and label, e.g. `{"mosmed": {"covid": 423, "noncovid": 121}}`.
pub type SourceCounts = BTreeMap<String, BTreeMap<String, usize>>;

/// One point of a ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub fpr: f64,
    pub tpr: f64,
    pub threshold: f64,
}

/// One class's one-vs-rest metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    pub class: String,
    /// Images of this class (absent in the operating-point table, where it repeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support: Option<u64>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
}

/// Metrics of the decisions at the stored operating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtOperatingPoint {
    pub threshold: f64,
    pub positive_class: String,
    pub accuracy: Option<f64>,
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<ClassRow>,
}

/// CT patient-level scores from the slices' positive-class probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientLevel {
    pub patients: usize,
    pub patients_with_several_slices: usize,
    pub auc_max: Option<f64>,
    pub auc_mean: Option<f64>,
    #[serde(rename = "accuracy_max_at_0.5")]
    pub accuracy_max_at_half: Option<f64>,
    #[serde(rename = "accuracy_mean_at_0.5")]
    pub accuracy_mean_at_half: Option<f64>,
}

/// One subtype of a source's label against the source's images of the other labels: which
/// grades the model tells apart (MosMed's CT-1, under 25 % of the lung involved, may show no
/// lesion on its one slice; CT-2 and CT-3 are the clearer cases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtypeAuc {
    pub source: String,
    pub label: String,
    pub subtype: String,
    /// Images of this subtype.
    pub n: usize,
    /// The source's images of the other labels it is ranked against.
    pub against: usize,
    /// AUC of P(label) between the two.
    pub auc: Option<f64>,
}

/// Metrics of a model on one labelled set. A two-class report has `auc` and
/// `positive_class`; a report of more classes has `macro_auc` and `auc_per_class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub n: usize,
    pub accuracy: Option<f64>,
    pub classes: Vec<String>,
    /// Rows: true class; columns: predicted class (arg-max).
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<ClassRow>,
    pub ece_raw: Option<f64>,
    pub ece_calibrated: Option<f64>,
    pub temperature: Option<f64>,
    pub class_counts: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_per_class: Option<BTreeMap<String, Option<f64>>>,
    /// ROC curves of the classes that have an AUC (per-source reports leave them out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc: Option<BTreeMap<String, Vec<RocPoint>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_operating_point: Option<AtOperatingPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_source: Option<BTreeMap<String, Report>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_level: Option<PatientLevel>,
    /// Where a source splits a label into subtypes (MosMed's COVID-19 grades, Kermany's
    /// bacterial and viral pneumonia): each subtype against the source's other labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_subtype: Option<Vec<SubtypeAuc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_unknown_labels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_to_decode: Option<Vec<String>>,
}

impl Report {
    /// A two-class report (with `auc` and `positive_class`), else a report of more classes.
    pub fn is_binary(&self) -> bool {
        self.positive_class.is_some()
    }

    /// The threshold-free headline: the AUC of a two-class model, the macro AUC otherwise.
    pub fn headline_auc(&self) -> Option<f64> {
        self.auc.or(self.macro_auc)
    }
}

/// The two sets a shipped classifier is evaluated on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationSets {
    /// The shipped model's own held-out fold of the training sources.
    pub internal_heldout: Report,
    /// Sources never used for training or model selection.
    pub external: Report,
}

/// Which of [`EvaluationSets`] the headline numbers repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadlineSet {
    External,
    InternalHeldout,
}

/// The evaluation of a CT or X-ray classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvaluation {
    pub model: ModelId,
    pub set: HeadlineSet,
    pub n: usize,
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_auc: Option<f64>,
    /// Every metric of each set, ROC curves included: what the model card draws, stored in the
    /// model's details file ([`super::manifest::Details`]), so absent from the manifest the page
    /// starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<EvaluationSets>,
    /// Shortcut audit and invariance check (absent for models evaluated before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// What a model calls one set of images that have no disease of its positive class: the
/// share of each class, by arg-max and at the operating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortcutCheck {
    pub set: String,
    pub n: usize,
    pub by_argmax: BTreeMap<String, f64>,
    pub at_operating_point: BTreeMap<String, f64>,
}

/// The same images through two pipelines: how often the answer stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvarianceCheck {
    pub set: String,
    /// What the second pipeline did to each image.
    pub transform: String,
    pub n: usize,
    /// Share of images whose arg-max class is the same.
    pub argmax_agreement: f64,
    /// Share of images whose decision at the operating point is the same.
    pub decision_agreement: f64,
    /// Median and 90th percentile over images of the largest change of any class probability.
    pub median_abs_delta_p: f64,
    pub p90_abs_delta_p: f64,
}

/// Where Grad-CAM looks on images of the positive class (a pointing game at the map's own
/// resolution): the share of maps whose hottest cell lies mostly on the lungs (the lung mask of
/// `imaging::crop` on the model's input, windowed), next to the share of cells that do, which
/// is what a map that peaks at random would score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionCheck {
    pub set: String,
    /// The class explained and the stage (1-based) its map comes from.
    pub class: String,
    pub layer: usize,
    /// Maps measured (images where a lung mask was found).
    pub n: usize,
    pub peak_in_lungs: f64,
    /// Mean share of the map's cells that lie mostly on the lungs (the chance level).
    #[serde(default)]
    pub lung_cells: f64,
    /// Images left out because no lung mask was found.
    pub without_mask: usize,
}

/// Shortcut audit, invariance check and Grad-CAM attention of a classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub shortcuts: Vec<ShortcutCheck>,
    pub invariance: Vec<InvarianceCheck>,
    #[serde(default)]
    pub attention: Vec<AttentionCheck>,
}

/// How many external images of one modality and source the gate let through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acceptance {
    pub n: usize,
    pub accepted: usize,
    pub accepted_rate: f64,
    /// Accepted and sent to the model of the right modality.
    pub routed_correctly: usize,
    pub routed_rate: f64,
    /// Not accepted but asked about: the network's confidence was below the gate's bar
    /// (absent in older manifests; the rest of `n` was refused).
    #[serde(default)]
    pub asked: usize,
}

/// The gate on one natural photograph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoCheck {
    pub file: String,
    pub refused: bool,
    pub reason: String,
    /// Refused by the network alone, on the photo's greyscale version (no colour rule).
    pub network_only_refused: bool,
    pub distance: Option<f64>,
}

/// The gate on the natural photographs of `odd-inputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoRefusals {
    pub n: usize,
    pub refused: usize,
    pub refused_rate: f64,
    pub refused_by_network_alone_greyscale: usize,
    pub refused_by_network_alone_rate: f64,
    pub files: Vec<PhotoCheck>,
}

/// One candidate confidence bar for the gate's question: with the bar at `below`, the share
/// of chest images it routes correctly that would be asked about instead, and the share of
/// those it routes to the wrong model that would be caught.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskRow {
    pub below: f64,
    pub correct_asked: f64,
    pub misrouted_asked: f64,
}

/// The candidate bars on one set of chest images the gate did not train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskTable {
    /// Images the network would accept, by whether it routes them to the right model.
    pub routed_correctly: usize,
    pub misrouted: usize,
    pub rows: Vec<AskRow>,
}

/// When the gate asks the user which model should read an image instead of accepting it:
/// below `ask_below` of its larger of P(ct) and P(cxr).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskRule {
    pub ask_below: f64,
    /// How `ask_below` was chosen, and on which set.
    pub rule: String,
    /// Keyed by set ("held-out fold", "external").
    pub sets: BTreeMap<String, AskTable>,
}

/// The evaluation of the input gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateEvaluation {
    /// Keyed by "modality (source, set)": the external sets and the training pools' held-out
    /// fold (older manifests: external sets only, keyed "modality (source)").
    #[serde(alias = "external_acceptance")]
    pub acceptance: BTreeMap<String, Acceptance>,
    pub natural_photos: PhotoRefusals,
    /// The squared Mahalanobis distance limit.
    pub limit: f64,
    /// The confidence bar below which the gate asks (absent in older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<AskRule>,
}

/// A model's stored evaluation: a classifier's or the gate's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Evaluation {
    Gate(GateEvaluation),
    Model(Box<ModelEvaluation>),
}

/// One fold of a cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    pub fold: usize,
    pub n: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_auc: Option<f64>,
    pub accuracy: Option<f64>,
    pub ece_raw: Option<f64>,
    pub ece_after_temperature: Option<f64>,
    pub minutes: f64,
}

/// Patient-grouped k-fold cross-validation of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    pub grouping: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_sd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_auc_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_auc_sd: Option<f64>,
    pub accuracy_mean: Option<f64>,
    pub accuracy_sd: Option<f64>,
    pub ece_raw_mean: Option<f64>,
    pub ece_after_temperature_mean: Option<f64>,
    pub ece_after_temperature_sd: Option<f64>,
    pub ece_note: String,
    pub per_fold: Vec<FoldSummary>,
    pub pooled_out_of_fold: Report,
}

impl CrossValidation {
    /// Mean and standard deviation of the headline AUC over the folds.
    pub fn headline_auc(&self) -> (Option<f64>, Option<f64>) {
        (self.auc_mean.or(self.macro_auc_mean), self.auc_sd.or(self.macro_auc_sd))
    }
}

/// What the bootstrap resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampled {
    /// Whole patients (every file names its patient).
    Patients,
    /// Single images (the set names no patients; slices of one patient may be counted as
    /// independent and the interval may be too narrow).
    Images,
}

/// A percentile bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
    /// Resamples that had every class and so an AUC (the others are skipped).
    pub resamples: usize,
    pub unit: Resampled,
}

/// How a model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub config: TrainConfig,
    pub pool_sources: SourceCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_sources: Option<SourceCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_model: Option<String>,
    /// Stored in the model's details file, as [`ModelEvaluation::sets`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The recipe trained once per source without that source: the "new hospital" numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave_one_source_out: Option<LeaveOneSourceOut>,
}

/// One leave-one-source-out run: a model trained on the other sources, tested on this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHeldOut {
    pub source: String,
    /// What the run trained on (the source's whole balance unit is left out).
    pub trained_on: SourceCounts,
    pub minutes: f64,
    /// Metrics on the left-out source, over the labels it has (no ROC curves).
    pub report: Report,
}

/// Leave-one-source-out evaluation of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveOneSourceOut {
    pub runs: Vec<SourceHeldOut>,
    /// Mean over the runs of the headline AUC (AUC, or macro AUC over the source's labels).
    pub mean_auc: Option<f64>,
    pub note: String,
}
