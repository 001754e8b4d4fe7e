//! Train: a model's training run on the CPU (burn autodiff on `flex`) — patient-grouped k-fold
//! cross-validation, checkpoints with `--resume`, the shipped model's calibration (temperature,
//! operating point), its record and manifest entry, and its evaluation. The optimisation step
//! itself is the core's ([`ctxr::train::step`]), the one the page can run too.

pub mod adapt;
pub mod gate;
pub mod loso;
pub mod outliers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use ctxr::infer::Classifier;
use ctxr::infer::decision::softmax;
use ctxr::model::report::{CrossValidation, Evaluation, FoldSummary, TrainingSummary};
use ctxr::model::{
    Cnn, DISCLAIMER, EntrySpec, Manifest, ModelConfig, ModelEntry, ModelId, OperatingPoint, RecordDtype, Sampling, TrainConfig, model_from_record, record_bytes,
};
use ctxr::train::adversary::{Adversary, Reversal, strength};
use ctxr::train::augment::{Rng, augment};
use ctxr::train::metrics::{fit_temperature, mean_sd};
use ctxr::train::report::{Outputs, full_report, report, subtype_aucs};
use ctxr::train::step::{Batch, Trunk, class_weights, cosine_lr, loss_for, optimizer_for, step};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::data::{Cache, Sample};
use crate::eval::evaluate_default;
use crate::eval::report::cross_fitted_ece;
use crate::recipe::{balance_units, balanced_weights, count_by, credits, folds, label_indices, plan, recipe};
use crate::stable_hash;
use crate::weights::{read_manifest, write_manifest};

/// Logger that writes progress lines to stderr and a log file.
pub struct Log(Option<std::fs::File>);

impl Log {
    pub fn new(path: &Path) -> Self {
        Log(std::fs::OpenOptions::new().create(true).append(true).open(path).ok())
    }

    pub fn line(&mut self, s: &str) {
        eprintln!("{s}");
        if let Some(f) = &mut self.0 {
            let _ = writeln!(f, "{s}");
            let _ = f.flush();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    fold: String,
    epochs_done: usize,
    rng: u64,
}

/// How an epoch draws its images: every training row once, or draws with replacement by
/// per-row weight ([`Sampling::BalancedWithinSource`]).
pub enum Draws {
    EveryImage,
    Weighted { images: usize, weights: Vec<f64> },
}

impl Draws {
    /// The draws `cfg` asks for over `train_idx` rows of `samples`.
    pub fn for_recipe(cfg: &TrainConfig, samples: &[Sample], labels: &[Option<usize>], train_idx: &[usize]) -> Self {
        match cfg.sampling {
            Sampling::EveryImage => Draws::EveryImage,
            Sampling::BalancedWithinSource { images, max_boost } => {
                Draws::Weighted { images, weights: balanced_weights(samples, labels, train_idx, f64::from(max_boost)) }
            }
        }
    }

    /// One epoch's rows, in training order.
    fn epoch(&self, rows: &[usize], rng: &mut Rng) -> Vec<usize> {
        match self {
            Draws::EveryImage => {
                let mut order = rows.to_vec();
                rng.shuffle(&mut order);
                order
            }
            Draws::Weighted { images, weights } => {
                let mut cumulative = Vec::with_capacity(rows.len());
                let mut total = 0.0;
                for &i in rows {
                    total += weights[i];
                    cumulative.push(total);
                }
                (0..*images)
                    .map(|_| {
                        let u = f64::from(rng.unit()) * total;
                        rows[cumulative.partition_point(|&c| c <= u).min(rows.len().saturating_sub(1))]
                    })
                    .collect()
            }
        }
    }

    /// The expected number of draws of each class per epoch (what the class weights balance).
    fn class_mass(&self, rows: &[usize], labels: &[Option<usize>], k: usize) -> Vec<usize> {
        let mut mass = vec![0f64; k];
        for &i in rows {
            if let Some(c) = labels[i] {
                mass[c] += match self {
                    Draws::EveryImage => 1.0,
                    Draws::Weighted { weights, .. } => weights[i],
                };
            }
        }
        mass.iter().map(|m| m.round() as usize).collect()
    }
}

/// Train one model on `train_idx` rows of `cache`, drawn as `draws` says. `units` names each
/// row's source (its balance unit), which the recipe's source adversary learns to read (empty
/// where rows have no source, as the gate's synthetic outliers). Checkpoints every epoch into
/// `ckpt_dir` (files named after `fold`); resumes from it when `resume` is set. Returns the
/// inference-mode model.
#[allow(clippy::too_many_arguments)]
pub fn train_model(
    cfg: &TrainConfig,
    cache: &Cache,
    labels: &[Option<usize>],
    train_idx: &[usize],
    draws: &Draws,
    units: &[&str],
    fold: &str,
    ckpt_dir: &Path,
    resume: bool,
    log: &mut Log,
) -> Result<Cnn, LabError> {
    let dev = Device::flex().autodiff();
    let size = cfg.input_size as usize;
    let k = cfg.classes.len();
    let train_idx: Vec<usize> = train_idx.iter().copied().filter(|&i| labels[i].is_some() && cache.errors[i].is_none()).collect();
    let counts = draws.class_mass(&train_idx, labels, k);
    let weights = class_weights(&counts);
    let loss_fn = loss_for(cfg.class_weighted_loss, &weights, &dev);
    let fold_seed = stable_hash(fold, 7919);
    let mut model = cfg.architecture.init_seeded(&dev, cfg.seed.wrapping_add(fold_seed));
    let mut optim = optimizer_for(cfg.weight_decay);
    let per_epoch = match draws {
        Draws::EveryImage => train_idx.len(),
        Draws::Weighted { images, .. } => *images,
    };
    let steps_per_epoch = per_epoch.div_ceil(cfg.batch);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut rng = Rng::new(cfg.seed ^ fold_seed);
    let mut start_epoch = 0;
    std::fs::create_dir_all(ckpt_dir).map_err(|e| LabError::io(ckpt_dir, e))?;
    let ck_state = ckpt_dir.join(format!("{fold}.json"));
    let ck_model = Saved { module: ckpt_dir.join(format!("{fold}.model.bpk")), optim: ckpt_dir.join(format!("{fold}.optim.bpk")) };
    let ck_adversary = Saved { module: ckpt_dir.join(format!("{fold}.adversary.bpk")), optim: ckpt_dir.join(format!("{fold}.adversary-optim.bpk")) };
    let (mut adversary, source_of) = source_adversary(cfg, units, &train_idx, cfg.architecture.features(), &dev)?;
    if resume
        && let Ok(text) = std::fs::read_to_string(&ck_state)
        && let Ok(ck) = serde_json::from_str::<Checkpoint>(&text)
    {
        (model, optim) = ck_model.load(model, optim)?;
        if let Some(adv) = adversary.as_mut() {
            let head = adv.head().ok_or(ctxr::explain::CamError::NoSourceHead)?.clone();
            let (head, adv_optim) = ck_adversary.load(head, optimizer_for(cfg.weight_decay))?;
            adv.restore(head, adv_optim);
        }
        rng = Rng::new(ck.rng);
        start_epoch = ck.epochs_done;
        log.line(&format!("[{} {fold}] resumed after epoch {start_epoch}", cfg.model));
    }
    log.line(&format!(
        "[{} {fold}] {} training images, {} draws per epoch by class {:?} (class weights {:?}), {} epochs × {} steps, {} parameters",
        cfg.model,
        train_idx.len(),
        per_epoch,
        counts,
        weights,
        cfg.epochs,
        steps_per_epoch,
        model.num_params()
    ));
    let pre = cfg.preprocess();
    let t0 = Instant::now();
    let mut seen_imgs = 0usize;
    for epoch in start_epoch..cfg.epochs {
        let order = draws.epoch(&train_idx, &mut rng);
        let (mut loss_sum, mut loss_n, mut correct, mut sources_read) = (0.0f64, 0usize, 0usize, 0usize);
        let te = Instant::now();
        for (s, batch) in order.chunks(cfg.batch).enumerate() {
            let b = batch.len();
            let mut x = vec![0f32; b * size * size];
            for (out, &i) in x.chunks_exact_mut(size * size).zip(batch) {
                augment(cache.image(i), size, &cfg.augment, &mut rng, out);
                for v in out.iter_mut() {
                    *v = (*v - pre.mean) / pre.std;
                }
            }
            let y: Vec<i64> = batch.iter().map(|&i| labels[i].unwrap_or(0) as i64).collect();
            let lr = cosine_lr(cfg.lr, epoch * steps_per_epoch + s, total_steps, steps_per_epoch.min(200));
            let reversal = adversary.as_mut().map(|adversary| Reversal {
                adversary,
                sources: batch.iter().map(|&i| source_of[i]).collect(),
                strength: strength(cfg.source_adversary, (epoch * steps_per_epoch + s) as f64 / total_steps.max(1) as f64),
            });
            let (m, outcome) =
                pollster::block_on(step(model, &mut optim, &loss_fn, Batch { inputs: x, labels: y, size }, lr, &dev, &Trunk::Trained, reversal))?;
            model = m;
            correct += outcome.correct;
            sources_read += outcome.sources_read;
            loss_sum += outcome.loss * b as f64;
            loss_n += b;
            seen_imgs += b;
            if s % 50 == 49 || s + 1 == steps_per_epoch {
                let rate = seen_imgs as f64 / t0.elapsed().as_secs_f64();
                let left = ((cfg.epochs - epoch) * per_epoch).saturating_sub((s + 1) * cfg.batch);
                let source_acc = match &adversary {
                    Some(a) => format!(" source acc {:.3} (of {})", sources_read as f64 / loss_n as f64, a.sources()),
                    None => String::new(),
                };
                log.line(&format!(
                    "[{} {fold}] epoch {}/{} step {}/{} loss {:.4} acc {:.3}{source_acc} lr {:.2e} {:.1} img/s ETA {:.1} min",
                    cfg.model,
                    epoch + 1,
                    cfg.epochs,
                    s + 1,
                    steps_per_epoch,
                    loss_sum / loss_n as f64,
                    correct as f64 / loss_n as f64,
                    lr,
                    rate,
                    left as f64 / rate.max(1e-9) / 60.0
                ));
            }
        }
        log.line(&format!("[{} {fold}] epoch {} done in {:.0} s", cfg.model, epoch + 1, te.elapsed().as_secs_f64()));
        ck_model.save(&model, &optim)?;
        if let Some(adv) = &adversary {
            ck_adversary.save(adv.head().ok_or(ctxr::explain::CamError::NoSourceHead)?, adv.optim())?;
        }
        let ck = Checkpoint { fold: fold.to_string(), epochs_done: epoch + 1, rng: rng.next_u64() };
        rng = Rng::new(ck.rng);
        write(&ck_state, serde_json::to_string(&ck)?.as_bytes())?;
    }
    Ok(model.valid())
}

/// Where a checkpoint keeps one trained module and its optimiser's state.
struct Saved {
    module: PathBuf,
    optim: PathBuf,
}

impl Saved {
    fn save<M: Module>(&self, module: &M, optim: &ModuleOptimizer) -> Result<(), LabError> {
        module.clone().into_record().save(&self.module).map_err(|e| LabError::record(&self.module, e))?;
        optim.save(&self.optim).map_err(|e| LabError::record(&self.optim, e))
    }

    /// `module` and `optim` (fresh ones of the same shape) with the saved state.
    fn load<M: Module>(&self, module: M, optim: ModuleOptimizer) -> Result<(M, ModuleOptimizer), LabError> {
        let rec = ModuleRecord::load(&self.module).map_err(|e| LabError::record(&self.module, e))?;
        let module = module.try_load_record(rec).map_err(|e| LabError::record(&self.module, e))?;
        Ok((module, optim.load(&self.optim).map_err(|e| LabError::record(&self.optim, e))?))
    }
}

/// The recipe's source adversary (`None` when it has none) and each row's source index for it:
/// the balance units of `train_idx` in name order (-1 for a unit no training row has; such
/// rows are never drawn).
fn source_adversary(
    cfg: &TrainConfig,
    units: &[&str],
    train_idx: &[usize],
    features: usize,
    device: &Device,
) -> Result<(Option<Adversary>, Vec<i64>), LabError> {
    if cfg.source_adversary <= 0.0 {
        return Ok((None, Vec::new()));
    }
    let names: std::collections::BTreeSet<&str> = train_idx.iter().filter_map(|&i| units.get(i).copied()).collect();
    if names.len() < 2 || train_idx.iter().any(|&i| i >= units.len()) {
        return Err(LabError::Usage(format!(
            "source_adversary {}: the {} recipe's training rows come from {} named source(s); the adversary needs two or more",
            cfg.source_adversary,
            cfg.model,
            names.len()
        )));
    }
    let index = units.iter().map(|u| names.iter().position(|n| n == u).map_or(-1, |p| p as i64)).collect();
    Ok((Some(Adversary::new(features, names.len(), optimizer_for(cfg.weight_decay), device)), index))
}

/// A stable hash of a recipe: results of runs are only reused by the same recipe.
pub fn recipe_hash(cfg: &TrainConfig) -> u64 {
    stable_hash(&serde_json::to_string(cfg).unwrap_or_default(), 0)
}

/// One run (a cross-validation fold, a left-out source) claimed by this process, so that
/// several `ctxr train --resume` processes on one work folder share the runs instead of
/// repeating them. The claim file holds the process id; a claim whose process is gone is
/// taken over. Dropping the claim releases it.
pub struct Claim(PathBuf);

impl Claim {
    /// Claim `name` in `work`; `None` while a live process holds it.
    pub fn take(work: &Path, name: &str) -> Option<Claim> {
        let path = work.join(format!("{name}.claim"));
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Some(Claim(path));
                }
                Err(_) => {
                    let holder = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
                    if holder.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
                        return None;
                    }
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        None
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write `bytes` to `path`, naming the path in the error.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    std::fs::write(path, bytes).map_err(|e| LabError::io(path, e))
}

/// Logits of `idx` rows of `cache` (no augmentation), batched, on `device`.
pub fn predict_logits(model: &Cnn, cache: &Cache, idx: &[usize], device: &Device, mean: f32, std: f32) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(idx.len());
    for batch in idx.chunks(32) {
        let l = read_rows(model.forward(cache_batch(cache, batch, mean, std, device)));
        let k = l.len() / batch.len().max(1);
        out.extend(l.chunks(k.max(1)).map(|c| c.to_vec()));
    }
    out
}

/// Standardised model input `[n, 1, S, S]` for cached images `batch`, as preprocessing makes it.
pub fn cache_batch(cache: &Cache, batch: &[usize], mean: f32, std: f32, device: &Device) -> Tensor<4> {
    let size = cache.size as usize;
    let mut x = Vec::with_capacity(batch.len() * size * size);
    for &i in batch {
        x.extend(cache.image(i).iter().map(|&v| (v as f32 / 255.0 - mean) / std));
    }
    Tensor::<4>::from_data(TensorData::new(x, [batch.len(), 1, size, size]), device)
}

/// A 2-D tensor's values, row-major (empty if the read fails).
pub fn read_rows(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default()
}

/// Load a record file saved by training into an inference model.
pub fn load_record_file(arch: &ModelConfig, path: &Path, device: &Device) -> Result<Cnn, LabError> {
    let bytes = std::fs::read(path).map_err(|e| LabError::io(path, e))?;
    model_from_record(arch, bytes, device).map_err(|e| LabError::record(path, e))
}

/// Held-out outputs of one cross-validation fold.
#[derive(Serialize, Deserialize)]
pub struct FoldResult {
    pub fold: usize,
    /// Hash of the recipe it ran ([`recipe_hash`]), so a resumed run never mixes recipes.
    #[serde(default)]
    pub recipe: u64,
    pub test_idx: Vec<usize>,
    pub logits: Vec<Vec<f32>>,
    pub seconds: f64,
}

/// What `ctxr train` needs to know.
pub struct RunOptions {
    pub model: ModelId,
    pub data_dir: PathBuf,
    pub weights_dir: PathBuf,
    pub work_root: PathBuf,
    pub resume: bool,
    pub epochs: Option<usize>,
    /// Leave-one-source-out runs instead of the cross-validation: these sources (all of the
    /// model's when empty).
    pub loso: Option<Vec<String>>,
    /// Train (claim) cross-validation folds only, then stop: a helper process for a run
    /// another process will finish and ship.
    pub folds_only: bool,
    /// Recipe changes for experiments, `key=json` with a dotted key (`tone="windowed"`,
    /// `augment.rotation_deg=10`); the manifest stores the recipe as changed.
    pub overrides: Vec<String>,
}

/// The model's recipe with `overrides` applied.
pub fn recipe_with(model: ModelId, overrides: &[String]) -> Result<TrainConfig, LabError> {
    let mut v = serde_json::to_value(recipe(model))?;
    for o in overrides {
        let (key, value) = o.split_once('=').ok_or_else(|| LabError::Usage(format!("--set {o}: expected key=json")))?;
        let value: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.into()));
        let mut at = &mut v;
        for part in key.split('.') {
            at = at.get_mut(part).ok_or_else(|| LabError::Usage(format!("--set {o}: the recipe has no '{key}'")))?;
        }
        *at = value;
    }
    Ok(serde_json::from_value(v)?)
}

/// Insert `entry` into the manifest in `weights_dir` (created when absent) and write it. A
/// manifest that is there but cannot be read whole (a details file missing) is an error, not a
/// fresh start: that would drop the other models' entries.
pub fn store_entry(weights_dir: &Path, entry: ModelEntry) -> Result<(), LabError> {
    let mut manifest = if weights_dir.join("manifest.json").exists() { read_manifest(weights_dir)? } else { Manifest::default() };
    // Untrained placeholders (`ctxr init-weights`) give way to the first trained model.
    manifest.models.retain(|m| !m.record.contains("untrained"));
    manifest.upsert(entry);
    write_manifest(weights_dir, &manifest)
}

/// Cross-validate, pick the shipped model (fold 0's), fit temperature and operating point on
/// its held-out fold, write the record and manifest entry, then evaluate it the way `ctxr
/// eval` does and store that evaluation.
pub fn run(opts: &RunOptions) -> Result<(), LabError> {
    let mut cfg = recipe_with(opts.model, &opts.overrides)?;
    if let Some(e) = opts.epochs {
        cfg.epochs = e;
    }
    let work = opts.work_root.join(cfg.model.name());
    std::fs::create_dir_all(&work).map_err(|e| LabError::io(&work, e))?;
    let mut log = Log::new(&work.join("train.log"));
    let started = Instant::now();
    log.line(&format!("[{}] config {}", cfg.model, serde_json::to_string(&cfg)?));
    let plan = plan(cfg.model, cfg.data, &opts.data_dir)?;
    let pre = cfg.preprocess();
    let t = Instant::now();
    let decode = ctxr::model::decode_options(cfg.model.modality());
    let cache = Cache::build_or_load(&plan.pool, &pre, decode, &work.join("pool.cache"), 2)?;
    let bad: Vec<&String> = plan.pool.iter().zip(&cache.errors).filter(|(_, e)| e.is_some()).map(|(s, _)| &s.rel).collect();
    log.line(&format!(
        "[{}] cache of {} images ready in {:.0} s ({} failed to decode: {:?})",
        cfg.model,
        plan.pool.len(),
        t.elapsed().as_secs_f64(),
        bad.len(),
        bad
    ));
    let labels = label_indices(&plan.pool, &cfg.classes);
    let fold_of = folds(&plan.pool, &cfg);
    if cfg.model == ModelId::Gate {
        return gate::gate_run(&cfg, &plan, &cache, &labels, &fold_of, &work, opts, &mut log);
    }
    if let Some(sources) = &opts.loso {
        loso::run(&cfg, &plan, &cache, &labels, sources, &work, opts.resume, &mut log)?;
        let table = loso::summary(&cfg, &plan, &labels, &work);
        if let Some(t) = &table {
            log.line(&format!("[{}] leave-one-source-out mean AUC {:?} over {} sources", cfg.model, t.mean_auc, t.runs.len()));
        }
        // The shipped entry takes the table when it was trained with the same recipe.
        if let Ok(mut manifest) = read_manifest(&opts.weights_dir)
            && let Some(entry) = manifest.models.iter_mut().find(|m| m.id == cfg.model)
            && let Some(training) = entry.training.as_mut().filter(|t| t.config == cfg)
        {
            training.leave_one_source_out = table;
            write_manifest(&opts.weights_dir, &manifest)?;
            log.line(&format!("[{}] stored the table in {}", cfg.model, opts.weights_dir.join("manifest.json").display()));
        }
        return Ok(());
    }
    let cpu = Device::flex();
    let n = plan.pool.len();
    let units = balance_units(&plan.pool);
    // Folds run in turn; with --resume several processes on one work folder share them
    // (each claims a fold before training it) and the last waits for the others' folds.
    let mut done: Vec<Option<FoldResult>> = (0..cfg.folds).map(|_| None).collect();
    loop {
        let mut waiting = false;
        for (f, slot) in done.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let path = work.join(format!("fold{f}.result.json"));
            if opts.resume
                && let Some(r) =
                    std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<FoldResult>(&t).ok()).filter(|r| r.recipe == recipe_hash(&cfg))
            {
                log.line(&format!("[{} fold {f}] done, reusing its results", cfg.model));
                *slot = Some(r);
                continue;
            }
            let Some(_claim) = Claim::take(&work, &format!("fold{f}")) else {
                waiting = true;
                continue;
            };
            let tf = Instant::now();
            let train_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] != f).collect();
            let draws = Draws::for_recipe(&cfg, &plan.pool, &labels, &train_idx);
            let model = train_model(&cfg, &cache, &labels, &train_idx, &draws, &units, &format!("fold{f}"), &work.join("checkpoints"), opts.resume, &mut log)?;
            write(&work.join(format!("fold{f}.bpk")), &record_bytes(&model, false)?)?;
            let test_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] == f && labels[i].is_some() && cache.errors[i].is_none()).collect();
            let logits = predict_logits(&model, &cache, &test_idx, &cpu, pre.mean, pre.std);
            let r = FoldResult { fold: f, recipe: recipe_hash(&cfg), test_idx, logits, seconds: tf.elapsed().as_secs_f64() };
            write(&path, serde_json::to_string(&r)?.as_bytes())?;
            log.line(&format!("[{} fold {f}] finished in {:.1} min", cfg.model, r.seconds / 60.0));
            *slot = Some(r);
        }
        if !waiting || opts.folds_only {
            break;
        }
        log.line(&format!("[{}] waiting for folds another process is training", cfg.model));
        std::thread::sleep(std::time::Duration::from_secs(30));
    }
    if opts.folds_only {
        log.line(&format!("[{}] folds-only helper: no fold left to claim", cfg.model));
        return Ok(());
    }
    let results: Vec<FoldResult> = done.into_iter().flatten().collect();
    // Cross-validation summary (cache path; same preprocessing, 8-bit cached inputs).
    let binary = cfg.classes.len() == 2;
    let mut per_fold = Vec::new();
    let (mut aucs, mut accs, mut ece_raw, mut ece_cal) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut all_l, mut all_t, mut all_s, mut all_p, mut all_st) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &results {
        let truth: Vec<usize> = r.test_idx.iter().map(|&i| labels[i].unwrap_or(0)).collect();
        let sources: Vec<String> = r.test_idx.iter().map(|&i| plan.pool[i].source.clone()).collect();
        let patients: Vec<Option<String>> = r.test_idx.iter().map(|&i| plan.pool[i].patient_id.clone()).collect();
        let groups: Vec<String> = r.test_idx.iter().map(|&i| plan.pool[i].group.clone()).collect();
        let o = Outputs { classes: &cfg.classes, logits: &r.logits, truth: &truth, sources: &sources, patients: &patients };
        let rep = report(&o, 1.0, None);
        let (er, ec) = cross_fitted_ece(&o, &groups);
        aucs.push(rep.headline_auc().unwrap_or(f64::NAN));
        accs.push(rep.accuracy.unwrap_or(f64::NAN));
        ece_raw.push(er);
        ece_cal.push(ec);
        let headline = rep.headline_auc();
        per_fold.push(FoldSummary {
            fold: r.fold,
            n: truth.len(),
            auc: headline.filter(|_| binary),
            macro_auc: headline.filter(|_| !binary),
            accuracy: rep.accuracy,
            ece_raw: finite(er),
            ece_after_temperature: finite(ec),
            minutes: r.seconds / 60.0,
        });
        all_l.extend(r.logits.iter().cloned());
        all_t.extend(truth);
        all_s.extend(sources);
        all_p.extend(patients);
        all_st.extend(r.test_idx.iter().map(|&i| plan.pool[i].subtype.clone()));
    }
    let pooled_outputs = Outputs { classes: &cfg.classes, logits: &all_l, truth: &all_t, sources: &all_s, patients: &all_p };
    let mut pooled = full_report(&pooled_outputs, 1.0, None);
    pooled.per_subtype = subtype_aucs(&pooled_outputs, &all_st);
    let (am, asd) = mean_sd(&aucs);
    let (cm, csd) = mean_sd(&accs);
    let (erm, _) = mean_sd(&ece_raw);
    let (ecm, ecsd) = mean_sd(&ece_cal);
    let cv = CrossValidation {
        folds: cfg.folds,
        grouping: "patient id where present; blocks of neighbouring file numbers for sarscov2-ct and radiography-224; else one group per image".into(),
        auc_mean: finite(am).filter(|_| binary),
        auc_sd: finite(asd).filter(|_| binary),
        macro_auc_mean: finite(am).filter(|_| !binary),
        macro_auc_sd: finite(asd).filter(|_| !binary),
        accuracy_mean: finite(cm),
        accuracy_sd: finite(csd),
        ece_raw_mean: finite(erm),
        ece_after_temperature_mean: finite(ecm),
        ece_after_temperature_sd: finite(ecsd),
        ece_note: "temperature fitted on one half of each held-out fold's patients, ECE measured on the other half, both ways".into(),
        per_fold,
        pooled_out_of_fold: pooled,
    };
    log.line(&format!("[{}] cross-validation AUC {am:.4} ± {asd:.4}, accuracy {cm:.4} ± {csd:.4}, ECE {erm:.4} → {ecm:.4}", cfg.model));
    // The shipped model: fold 0's, calibrated and thresholded on its own held-out fold.
    let r0 = results.first().ok_or(LabError::NoFolds)?;
    let truth0: Vec<usize> = r0.test_idx.iter().map(|&i| labels[i].unwrap_or(0)).collect();
    let temperature = fit_temperature(&r0.logits, &truth0);
    let probs0: Vec<Vec<f64>> = r0.logits.iter().map(|l| softmax(l, temperature)).collect();
    let positive = cfg.classes.iter().position(|c| c == "covid").unwrap_or(cfg.classes.len() - 1);
    let op =
        OperatingPoint::fit(&probs0, &truth0, &cfg.classes, positive, 0.95, "held-out fold 0 of the training sources (the shipped model never trained on it)");
    let model = load_record_file(&cfg.architecture, &work.join("fold0.bpk"), &cpu)?;
    let full = record_bytes(&model, false)?;
    let half = record_bytes(&model, true)?;
    let title = if cfg.model == ModelId::Ct { "Chest CT slice: COVID-19 vs non-COVID" } else { "Chest X-ray: normal / pneumonia / COVID-19" };
    let training = TrainingSummary {
        config: cfg.clone(),
        pool_sources: count_by(&plan.pool),
        external_sources: Some(count_by(&plan.external)),
        shipped_model: Some("fold 0 (trained on the other 4 folds)".into()),
        cross_validation: Some(cv),
        trained_on: None,
        validation: None,
        minutes: Some(started.elapsed().as_secs_f64() / 60.0),
        machine: Some(format!("{} CPU threads, burn flex", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))),
        leave_one_source_out: loso::summary(&cfg, &plan, &labels, &work),
    };
    let entry_for = |bytes: &[u8], dtype: RecordDtype| ModelEntry {
        temperature: Some(temperature as f32),
        operating_point: op.clone(),
        training: Some(training.clone()),
        credits: credits(cfg.model),
        notes: vec![DISCLAIMER.into()],
        ..ModelEntry::new(
            EntrySpec {
                id: cfg.model,
                title,
                classes: &cfg.classes,
                dtype,
                params: model.num_params(),
                architecture: cfg.architecture.clone(),
                preprocess: pre.clone(),
            },
            bytes,
        )
    };
    // Keep f16 only if the held-out logits barely move.
    let (mut dtype, mut bytes) = (RecordDtype::F16, half.clone());
    {
        let hm = Classifier::load(entry_for(&half, RecordDtype::F16), &half, cpu.clone())?;
        let lh = predict_logits(hm.model()?, &cache, &r0.test_idx, &cpu, pre.mean, pre.std);
        let diff = lh.iter().flatten().zip(r0.logits.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        log.line(&format!("[{}] f16 record {} bytes vs f32 {} bytes; max held-out logit change {diff:.4}", cfg.model, half.len(), full.len()));
        if diff > 0.05 {
            (dtype, bytes) = (RecordDtype::F32, full.clone());
        }
    }
    let mut entry = entry_for(&bytes, dtype);
    std::fs::create_dir_all(&opts.weights_dir).map_err(|e| LabError::io(&opts.weights_dir, e))?;
    write(&opts.weights_dir.join(&entry.record), &bytes)?;
    let clf = Classifier::load(entry.clone(), &bytes, cpu.clone())?;
    log.line(&format!("[{}] evaluating the shipped model through the full decode → preprocess → model path", cfg.model));
    let eval = evaluate_default(&clf, &opts.data_dir)?;
    log.line(&format!(
        "[{}] shipped: internal held-out AUC {:?}, external AUC {:?} ; total {:.1} min",
        cfg.model,
        eval.sets.as_ref().and_then(|s| s.internal_heldout.headline_auc()),
        eval.sets.as_ref().and_then(|s| s.external.headline_auc()),
        started.elapsed().as_secs_f64() / 60.0
    ));
    entry.evaluation = Some(Evaluation::Model(Box::new(eval)));
    store_entry(&opts.weights_dir, entry)
}

/// A summary statistic as stored: `None` when undefined.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
