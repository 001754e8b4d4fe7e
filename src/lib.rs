//! ctxr: a chest CT / chest X-ray classifier that runs where the images are.
//!
//! The data flow reads top to bottom: [`decode`] → [`preprocess`] (with the CT [`crop`]) → [`model`] → [`gradcam`]
//! (explain, drawn with [`colormap`]) → the CLI or the web page (present). [`weights`] loads
//! trained records with their manifest; [`classifier`] ties a model, its manifest entry and a
//! run-time [`device`] together; [`analysis`] runs one user file through the whole path for a
//! front end, and `web` is the browser's wasm-bindgen façade over it. [`metrics`] evaluates;
//! [`data`] feeds training (native only).

#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
pub mod decode;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
pub mod preprocess;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
pub mod crop;
pub mod model;
pub mod gradcam;
pub mod colormap;
pub mod weights;
pub mod device;
pub mod classifier;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
pub mod analysis;
#[cfg(target_arch = "wasm32")]
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
pub mod web;
#[cfg(target_arch = "wasm32")]
mod libc_shim;
pub mod metrics;
pub mod augment;
#[cfg(not(target_arch = "wasm32"))]
pub mod data;
#[cfg(all(not(target_arch = "wasm32"), feature = "cli"))]
pub mod train;
#[cfg(all(not(target_arch = "wasm32"), feature = "cli"))]
pub mod pipeline;
#[cfg(all(not(target_arch = "wasm32"), feature = "cli"))]
pub mod outliers;
pub mod evaluate;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
pub mod gate;
pub mod card;

/// Stable, seedable 64-bit FNV-1a string hash, used wherever ids must be split deterministically
/// (folds, held-out patients, calibration halves, cache keys).
pub fn stable_hash(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
