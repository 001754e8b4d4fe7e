//! `ctxr adapt`: fine-tune a shipped model on your own labelled images (a folder of class
//! folders or a CSV `file,label[,group]`), report by patient-grouped cross-validation on that
//! set whether it helped, and write the adapted model as a weights folder that `ctxr` and the
//! page load like the shipped one.

use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::infer::Gatekeeper;
use ctxr::model::ModelId;
use ctxr::model::adapted::Provenance;
use ctxr::train::adapt::{AdaptConfig, Part, Progress};
use ctxr::train::assess::Interval;
use ctxr::train::labelled::SetAside;
use ctxr_lab::LabError;
use ctxr_lab::train::adapt::{adapt_labelled, write_adapted};
use ctxr_lab::train::write;
use serde::Serialize;

use crate::parse_model;
use crate::setup::{load_classifier, load_manifest};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_model)]
    model: ModelId,
    /// Your labelled images: a folder whose subfolders are class names, or a CSV with the
    /// header `file,label[,group]` (group = patient id, so that no patient is on both sides
    /// of a split).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the adapted weights folder (records + manifest.json).
    #[arg(long)]
    out: PathBuf,
    /// What is trained: head (the linear head), last (the last stage and the head) or all.
    #[arg(long = "train", default_value = "last")]
    part: Part,
    /// The base weights folder.
    #[arg(long, default_value = "weights")]
    weights: PathBuf,
    /// Cross-validation folds on your set.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// At most this many epochs per fit (early stopping usually ends sooner).
    #[arg(long)]
    epochs: Option<usize>,
    /// Refuse sets whose images would need more memory than this (MB), before reading them.
    #[arg(long, default_value_t = 2048)]
    max_memory_mb: usize,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    model: ModelId,
    data: String,
    out: String,
    record_sha256: &'a str,
    temperature: f64,
    #[serde(flatten)]
    provenance: &'a Provenance,
    files: &'a [String],
    set_aside: &'a [SetAside],
    image_bytes: usize,
    seconds: f64,
}

fn ci(c: &Option<Interval>) -> String {
    c.as_ref().map(|c| format!("[{:.3}, {:.3}]", c.lo, c.hi)).unwrap_or_else(|| "(no interval)".into())
}

fn auc(a: Option<f64>) -> String {
    a.map(|a| format!("{a:.3}")).unwrap_or_else(|| "n/a".into())
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    if a.model.modality().is_none() {
        return Err(LabError::Usage("--model must be ct or cxr".into()));
    }
    let manifest = load_manifest(&a.weights)?;
    let cpu = ctxr::model::device::cpu();
    let clf = load_classifier(&a.weights, &manifest, a.model, &cpu)?;
    let gate = match manifest.model(ModelId::Gate) {
        Ok(_) => Some(Gatekeeper::new(load_classifier(&a.weights, &manifest, ModelId::Gate, &cpu)?)?),
        Err(_) => None,
    };
    let mut cfg = AdaptConfig { folds: a.folds, ..AdaptConfig::new(a.part) };
    if let Some(e) = a.epochs {
        cfg.max_epochs = e.max(1);
        cfg.patience = cfg.patience.min(cfg.max_epochs);
    }
    let folds = cfg.folds;
    let fit_name = |fit: usize| if fit < folds { format!("fold {}/{folds}", fit + 1) } else { "final fit".to_string() };
    let mut last_eta = (0usize, 0usize);
    let r = adapt_labelled(&clf, gate.as_ref(), &a.data, cfg, a.max_memory_mb << 20, |p, secs| match p {
        Progress::Scored { done, of } if done == of => eprintln!("scored {of} images with the base model ({secs:.0} s)"),
        Progress::Step { steps_run, steps_left, .. } => last_eta = (*steps_run, *steps_left),
        Progress::Epoch { fit, record: e, stopping } => {
            let (run, left) = last_eta;
            let eta = secs / run.max(1) as f64 * left as f64;
            eprintln!(
                "[{}] epoch {:>2}: train loss {:.4} acc {:.3} | held-out loss {:.4} AUC {} | {secs:.0} s, at most {:.1} min left{}",
                fit_name(*fit),
                e.epoch,
                e.train_loss,
                e.train_accuracy,
                e.held_loss,
                auc(e.held_auc),
                eta / 60.0,
                if *stopping { " — stops" } else { "" }
            );
        }
        _ => {}
    })?;
    let p = &r.adapted.provenance;
    let cv = &p.cross_validation;
    let counts: Vec<String> = clf.entry.classes.iter().zip(&p.counts).map(|(c, n)| format!("{n} {c}")).collect();
    println!(
        "{} adapted ({} trained) on {} usable images ({}), {} set aside, {}; {:.1} min, images {:.1} MB in memory",
        a.model,
        p.config.part,
        r.files.len(),
        counts.join(", "),
        r.set_aside.len(),
        if p.grouped { "split by patient" } else { "no patient ids: slices of one patient may sit on both sides of a split" },
        r.seconds / 60.0,
        r.image_bytes as f64 / 1e6
    );
    println!("{}-fold cross-validation on this set (each image scored by a model that never trained on it):", cv.folds);
    println!("    AUC before {} 95 % CI {}", auc(cv.auc_before), ci(&cv.auc_before_ci));
    println!("    AUC after  {} 95 % CI {}", auc(cv.auc_after), ci(&cv.auc_after_ci));
    println!("    gain (paired bootstrap over the same {}): 95 % CI {}", if p.grouped { "patients" } else { "images" }, ci(&cv.difference_ci));
    for f in &cv.per_fold {
        println!(
            "    fold {}: trained on {}, held out {}, tested on {}; kept epoch {} of {}; AUC {} → {}",
            f.fold + 1,
            f.train_images,
            f.held_images,
            f.test_images,
            f.best_epoch,
            f.epochs.len(),
            auc(f.auc_before),
            auc(f.auc_after)
        );
    }
    let verdict = cv.verdict();
    println!("    {verdict}");
    let entry = write_adapted(&a.weights, &manifest, &clf.entry, &r.adapted, &a.out)?;
    println!(
        "wrote {} (final fit kept epoch {}, T = {:.3}{}); use it with --weights {}",
        a.out.join(&entry.record).display(),
        p.final_fit.best_epoch,
        r.adapted.temperature,
        entry.operating_point.as_ref().map(|o| format!(", operating point P({}) ≥ {:.3}", o.positive_class, o.threshold)).unwrap_or_default(),
        a.out.display()
    );
    println!("{}", ctxr::train::adapt::WARNING);
    if let Some(out) = &a.json {
        let rep = Report {
            model: a.model,
            data: a.data.display().to_string(),
            out: a.out.display().to_string(),
            record_sha256: &entry.sha256,
            temperature: r.adapted.temperature,
            provenance: p,
            files: &r.files,
            set_aside: &r.set_aside,
            image_bytes: r.image_bytes,
            seconds: r.seconds,
        };
        write(out, serde_json::to_string_pretty(&rep)?.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
