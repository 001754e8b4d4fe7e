//! Leave-one-source-out: train the recipe once per source without that source (and without
//! the sources exported the same way, its balance unit) and test on it. Cross-validation mixes
//! every source into every fold; this is the number for a hospital the model never saw.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use ctxr::model::TrainConfig;
use ctxr::model::report::{LeaveOneSourceOut, SourceHeldOut};
use serde::{Deserialize, Serialize};

use super::{Claim, Draws, Log, predict_logits, recipe_hash, train_model, write};
use crate::LabError;
use crate::data::Cache;
use crate::recipe::{Plan, balance_unit, balance_units, count_by, loso_sources};
use ctxr::train::report::{Outputs, report, subtype_aucs};

/// What one run leaves in the work folder.
#[derive(Serialize, Deserialize)]
struct RunResult {
    source: String,
    /// Hash of the recipe it ran, so a summary never mixes recipes.
    recipe: u64,
    train_idx: Vec<usize>,
    test_idx: Vec<usize>,
    logits: Vec<Vec<f32>>,
    seconds: f64,
}

fn result_path(work: &Path, source: &str) -> std::path::PathBuf {
    work.join(format!("loso-{source}.result.json"))
}

/// Train and test one run per source in `sources` (all of the model's when empty), reusing
/// finished runs of the same recipe when `resume` is set.
pub fn run(
    cfg: &TrainConfig,
    plan: &Plan,
    cache: &Cache,
    labels: &[Option<usize>],
    sources: &[String],
    work: &Path,
    resume: bool,
    log: &mut Log,
) -> Result<(), LabError> {
    let all: Vec<String> = loso_sources(cfg.model).iter().map(|s| s.to_string()).collect();
    let sources = if sources.is_empty() { all.clone() } else { sources.to_vec() };
    if let Some(bad) = sources.iter().find(|s| !all.contains(s)) {
        return Err(LabError::Usage(format!("--loso {bad}: the {} leave-one-source-out sources are {}", cfg.model, all.join(", "))));
    }
    let cpu = Device::flex();
    let pre = cfg.preprocess();
    let usable = |i: usize| labels[i].is_some() && cache.errors[i].is_none();
    let units = balance_units(&plan.pool);
    // As the folds: with --resume several processes share the runs (see `Claim`).
    let mut pending: Vec<&String> = sources.iter().collect();
    while !pending.is_empty() {
        let mut waiting = Vec::new();
        for source in pending {
            let path = result_path(work, source);
            if resume
                && let Some(r) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<RunResult>(&t).ok())
                && r.recipe == recipe_hash(cfg)
            {
                log.line(&format!("[{} without {source}] done, reusing its results", cfg.model));
                continue;
            }
            let Some(_claim) = Claim::take(work, &format!("without-{source}")) else {
                waiting.push(source);
                continue;
            };
            let t = Instant::now();
            let unit = balance_unit(source);
            let n = plan.pool.len();
            let train_idx: Vec<usize> = (0..n).filter(|&i| balance_unit(&plan.pool[i].source) != unit && usable(i)).collect();
            let test_idx: Vec<usize> = (0..n).filter(|&i| plan.pool[i].source == *source && usable(i)).collect();
            let draws = Draws::for_recipe(cfg, &plan.pool, labels, &train_idx);
            let name = format!("without-{source}");
            let model = train_model(cfg, cache, labels, &train_idx, &draws, &units, &name, &work.join("checkpoints"), resume, log)?;
            let logits = predict_logits(&model, cache, &test_idx, &cpu, pre.mean, pre.std);
            let r = RunResult { source: source.clone(), recipe: recipe_hash(cfg), train_idx, test_idx, logits, seconds: t.elapsed().as_secs_f64() };
            write(&path, serde_json::to_string(&r)?.as_bytes())?;
            let rep = held_out(cfg, plan, labels, &r);
            log.line(&format!(
                "[{} without {source}] AUC on {source} {:?} (n {}), {:.1} min",
                cfg.model,
                rep.report.headline_auc(),
                rep.report.n,
                r.seconds / 60.0
            ));
        }
        if !waiting.is_empty() {
            log.line(&format!("[{}] waiting for runs another process is training: {waiting:?}", cfg.model));
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
        pending = waiting;
    }
    Ok(())
}

fn held_out(cfg: &TrainConfig, plan: &Plan, labels: &[Option<usize>], r: &RunResult) -> SourceHeldOut {
    let truth: Vec<usize> = r.test_idx.iter().map(|&i| labels[i].unwrap_or(0)).collect();
    let sources: Vec<String> = r.test_idx.iter().map(|&i| plan.pool[i].source.clone()).collect();
    let patients: Vec<Option<String>> = r.test_idx.iter().map(|&i| plan.pool[i].patient_id.clone()).collect();
    let subtypes: Vec<String> = r.test_idx.iter().map(|&i| plan.pool[i].subtype.clone()).collect();
    let o = Outputs { classes: &cfg.classes, logits: &r.logits, truth: &truth, sources: &sources, patients: &patients };
    let mut report = report(&o, 1.0, None);
    report.roc = None;
    report.per_subtype = subtype_aucs(&o, &subtypes);
    let trained: Vec<_> = r.train_idx.iter().map(|&i| plan.pool[i].clone()).collect();
    SourceHeldOut { source: r.source.clone(), trained_on: count_by(&trained), minutes: r.seconds / 60.0, report }
}

/// The leave-one-source-out table from the runs of `cfg`'s recipe in `work` (`None` before
/// any has finished).
pub fn summary(cfg: &TrainConfig, plan: &Plan, labels: &[Option<usize>], work: &Path) -> Option<LeaveOneSourceOut> {
    let runs: Vec<SourceHeldOut> = loso_sources(cfg.model)
        .iter()
        .filter_map(|s| std::fs::read_to_string(result_path(work, s)).ok())
        .filter_map(|t| serde_json::from_str::<RunResult>(&t).ok())
        .filter(|r| r.recipe == recipe_hash(cfg) && r.test_idx.iter().chain(&r.train_idx).all(|&i| i < plan.pool.len()))
        .map(|r| held_out(cfg, plan, labels, &r))
        .collect();
    if runs.is_empty() {
        return None;
    }
    let aucs: Vec<f64> = runs.iter().filter_map(|r| r.report.headline_auc()).collect();
    let mean_auc = (!aucs.is_empty()).then(|| ((aucs.iter().sum::<f64>() / aucs.len() as f64) * 1e6).round() / 1e6);
    Some(LeaveOneSourceOut {
        runs,
        mean_auc,
        note: "one model per source, trained with the shipped recipe on every other training source (the source's whole balance unit left out: medseg goes with covid19-ct-seg, figure1 with ieee8023), tested on that source through the training cache (same preprocessing); AUC over the labels the source has".into(),
    })
}
