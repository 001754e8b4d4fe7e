//! Train: the pieces of training that are the same wherever a model is trained — augmentation
//! ([`augment`]), the metrics the seed papers report ([`metrics`]) and the optimisation step
//! ([`step`]) — kept in the wasm-safe core so that the page can evaluate and adapt models on a
//! user's own images with exactly the code the lab trains with. Reading data sets from disk,
//! folds and training runs live in the lab crate.

pub mod augment;
pub mod metrics;
#[cfg(feature = "train")]
pub mod step;
