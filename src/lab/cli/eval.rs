//! `ctxr eval`: evaluate committed weights through the full decode → preprocess → model path,
//! on the model's default sets (its held-out fold and external sets) or on any CSV with the
//! manifest schema; prints a summary and writes the typed report as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::model::ModelId;
use ctxr::model::report::Report;
use ctxr_lab::LabError;
use ctxr_lab::eval::{evaluate_csv, evaluate_default};
use ctxr_lab::train::write;

use crate::parse_model;
use crate::setup::{load_classifier, load_manifest};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_model)]
    model: ModelId,
    #[arg(long, default_value = "weights")]
    weights: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "null".into())
}

fn print_set(name: &str, r: &Report) {
    let key = if r.is_binary() { "auc" } else { "macro_auc" };
    println!("{name}: n {} accuracy {} {key} {} ECE {} (T={})", r.n, opt(r.accuracy), opt(r.headline_auc()), opt(r.ece_calibrated), opt(r.temperature));
    for c in &r.per_class {
        let support = c.support.map(|s| s.to_string()).unwrap_or_else(|| "null".into());
        println!("    {:<10} sens {} spec {} prec {} F1 {} (n {support})", c.class, opt(c.sensitivity), opt(c.specificity), opt(c.precision), opt(c.f1));
    }
    for (s, v) in r.per_source.iter().flatten() {
        println!("    source {s:<16} n {} accuracy {} {key} {}", v.n, opt(v.accuracy), opt(v.headline_auc()));
    }
    if let Some(p) = &r.patient_level {
        println!("    patient level: {}", serde_json::to_string(p).unwrap_or_default());
    }
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    let manifest = load_manifest(&a.weights)?;
    let clf = load_classifier(&a.weights, &manifest, a.model, &ctxr::model::device::cpu())?;
    if !clf.entry.is_evaluated() {
        eprintln!("note: the manifest carries no evaluation for '{}' yet", a.model);
    }
    let json = match &a.manifest {
        Some(csv) => {
            let r = evaluate_csv(&clf, csv)?;
            print_set("manifest", &r.report);
            serde_json::to_string_pretty(&r)?
        }
        None => {
            let r = evaluate_default(&clf, &a.data)?;
            print_set("external", &r.sets.external);
            print_set("internal_heldout", &r.sets.internal_heldout);
            serde_json::to_string_pretty(&r)?
        }
    };
    if let Some(out) = &a.json {
        write(out, json.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
