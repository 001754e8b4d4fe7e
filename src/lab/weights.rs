//! Weights folder: the manifest and its models' details files, read and written as one. The
//! page starts with `manifest.json` alone and fetches a model's details when its card is
//! opened; every command of the lab works on whole entries, so it reads and writes both here
//! and nowhere else.

use std::path::Path;

use ctxr::model::Manifest;
use ctxr::model::manifest::Details;

use crate::LabError;

/// `dir/manifest.json` with each entry's details file read back into it. A details file the
/// manifest names must exist: without it the card would lose its numbers silently.
pub fn read_manifest(dir: &Path) -> Result<Manifest, LabError> {
    let path = dir.join("manifest.json");
    let mut manifest = Manifest::parse(&std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?)?;
    for entry in &mut manifest.models {
        if let Some(file) = entry.details.clone() {
            let path = dir.join(&file);
            entry.attach(Details::parse(&std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?)?);
        }
    }
    Ok(manifest)
}

/// Write `manifest` to `dir`: each entry's details to its details file, the rest to
/// `manifest.json`.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), LabError> {
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| LabError::io(&path, e))
    };
    let mut lean = manifest.clone();
    for entry in &mut lean.models {
        if let (Some(details), Some(file)) = (entry.detach(), entry.details.clone()) {
            write(&file, details.to_json())?;
        }
    }
    write("manifest.json", lean.to_json())
}
