//! Shared helpers for the integration tests: where the repository and the real data live,
//! and what happens when something a test needs is absent. A user's clone has no `../shared`:
//! then data tests skip, loudly. CI has it and sets `CTXR_REQUIRE_DATA=1`: then a missing data
//! folder or wgpu adapter fails the test instead of skipping it, so a test cannot pass silently.
#![allow(dead_code)]

use std::path::PathBuf;

use ctxr::infer::Models;
use ctxr::model::{BackendKind, Manifest, device};

/// The repository's root (the integration tests belong to `src/lab`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when CI asked for every test to run (`CTXR_REQUIRE_DATA=1`).
pub fn required() -> bool {
    std::env::var("CTXR_REQUIRE_DATA").is_ok_and(|v| v == "1")
}

/// Skip `test` because `why`, or fail it when everything is required.
pub fn skip(test: &str, why: &str) {
    assert!(!required(), "{test}: {why}, and CTXR_REQUIRE_DATA=1 requires it");
    eprintln!("SKIPPED {test}: {why}");
}

/// `../shared/data` next to the repository, or `CTXR_SHARED_DATA`; `None` (with a message)
/// when absent — or a failure under `CTXR_REQUIRE_DATA=1`.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CTXR_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared/data"));
    if dir.join("decoder-references.json").is_file() {
        Some(dir)
    } else {
        skip(test, &format!("real data not found at {} (set CTXR_SHARED_DATA or place the shared data beside the repository)", dir.display()));
        None
    }
}

/// Rows of a manifest.csv (through the lab's reader): (path, label, source, patient id).
pub fn manifest_rows(csv: &std::path::Path) -> Vec<(String, String, String, String)> {
    ctxr_lab::data::read_manifest(csv).expect("manifest readable").into_iter().map(|s| (s.rel, s.label, s.source, s.patient_id.unwrap_or_default())).collect()
}

/// The committed weights folder.
pub fn weights_dir() -> PathBuf {
    repo_root().join("weights")
}

/// The committed manifest with its models' details, as the CLI reads it (it is part of the
/// repository: its absence is a failure).
pub fn committed_manifest() -> Manifest {
    ctxr_lab::weights::read_manifest(&weights_dir()).expect("weights/manifest.json and its details files are committed and parse")
}

/// The committed weights loaded on the CPU device, as the page loads them.
pub fn committed_models() -> Models {
    let manifest = committed_manifest();
    let mut m = Models::new(BackendKind::Cpu, device::cpu(), manifest.clone());
    for e in &manifest.models {
        m.load(e.id, &std::fs::read(weights_dir().join(&e.record)).expect("committed record")).expect("committed record loads");
    }
    m
}
