//! Weights: trained records (burnpack bytes, f32 or f16) checked against the SHA-256 that the
//! manifest stores, loaded into a [`Cnn`] on a run-time device, and written back. Records load
//! from bytes so the browser can fetch and cache them; a record whose SHA-256 differs is
//! refused.

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::{Bytes, DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::cnn::{Cnn, ModelConfig};
use super::id::ModelId;

/// Why a manifest or a record could not be used. The upstream error is kept: as the source
/// where the library's type is an `Error` in every build, as a field otherwise (burn's
/// `RecordError` is an `Error` only with `std`, which a build without `train` lacks).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("the manifest could not be read: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error("no model '{id}' in the manifest (it has: {})", known.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "))]
    NoSuchModel { id: ModelId, known: Vec<ModelId> },
    #[error(
        "the weights file does not match the manifest (SHA-256 {got}, expected {expected}): it is damaged, truncated or from another version; download it again"
    )]
    ShaMismatch { expected: String, got: String },
    #[error("the weights could not be loaded into the model: {0}")]
    Record(RecordError),
    #[error("the gate's manifest entry has no distance model")]
    NoDistanceModel,
    #[error("the manifest's architecture is invalid: {stages} stages, {outputs} outputs for {classes} classes")]
    Architecture { stages: usize, outputs: usize, classes: usize },
    #[error(
        "the manifest's architecture is invalid: {in_channels} input channel(s), widths {stem} and {stages:?} (one input channel; every width 1 to {MAX_WIDTH})"
    )]
    Widths { in_channels: usize, stem: usize, stages: Vec<usize> },
    #[error("the model could not be prepared for the CPU: {0}")]
    Fuse(#[from] super::fused::FuseError),
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A digest as the manifest spells it: lower-case hex (also of the browser's digest).
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record's bytes and their SHA-256 (lower-case hex), which is checked against the manifest
/// before anything is built. From bytes alone (`From`), the hash is computed here; the page
/// passes the one its browser computed ([`Record::hashed`]): this crate's software SHA-256 took
/// about 40 ms of a 1.4 MB model's cold start in the page (wasm, before the engine's code is
/// optimised), the browser's native one 5–8 ms (measured 2026-12-07).
#[derive(Debug, Clone)]
pub struct Record<'a> {
    bytes: &'a [u8],
    sha256: String,
}

impl<'a> Record<'a> {
    /// `bytes` whose SHA-256 the caller computed.
    pub fn hashed(bytes: &'a [u8], sha256: String) -> Self {
        Record { bytes, sha256 }
    }
}

impl<'a> From<&'a [u8]> for Record<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Record { bytes, sha256: sha256_hex(bytes) }
    }
}

impl<'a> From<&'a Vec<u8>> for Record<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Record::from(bytes.as_slice())
    }
}

/// What a record must be, as its manifest entry says.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Lower-case hex SHA-256 of the record.
    pub sha256: &'a str,
    pub architecture: &'a ModelConfig,
    /// Number of classes the model must output.
    pub classes: usize,
}

/// The widest layer a manifest may describe (the shipped models' widest has 192 channels).
pub const MAX_WIDTH: usize = 1024;

/// Check the record's hash and the manifest's architecture, then build the model on `device`
/// and load the record into it. The model comes back in inference mode.
pub fn load_model<'a>(expected: Expected, record: impl Into<Record<'a>>, device: &Device) -> Result<Cnn, WeightsError> {
    let bytes = check_record(expected, record)?;
    model_from_record(expected.architecture, bytes.to_vec(), device).map_err(WeightsError::Record)
}

/// Check a record against its manifest entry before anything is built from it: its SHA-256,
/// and an architecture that may be built (the record's tensors are checked against it as they
/// are read). Returns the record's bytes.
pub fn check_record<'a>(expected: Expected, record: impl Into<Record<'a>>) -> Result<&'a [u8], WeightsError> {
    let Record { bytes: record, sha256: got } = record.into();
    if !got.eq_ignore_ascii_case(expected.sha256.trim()) {
        return Err(WeightsError::ShaMismatch { expected: expected.sha256.into(), got });
    }
    let arch = expected.architecture;
    let classes = expected.classes;
    if arch.stage_widths.is_empty() || arch.num_classes == 0 || arch.num_classes != classes || arch.stage_widths.len() > 8 {
        return Err(WeightsError::Architecture { stages: arch.stage_widths.len(), outputs: arch.num_classes, classes });
    }
    // Checked before the network is built: a manifest (an adapted model is the user's own file)
    // must not make it allocate without bound or build layers without channels.
    let width_ok = |w: usize| (1..=MAX_WIDTH).contains(&w);
    if arch.in_channels != 1 || !width_ok(arch.stem_width) || !arch.stage_widths.iter().all(|&w| width_ok(w)) {
        return Err(WeightsError::Widths { in_channels: arch.in_channels, stem: arch.stem_width, stages: arch.stage_widths.clone() });
    }
    Ok(record)
}

/// The inference model (`valid()`) of architecture `arch` with the parameters of burnpack
/// `record` (f32 or f16), unchecked: [`load_model`] checks a shipped record against its
/// manifest first; the lab loads its own checkpoints with this.
pub fn model_from_record(arch: &ModelConfig, record: Vec<u8>, device: &Device) -> Result<Cnn, RecordError> {
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(record))?;
    Ok(arch.init_for_record(device).try_load_record(rec.cast_to_module_dtype())?.valid())
}

struct Cast(DType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// Serialise a model's parameters (inference copy) to burnpack bytes, as f16 or f32.
pub fn record_bytes(model: &Cnn, half: bool) -> Result<Vec<u8>, WeightsError> {
    let m = model.valid();
    let m = if half { m.map(&mut Cast(DType::F16)) } else { m };
    let bytes = m.into_record().into_bytes().map_err(WeightsError::Record)?;
    Ok(bytes.to_vec())
}
