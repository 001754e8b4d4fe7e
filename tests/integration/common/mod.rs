//! Shared helpers for the integration tests: where the real data lives, and skipping
//! loudly when it is absent (a user's clone has no `../shared`).
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` next to the crate, or `CTXR_SHARED_DATA`; `None` (with a message) when absent.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CTXR_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("decoder-references.json").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: real data not found at {} (set CTXR_SHARED_DATA or place the shared data beside the repository)", dir.display());
        None
    }
}

/// Rows of a manifest.csv (through the library's reader): (path, label, source, patient id).
pub fn manifest_rows(csv: &std::path::Path) -> Vec<(String, String, String, String)> {
    ctxr::data::read_manifest(csv).expect("manifest readable").into_iter().map(|s| (s.rel, s.label, s.source, s.patient_id.unwrap_or_default())).collect()
}

/// The committed weights (`weights/`) loaded on the CPU device, as the page loads them.
pub fn committed_models() -> Option<ctxr::analysis::Models> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights");
    let manifest = ctxr::weights::Manifest::parse(&std::fs::read_to_string(dir.join("manifest.json")).ok()?).ok()?;
    let mut m = ctxr::analysis::Models::new(ctxr::device::BackendKind::Cpu, ctxr::device::cpu(), manifest.clone());
    for e in &manifest.models {
        m.load(&e.id, &std::fs::read(dir.join(&e.record)).ok()?).expect("committed record loads");
    }
    Some(m)
}

pub mod corpus;
pub mod writers;
