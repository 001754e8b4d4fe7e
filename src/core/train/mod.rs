//! Train: the pieces of training and evaluation that are the same wherever a model is trained
//! or measured — augmentation ([`augment`]), the metrics the seed papers report ([`metrics`]),
//! the reports built from them ([`report`]), a user's labelled sets ([`labelled`]) and the
//! assessment of a model on them ([`assess`]), and the optimisation step ([`step`]) — kept in
//! the wasm-safe core so that the page can evaluate and adapt models on a user's own images
//! with exactly the code the lab trains with. Reading data sets from disk, folds and training
//! runs live in the lab crate.

#[cfg(feature = "train")]
pub mod adapt;
#[cfg(feature = "train")]
pub mod adversary;
pub mod assess;
pub mod augment;
pub mod folds;
pub mod labelled;
pub mod metrics;
pub mod report;
#[cfg(feature = "train")]
pub mod step;
