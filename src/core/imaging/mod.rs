//! Imaging: from a decoded [`crate::decode::MedImage`] to the square, standardised model input.
//! [`window`] maps stored values to [0, 1]; [`crop`] finds the lungs in a CT slice; [`resize`]
//! resamples; [`preprocess`] chains them into the one path shared by training, the CLI and the
//! browser, so that a model always reads what it was trained on.

pub mod crop;
pub mod preprocess;
pub mod resize;
pub mod window;

pub use preprocess::{Framing, Letterbox, PreprocessConfig, PreprocessError, Preprocessed, Region, Tone, preprocess, resolve_window};
pub use resize::resize;
pub use window::{WindowChoice, WindowPreset, apply_window, percentiles, render};
