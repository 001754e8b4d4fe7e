//! Train: a model's training run on the CPU (burn autodiff on `flex`) — patient-grouped k-fold
//! cross-validation, checkpoints with `--resume`, the shipped model's calibration (temperature,
//! operating point), its record and manifest entry, and its evaluation. The optimisation step
//! itself is the core's ([`ctxr::train::step`]), the one the page can run too.

pub mod gate;
pub mod outliers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use ctxr::infer::Classifier;
use ctxr::infer::decision::softmax;
use ctxr::model::report::{CrossValidation, Evaluation, FoldSummary, TrainingSummary};
use ctxr::model::{Cnn, DISCLAIMER, EntrySpec, Manifest, ModelConfig, ModelEntry, ModelId, OperatingPoint, RecordDtype, TrainConfig, record_bytes};
use ctxr::train::augment::{Rng, augment};
use ctxr::train::metrics::{fit_temperature, mean_sd};
use ctxr::train::step::{Batch, class_weights, cosine_lr, loss_for, optimizer_for, step};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::data::Cache;
use crate::eval::evaluate_default;
use crate::eval::report::{Outputs, cross_fitted_ece, full_report, report};
use crate::recipe::{count_by, credits, folds, label_indices, plan, recipe};

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
    fold: usize,
    epochs_done: usize,
    rng: u64,
}

/// Train one model on `train_idx` rows of `cache`. Checkpoints every epoch into `ckpt_dir`;
/// resumes from it when `resume` is set. Returns the inference-mode model.
pub fn train_model(
    cfg: &TrainConfig,
    cache: &Cache,
    labels: &[Option<usize>],
    train_idx: &[usize],
    fold: usize,
    ckpt_dir: &Path,
    resume: bool,
    log: &mut Log,
) -> Result<Cnn, LabError> {
    let dev = Device::flex().autodiff();
    let size = cfg.input_size as usize;
    let k = cfg.classes.len();
    let train_idx: Vec<usize> = train_idx.iter().copied().filter(|&i| labels[i].is_some() && cache.errors[i].is_none()).collect();
    let mut counts = vec![0usize; k];
    for &i in &train_idx {
        if let Some(c) = labels[i] {
            counts[c] += 1;
        }
    }
    let weights = class_weights(&counts);
    let loss_fn = loss_for(cfg, &weights, &dev);
    let mut model = cfg.architecture.init_seeded(&dev, cfg.seed.wrapping_add(fold as u64));
    let mut optim = optimizer_for(cfg);
    let steps_per_epoch = train_idx.len().div_ceil(cfg.batch);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut rng = Rng::new(cfg.seed ^ (fold as u64 * 7919));
    let mut start_epoch = 0;
    std::fs::create_dir_all(ckpt_dir).map_err(|e| LabError::io(ckpt_dir, e))?;
    let ck_state = ckpt_dir.join(format!("fold{fold}.json"));
    let ck_model = ckpt_dir.join(format!("fold{fold}.model.bpk"));
    let ck_optim = ckpt_dir.join(format!("fold{fold}.optim.bpk"));
    if resume
        && let Ok(text) = std::fs::read_to_string(&ck_state)
        && let Ok(ck) = serde_json::from_str::<Checkpoint>(&text)
    {
        let rec = ModuleRecord::load(&ck_model).map_err(|e| LabError::record(&ck_model, e))?;
        model = model.try_load_record(rec).map_err(|e| LabError::record(&ck_model, e))?;
        optim = optim.load(&ck_optim).map_err(|e| LabError::record(&ck_optim, e))?;
        rng = Rng::new(ck.rng);
        start_epoch = ck.epochs_done;
        log.line(&format!("[{} fold {fold}] resumed after epoch {start_epoch}", cfg.model));
    }
    log.line(&format!(
        "[{} fold {fold}] {} training images {:?} (class weights {:?}), {} epochs × {} steps, {} parameters",
        cfg.model,
        train_idx.len(),
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
        let mut order = train_idx.clone();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut loss_n, mut correct) = (0.0f64, 0usize, 0usize);
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
            let (m, outcome) = step(model, &mut optim, &loss_fn, Batch { inputs: x, labels: y, size }, lr, &dev);
            model = m;
            correct += outcome.correct;
            loss_sum += outcome.loss * b as f64;
            loss_n += b;
            seen_imgs += b;
            if s % 50 == 49 || s + 1 == steps_per_epoch {
                let rate = seen_imgs as f64 / t0.elapsed().as_secs_f64();
                let left = ((cfg.epochs - epoch) * train_idx.len()).saturating_sub((s + 1) * cfg.batch);
                log.line(&format!(
                    "[{} fold {fold}] epoch {}/{} step {}/{} loss {:.4} acc {:.3} lr {:.2e} {:.1} img/s ETA {:.1} min",
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
        log.line(&format!("[{} fold {fold}] epoch {} done in {:.0} s", cfg.model, epoch + 1, te.elapsed().as_secs_f64()));
        model.clone().into_record().save(&ck_model).map_err(|e| LabError::record(&ck_model, e))?;
        optim.save(&ck_optim).map_err(|e| LabError::record(&ck_optim, e))?;
        let ck = Checkpoint { fold, epochs_done: epoch + 1, rng: rng.next_u64() };
        rng = Rng::new(ck.rng);
        write(&ck_state, serde_json::to_string(&ck)?.as_bytes())?;
    }
    Ok(model.valid())
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
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| LabError::record(path, e))?;
    let m = arch.init(device).try_load_record(rec.cast_to_module_dtype()).map_err(|e| LabError::record(path, e))?;
    Ok(m.valid())
}

/// Held-out outputs of one cross-validation fold.
#[derive(Serialize, Deserialize)]
pub struct FoldResult {
    pub fold: usize,
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
}

/// Insert `entry` into the manifest in `weights_dir` (created when absent) and write it.
pub fn store_entry(weights_dir: &Path, entry: ModelEntry) -> Result<(), LabError> {
    let mpath = weights_dir.join("manifest.json");
    let mut manifest = std::fs::read_to_string(&mpath).ok().and_then(|t| Manifest::parse(&t).ok()).unwrap_or_default();
    // Untrained placeholders (`ctxr init-weights`) give way to the first trained model.
    manifest.models.retain(|m| !m.record.contains("untrained"));
    manifest.upsert(entry);
    write(&mpath, manifest.to_json().as_bytes())
}

/// Cross-validate, pick the shipped model (fold 0's), fit temperature and operating point on
/// its held-out fold, write the record and manifest entry, then evaluate it the way `ctxr
/// eval` does and store that evaluation.
pub fn run(opts: &RunOptions) -> Result<(), LabError> {
    let mut cfg = recipe(opts.model);
    if let Some(e) = opts.epochs {
        cfg.epochs = e;
    }
    let work = opts.work_root.join(cfg.model.name());
    std::fs::create_dir_all(&work).map_err(|e| LabError::io(&work, e))?;
    let mut log = Log::new(&work.join("train.log"));
    let started = Instant::now();
    log.line(&format!("[{}] config {}", cfg.model, serde_json::to_string(&cfg)?));
    let plan = plan(cfg.model, &opts.data_dir)?;
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
    let cpu = Device::flex();
    let n = plan.pool.len();
    let mut results = Vec::new();
    for f in 0..cfg.folds {
        let path = work.join(format!("fold{f}.result.json"));
        if opts.resume
            && let Some(r) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<FoldResult>(&t).ok())
        {
            log.line(&format!("[{} fold {f}] done earlier, reusing its results", cfg.model));
            results.push(r);
            continue;
        }
        let tf = Instant::now();
        let train_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] != f).collect();
        let model = train_model(&cfg, &cache, &labels, &train_idx, f, &work.join("checkpoints"), opts.resume, &mut log)?;
        write(&work.join(format!("fold{f}.bpk")), &record_bytes(&model, false)?)?;
        let test_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] == f && labels[i].is_some() && cache.errors[i].is_none()).collect();
        let logits = predict_logits(&model, &cache, &test_idx, &cpu, pre.mean, pre.std);
        let r = FoldResult { fold: f, test_idx, logits, seconds: tf.elapsed().as_secs_f64() };
        write(&path, serde_json::to_string(&r)?.as_bytes())?;
        log.line(&format!("[{} fold {f}] finished in {:.1} min", cfg.model, r.seconds / 60.0));
        results.push(r);
    }
    // Cross-validation summary (cache path; same preprocessing, 8-bit cached inputs).
    let binary = cfg.classes.len() == 2;
    let mut per_fold = Vec::new();
    let (mut aucs, mut accs, mut ece_raw, mut ece_cal) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut all_l, mut all_t, mut all_s, mut all_p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
    }
    let pooled = full_report(&Outputs { classes: &cfg.classes, logits: &all_l, truth: &all_t, sources: &all_s, patients: &all_p }, 1.0, None);
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
        let lh = predict_logits(hm.model(), &cache, &r0.test_idx, &cpu, pre.mean, pre.std);
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
        eval.sets.internal_heldout.headline_auc(),
        eval.sets.external.headline_auc(),
        started.elapsed().as_secs_f64() / 60.0
    ));
    entry.evaluation = Some(Evaluation::Model(Box::new(eval)));
    store_entry(&opts.weights_dir, entry)
}

/// A summary statistic as stored: `None` when undefined.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
