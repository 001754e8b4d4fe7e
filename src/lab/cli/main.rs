//! `ctxr`: the native command line. `classify` runs decode → preprocess → model → Grad-CAM on
//! files as the CLI's user expects it (a model forced or routed by the file), `analyze` runs the
//! page's exact path (gate included) and prints its result, `inspect` prints what the decoder
//! found, `train`, `eval`, `split` and `card` drive the lab, `adapt` fine-tunes a model on a
//! user's labelled images, `corpus` writes the hostile-input corpus,
//! and `init-weights` writes untrained weights (for exercising the pipeline only). Each subcommand lives in its own module.

mod adapt;
mod analyze;
mod classify;
mod eval;
mod inspect;
mod setup;
mod split;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ctxr::model::{Modality, ModelId};
use ctxr_lab::LabError;

#[derive(Parser)]
#[command(name = "ctxr", version, about = "Chest CT / chest X-ray classifier with Grad-CAM (research and teaching; not for clinical use)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// A device to run the models on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// burn's `flex` backend on the CPU.
    Cpu,
    /// wgpu (Vulkan, Metal or DX12).
    Wgpu,
}

#[derive(Subcommand)]
enum Cmd {
    /// Classify image files (PNG, JPEG, TIFF, DICOM …) and optionally write Grad-CAM overlays.
    Classify(classify::Args),
    /// Analyse files exactly as the web page does (gate, routing, decision) and print one JSON
    /// object per file, with the probabilities' bit patterns for exact comparisons.
    Analyze(analyze::Args),
    /// Print what the decoder finds in files: format, size, bit depth, HU or not, windows, DICOM facts.
    Inspect(inspect::Args),
    /// Train a model (ct, cxr or gate) on the real data with 5-fold patient-grouped CV, then
    /// write its record and manifest entry (with evaluation) into --weights.
    Train {
        #[arg(long, value_parser = parse_model)]
        model: ModelId,
        /// Folder with ct/ and cxr/ manifests (the shared data).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        /// Caches, checkpoints and logs.
        #[arg(long, default_value = "cache/train")]
        work: PathBuf,
        /// Continue from the last checkpoint and reuse finished folds.
        #[arg(long)]
        resume: bool,
        #[arg(long)]
        epochs: Option<usize>,
        /// Leave-one-source-out runs instead of the cross-validation (the listed sources, or
        /// all of the model's); the table goes into the manifest entry of the same recipe.
        #[arg(long, num_args = 0..)]
        loso: Option<Vec<String>>,
        /// Only train cross-validation folds no other process has claimed, then stop (a
        /// helper beside the process that will ship the model; needs --resume).
        #[arg(long)]
        folds_only: bool,
        /// Change the recipe for an experiment: key=json, dotted keys (e.g. tone="windowed").
        #[arg(long = "set")]
        overrides: Vec<String>,
    },
    /// Evaluate shipped weights: by default on the model's held-out fold and its external
    /// sets; with --manifest on any CSV with the manifest schema.
    Eval(eval::Args),
    /// Fine-tune a model on your own labelled images, report the gain by cross-validation on
    /// them, and write the adapted weights folder.
    Adapt(adapt::Args),
    /// List the images the shipped model never trained on (its held-out fold and external
    /// sets) as CSV.
    Split(split::Args),
    /// Regenerate the measured-numbers section of MODEL_CARD.md from weights/manifest.json.
    Card {
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        #[arg(long, default_value = "MODEL_CARD.md")]
        out: PathBuf,
    },
    /// Write the generated hostile-input corpus (files and expected.json) into a folder, for
    /// the browser tests and the fuzzers' seeds.
    Corpus {
        #[arg(long, default_value = "tests/corpus")]
        out: PathBuf,
    },
    /// Write a committed network as ONNX, layer for layer, for timing ctxr against another
    /// runtime on the same weights (`./build.sh bench`).
    ExportOnnx {
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        #[arg(long, value_parser = parse_model)]
        model: ModelId,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write UNTRAINED weights and a manifest without evaluation (to exercise the pipeline).
    InitWeights {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 128)]
        input_size: u32,
    },
}

/// `--model`: any model id.
pub fn parse_model(s: &str) -> Result<ModelId, String> {
    s.parse::<ModelId>().map_err(|e| e.to_string())
}

/// `--model` where a classifier is meant: ct or cxr.
pub fn parse_modality(s: &str) -> Result<Modality, String> {
    parse_model(s)?.modality().ok_or_else(|| format!("--model must be ct or cxr (got '{s}')"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<ExitCode, LabError> = match cli.cmd {
        Cmd::Classify(a) => classify::run(a),
        Cmd::Analyze(a) => analyze::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Adapt(a) => adapt::run(a),
        Cmd::Split(a) => split::run(a),
        Cmd::InitWeights { out, input_size } => setup::init_weights(&out, input_size),
        Cmd::Card { weights, out } => setup::card(&weights, &out),
        Cmd::Corpus { out } => setup::corpus(&out),
        Cmd::ExportOnnx { weights, model, out } => setup::export_onnx(&weights, model, &out),
        Cmd::Train { model, data, weights, work, resume, epochs, loso, folds_only, overrides } => ctxr_lab::train::run(&ctxr_lab::train::RunOptions {
            model,
            data_dir: data,
            weights_dir: weights,
            work_root: work,
            resume,
            epochs,
            loso,
            folds_only,
            overrides,
        })
        .map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
