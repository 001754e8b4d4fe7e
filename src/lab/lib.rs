//! ctxr's lab: everything that happens on a developer's machine and never in the browser —
//! reading the shared data sets ([`data`]), choosing recipes and splits ([`recipe`]), training
//! runs ([`train`]), the weights folder ([`weights`]), evaluation reports ([`eval`]), ONNX export for benchmarks ([`onnx`]), the model card ([`card`]) and the hostile-input
//! [`corpus`] the decoders are tested against. The `ctxr`
//! command line (`cli/`) presents it. It builds on the wasm-safe core (`ctxr`), which holds
//! everything the page shares with it.

pub mod card;
pub mod corpus;
pub mod data;
pub mod eval;
pub mod onnx;
pub mod recipe;
pub mod train;
pub mod weights;

use std::path::{Path, PathBuf};

use burn::store::RecordError;
use ctxr::decode::DecodeError;
use ctxr::infer::{AnalyzeError, ClassifyError};
use ctxr::model::WeightsError;

/// Why a lab command failed, with the cause kept.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    #[error(transparent)]
    Study(#[from] ctxr::infer::study::StudyError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{}: {source}", path.display())]
    Record { path: PathBuf, source: RecordError },
    #[error("no cross-validation fold finished")]
    NoFolds,
    #[error("refused: {0}")]
    Refused(String),
    #[error(
        "cannot tell whether this is a chest CT slice or a chest X-ray (no DICOM Modality, no Hounsfield units, no gate model); pass --model ct or --model cxr"
    )]
    Undecided,
    #[error("no class '{name}' (classes: {})", classes.join(", "))]
    NoSuchClass { name: String, classes: Vec<String> },
    #[error("cannot write {}: {source}", path.display())]
    Image { path: PathBuf, source: image::ImageError },
    #[error(transparent)]
    Labels(#[from] ctxr::train::labelled::LabelsError),
    #[error(transparent)]
    Set(#[from] ctxr::train::labelled::SetError),
    #[error(transparent)]
    Cam(#[from] ctxr::explain::CamError),
    #[error(transparent)]
    Adapt(#[from] ctxr::train::adapt::AdaptError),
    #[error(transparent)]
    Export(#[from] onnx::ExportError),
    #[error("{0}")]
    Usage(String),
}

impl LabError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        LabError::Io { path: path.into(), source }
    }

    pub fn record(path: &Path, source: RecordError) -> Self {
        LabError::Record { path: path.into(), source }
    }
}

/// The one id hash of the project (the core's, so the page splits as the lab does).
pub use ctxr::train::folds::stable_hash;
