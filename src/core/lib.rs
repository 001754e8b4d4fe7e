//! ctxr: a chest CT / chest X-ray classifier that runs where the images are. This crate is the
//! wasm-safe core that the browser and the native lab share; nothing in it reads the file
//! system or needs threads. The data flow reads top to bottom, and each module depends only on
//! the ones above it:
//!
//! - [`decode`]: bytes of any supported container → one [`decode::MedImage`];
//! - [`imaging`]: window, lung crop, resize → the model's square, standardised input;
//! - [`model`]: the network, its manifest, weights, reports and recipes, the run-time device;
//! - [`explain`]: Grad-CAM and the colour maps that draw it;
//! - [`infer`]: classifier, decision rule, routing and the input gate, and the analysis of one
//!   user file that the page and the CLI present;
//! - [`train`]: augmentation, metrics and the optimisation step, the part of training that
//!   the page needs to evaluate and adapt a model on a user's own images.
//!
//! The lab (`src/lab`: data sets, training runs, evaluation reports, model card, the `ctxr`
//! CLI) and the web façade (`src/web`, the only `cdylib`) are separate crates on top of this.

// Everything a user's bytes can reach must not panic: inside wasm a panic kills the module.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
pub mod decode;
pub mod explain;
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
pub mod imaging;
#[cfg_attr(not(test), deny(clippy::indexing_slicing))]
pub mod infer;
pub mod model;
pub mod train;
