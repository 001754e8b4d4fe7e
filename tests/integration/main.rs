//! One integration-test binary (one link instead of one per file). Tests that need the real
//! data in `../shared/data` skip with a message when it is absent, and fail instead when
//! `CTXR_REQUIRE_DATA=1` (CI).

mod common;

mod adapt;
mod analysis;
mod cli;
mod contracts;
mod corpus;
mod decoder_references;
mod devices;
mod fused;
mod gradcam;
mod labelled;
mod layout;
mod nifti_references;
mod robustness;
mod series;
mod trained;
mod weights;
