//! Model: the network ([`cnn`]) and its batch-norm-folded CPU inference form ([`fused`], with its convolution kernels and the threads they may use, [`parallel`]), the ids of models and modalities ([`id`]), the manifest that describes each trained model ([`manifest`])
//! with its training [`recipe`] and measured [`report`]s, loading and saving its weights
//! ([`weights`]) and the run-time device it runs on ([`device`]).
//! Everything here compiles for the browser.

pub mod adapted;
pub mod cnn;
pub mod device;
pub mod fused;
pub mod id;
mod kernel;
pub mod manifest;
pub mod parallel;
pub mod recipe;
pub mod report;
pub mod weights;
mod winograd;

pub use cnn::{Cnn, ModelConfig};
pub use device::BackendKind;
pub use fused::{FuseError, FusedCnn, LayerTime, Maps};
pub use manifest::{DISCLAIMER, EntrySpec, GateParams, Manifest, Modality, ModelEntry, ModelId, OperatingPoint, RecordDtype, decode_options};
pub use recipe::{AugmentConfig, DataPlan, Sampling, TrainConfig};
pub use report::{Evaluation, Report};
pub use weights::{Record, WeightsError, check_record, hex, load_model, model_from_record, record_bytes, sha256_hex};
