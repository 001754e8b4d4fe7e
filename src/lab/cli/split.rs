//! `ctxr split`: list the images a shipped model never trained on — its held-out fold of the
//! training sources and its external sets — as CSV (set, source, label, subtype, path relative
//! to the data folder), from the recipe stored in the manifest, so scripts (the Grad-CAM
//! review) pick their examples among them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::model::ModelId;
use ctxr_lab::LabError;
use ctxr_lab::recipe::{folds, plan, recipe};

use crate::parse_model;
use crate::setup::load_manifest;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_model)]
    model: ModelId,
    #[arg(long, default_value = "weights")]
    weights: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
}

/// A CSV field, quoted when it needs to be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    let manifest = load_manifest(&a.weights)?;
    let entry = manifest.model(a.model)?;
    let cfg = entry.training.as_ref().map(|t| t.config.clone()).unwrap_or_else(|| recipe(a.model));
    let p = plan(a.model, cfg.data, &a.data)?;
    let f = folds(&p.pool, &cfg);
    let mut out = std::io::stdout().lock();
    let held = p.pool.iter().zip(&f).filter(|(_, k)| **k == 0).map(|(s, _)| ("held-out fold", s));
    // A closed pipe (`| head`) ends the listing quietly.
    let _ = writeln!(out, "set,source,label,subtype,path");
    for (set, s) in held.chain(p.external.iter().map(|s| ("external", s))) {
        // Paths are relative to the data folder; the gate's labels are the modalities.
        let modality = a.model.modality().map(|m| m.name()).unwrap_or(&s.label);
        let line = format!("{set},{},{},{},{}", field(&s.source), field(&s.label), field(&s.subtype), field(&format!("{modality}/{}", s.rel)));
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
