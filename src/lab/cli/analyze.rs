//! `ctxr analyze`: files through the page's own path ([`ctxr::infer::Models::analyze`]: decode →
//! gate → route → preprocess → model → decision) on the CPU, one JSON object per file. The
//! probabilities are also printed as f32 bit patterns, so two builds or the page and the CLI
//! can be compared exactly (see `tests/compare/outputs.sh`).

use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::infer::analysis::ModelChoice;
use ctxr::infer::{Decision, Models, Request, Verdict};
use ctxr::model::{BackendKind, ModelId, device};
use ctxr_lab::LabError;
use serde::Serialize;

use crate::setup::load_manifest;

#[derive(clap::Args)]
pub struct Args {
    files: Vec<PathBuf>,
    /// auto (the gate decides), ct or cxr.
    #[arg(long, value_enum, default_value = "auto")]
    model: ModelArg,
    /// Folder holding manifest.json and the records.
    #[arg(long, default_value = "weights")]
    weights: PathBuf,
    /// Read the files to analyse, one path per line, from standard input (after any given).
    #[arg(long)]
    stdin: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModelArg {
    Auto,
    Ct,
    Cxr,
}

#[derive(Serialize)]
struct Analyzed<'a> {
    file: String,
    #[serde(rename = "as")]
    read_as: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    refused: bool,
    model: Option<ModelId>,
    gate: Option<Verdict>,
    /// The gate's probabilities and distance as bit patterns, when its network ran.
    gate_probability_bits: Option<Vec<String>>,
    gate_distance_bits: Option<String>,
    probabilities: Option<Vec<f32>>,
    /// The probabilities' IEEE-754 bit patterns, hexadecimal.
    probability_bits: Option<Vec<String>>,
    decision: Option<Decision>,
}

fn bits(v: &[f32]) -> Vec<String> {
    v.iter().map(|x| format!("{:08x}", x.to_bits())).collect()
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    let manifest = load_manifest(&a.weights)?;
    let mut models = Models::new(BackendKind::Cpu, device::cpu(), manifest.clone());
    for e in &manifest.models {
        let path = a.weights.join(&e.record);
        models.load(e.id, &std::fs::read(&path).map_err(|err| LabError::io(&path, err))?)?;
    }
    let (model, read_as) = match a.model {
        ModelArg::Auto => (ModelChoice::Auto, "auto"),
        ModelArg::Ct => (ModelChoice::Ct, "ct"),
        ModelArg::Cxr => (ModelChoice::Cxr, "cxr"),
    };
    let mut files = a.files.clone();
    if a.stdin {
        files.extend(std::io::stdin().lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).map(PathBuf::from));
    }
    let req = Request { model, ..Request::default() };
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| LabError::io(file, e))?;
        let out = match pollster::block_on(models.analyze(&bytes, &req)) {
            Ok((r, _)) => Analyzed {
                file: file.display().to_string(),
                read_as,
                error: None,
                message: None,
                refused: r.refused,
                model: r.model,
                gate_probability_bits: r.gate.as_ref().and_then(|g| g.probabilities.as_deref()).map(bits),
                gate_distance_bits: r.gate.as_ref().and_then(|g| g.distance).map(|d| format!("{:08x}", d.to_bits())),
                gate: r.gate,
                probability_bits: r.prediction.as_ref().map(|p| bits(&p.probabilities)),
                probabilities: r.prediction.map(|p| p.probabilities),
                decision: r.decision,
            },
            Err(e) => Analyzed {
                file: file.display().to_string(),
                read_as,
                error: Some(e.kind()),
                message: Some(e.to_string()),
                refused: false,
                model: None,
                gate: None,
                gate_probability_bits: None,
                gate_distance_bits: None,
                probabilities: None,
                probability_bits: None,
                decision: None,
            },
        };
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}
