//! One integration-test binary (one link instead of one per file). Tests that need the real
//! data in `../shared/data` skip with a message when it is absent.

mod common;

mod analysis;
mod cli;
mod corpus;
mod decoder_references;
mod devices;
mod gradcam;
mod robustness;
mod trained;
mod weights;
