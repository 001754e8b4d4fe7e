//! Infer: run the models on an image. [`classifier`] turns preprocessed images into calibrated
//! probabilities; [`decision`] holds the one softmax, arg-max and operating-point rule;
//! [`gate`] decides whether an image is a chest CT slice, a chest X-ray or neither, and which
//! model reads it; [`analysis`] runs one user file through the whole path for a front end;
//! [`study`] scores a CT volume from its lung-level slices.

pub mod analysis;
pub mod classifier;
pub mod decision;
pub mod gate;
pub mod route;
pub mod study;

pub use analysis::{Analysis, AnalyzeError, Models, Request};
pub use classifier::{Classifier, ClassifyError, Prediction};
pub use decision::{Decision, argmax, softmax};
pub use gate::Gatekeeper;
pub use route::{Verdict, VerdictSource};
