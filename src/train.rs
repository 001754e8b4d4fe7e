//! Train: the CPU training loop (burn autodiff on `flex`), patient-grouped 5-fold
//! cross-validation, checkpoints with `--resume`, and the fitted extras the page needs
//! (temperature, operating point). Native only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::augment::{AugmentConfig, Rng, augment};
use crate::data::{Cache, Sample, fnv, grouped_folds, read_manifest};
use crate::decode::{DecodeOptions, TiffU16};
use crate::model::{Cnn, ModelConfig};
use crate::preprocess::PreprocessConfig;
use crate::weights::Modality;

/// Everything that defines a training run (stored in the manifest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: String,
    pub classes: Vec<String>,
    pub input_size: u32,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f32,
    pub seed: u64,
    pub folds: usize,
    pub augment: AugmentConfig,
    pub architecture: ModelConfig,
    pub class_weighted_loss: bool,
}

impl TrainConfig {
    pub fn for_model(id: &str) -> Option<Self> {
        let (classes, epochs): (Vec<&str>, usize) = match id {
            "ct" => (vec!["noncovid", "covid"], 40),
            "cxr" => (vec!["normal", "pneumonia", "covid"], 12),
            "gate" => (vec!["ct", "cxr", "other"], 8),
            _ => return None,
        };
        let mut arch = ModelConfig::new(classes.len());
        let mut input_size = 128;
        if id == "gate" {
            arch.stem_width = 8;
            arch.stage_widths = vec![8, 16, 32, 64];
            input_size = 64;
        }
        Some(TrainConfig {
            model: id.into(),
            classes: classes.into_iter().map(String::from).collect(),
            input_size,
            epochs,
            batch: 16,
            lr: 1e-3,
            weight_decay: 1e-4,
            seed: 20261122,
            folds: 5,
            augment: if id == "gate" {
                // The gate must not care how a chest is framed: zoom out as well as in, and
                // draw the scanner's reconstruction circle that full-field CT exports show.
                AugmentConfig { scale_max: 1.6, fov_prob: 0.3, shift: 0.1, ..AugmentConfig::default() }
            } else {
                // The first recipes (CT 16 epochs, CXR 5, the seed papers' full ranges) underfit
                // this 0.7 M-parameter network: milder ranges and more epochs let it fit.
                let mild = AugmentConfig { squeeze_prob: 0.3, squeeze_min: 0.75, rotation_deg: 15.0, scale_min: 0.8, contrast_min: 0.8, contrast_max: 1.25, ..AugmentConfig::default() };
                if id == "ct" {
                    // The CT training slices were all saved in a narrow lung window (black lungs,
                    // white soft tissue); other hospitals export wider windows.
                    AugmentConfig { gamma_max: 2.0, export_prob: 0.5, ..mild }
                } else {
                    mild
                }
            },
            architecture: arch,
            class_weighted_loss: id != "gate",
        })
    }

    pub fn preprocess(&self) -> PreprocessConfig {
        // CT slices are cropped to the lungs: the training sources are tight thorax crops,
        // MosMed and viewer exports show the whole field of view (see `crop`).
        PreprocessConfig { crop_to_lungs: self.model == "ct", ..PreprocessConfig::new(self.input_size) }
    }
}

/// The images a model is trained, cross-validated and externally tested on.
pub struct Plan {
    /// Training sources (cross-validated by patient-grouped folds).
    pub pool: Vec<Sample>,
    /// External sets, never used for training or model selection.
    pub external: Vec<Sample>,
}

/// Kermany patients held out as an external, patient-disjoint pneumonia/normal set (1 in 10).
pub fn kermany_holdout(s: &Sample) -> bool {
    s.source == "kermany-224" && fnv(&s.group, 99) % 10 == 0
}

/// Which rows train and which test, per model (see the model card for why).
pub fn plan(model: &str, data_dir: &Path) -> Result<Plan, String> {
    let read = |m: &str| read_manifest(&data_dir.join(m).join("manifest.csv")).map_err(|e| e.to_string());
    match model {
        "ct" => {
            let all = read("ct")?;
            let (external, pool): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.source == "mosmed");
            Ok(Plan { pool, external })
        }
        "cxr" => {
            let all = read("cxr")?;
            let (external, pool): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|s| s.source == "hannover" || s.source == "openist" || kermany_holdout(s));
            Ok(Plan { pool, external })
        }
        "gate" => {
            // CT slices vs chest radiographs, from the training pools of both models only.
            let mut pool = Vec::new();
            for (m, label) in [("ct", "ct"), ("cxr", "cxr")] {
                let p = plan(m, data_dir)?;
                pool.extend(p.pool.into_iter().map(|mut s| {
                    s.label = label.into();
                    s
                }));
            }
            let mut external = Vec::new();
            for (m, label) in [("ct", "ct"), ("cxr", "cxr")] {
                let p = plan(m, data_dir)?;
                external.extend(p.external.into_iter().map(|mut s| {
                    s.label = label.into();
                    s
                }));
            }
            Ok(Plan { pool, external })
        }
        other => Err(format!("unknown model '{other}' (ct, cxr or gate)")),
    }
}

pub fn decode_options(model: &str) -> DecodeOptions {
    DecodeOptions { tiff_u16: if model == "cxr" { TiffU16::Raw } else { TiffU16::HuPlus1024 }, ..DecodeOptions::default() }
}

/// Labels as class indices (`None` for labels the model does not know).
pub fn label_indices(samples: &[Sample], classes: &[String]) -> Vec<Option<usize>> {
    samples.iter().map(|s| classes.iter().position(|c| *c == s.label)).collect()
}

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

fn cosine_lr(base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    1e-5 + (base - 1e-5) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Train one model on `train_idx` rows of `cache`. Checkpoints every epoch into `ckpt_dir`;
/// resumes from it when `resume` is set. Returns the inference-mode model.
#[allow(clippy::too_many_arguments)]
pub fn train_model(
    cfg: &TrainConfig,
    cache: &Cache,
    labels: &[Option<usize>],
    train_idx: &[usize],
    fold: usize,
    ckpt_dir: &Path,
    resume: bool,
    log: &mut Log,
) -> Result<Cnn, String> {
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
    // Inverse-frequency class weights (normalised to mean 1).
    let weights: Vec<f32> = {
        let inv: Vec<f32> = counts.iter().map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f32 }).collect();
        let s: f32 = inv.iter().sum::<f32>() / k as f32;
        inv.iter().map(|w| w / s.max(1e-12)).collect()
    };
    let loss_fn = if cfg.class_weighted_loss {
        CrossEntropyLossConfig::new().with_weights(Some(weights.clone())).init(&dev)
    } else {
        CrossEntropyLossConfig::new().init(&dev)
    };
    let mut model = cfg.architecture.init_seeded(&dev, cfg.seed.wrapping_add(fold as u64));
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init();
    let steps_per_epoch = train_idx.len().div_ceil(cfg.batch);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut rng = Rng::new(cfg.seed ^ (fold as u64 * 7919));
    let mut start_epoch = 0;
    std::fs::create_dir_all(ckpt_dir).map_err(|e| e.to_string())?;
    let ck_state = ckpt_dir.join(format!("fold{fold}.json"));
    let ck_model = ckpt_dir.join(format!("fold{fold}.model.bpk"));
    let ck_optim = ckpt_dir.join(format!("fold{fold}.optim.bpk"));
    if resume && let Ok(text) = std::fs::read_to_string(&ck_state) {
        if let Ok(ck) = serde_json::from_str::<Checkpoint>(&text) {
            let rec = ModuleRecord::load(&ck_model).map_err(|e| format!("checkpoint: {e}"))?;
            model = model.try_load_record(rec).map_err(|e| format!("checkpoint: {e}"))?;
            optim = optim.load(&ck_optim).map_err(|e| format!("checkpoint: {e}"))?;
            rng = Rng::new(ck.rng);
            start_epoch = ck.epochs_done;
            log.line(&format!("[{} fold {fold}] resumed after epoch {start_epoch}", cfg.model));
        }
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
        for (step, batch) in order.chunks(cfg.batch).enumerate() {
            let b = batch.len();
            let mut x = vec![0f32; b * size * size];
            for (j, &i) in batch.iter().enumerate() {
                let out = &mut x[j * size * size..(j + 1) * size * size];
                augment(cache.image(i), size, &cfg.augment, &mut rng, out);
                for v in out.iter_mut() {
                    *v = (*v - pre.mean) / pre.std;
                }
            }
            let y: Vec<i64> = batch.iter().map(|&i| labels[i].unwrap_or(0) as i64).collect();
            let xt = Tensor::<4>::from_data(TensorData::new(x, [b, 1, size, size]), &dev);
            let yt = Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [b]), &dev);
            let logits = model.forward(xt);
            let loss = loss_fn.forward(logits.clone(), yt);
            let global = epoch * steps_per_epoch + step;
            let lr = cosine_lr(cfg.lr, global, total_steps, steps_per_epoch.min(200));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            let lv = loss.into_scalar::<f32>() as f64;
            let pred: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
            correct += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
            loss_sum += lv * b as f64;
            loss_n += b;
            seen_imgs += b;
            if step % 50 == 49 || step + 1 == steps_per_epoch {
                let rate = seen_imgs as f64 / t0.elapsed().as_secs_f64();
                let left = ((cfg.epochs - epoch) * train_idx.len()).saturating_sub((step + 1) * cfg.batch);
                log.line(&format!(
                    "[{} fold {fold}] epoch {}/{} step {}/{} loss {:.4} acc {:.3} lr {:.2e} {:.1} img/s ETA {:.1} min",
                    cfg.model,
                    epoch + 1,
                    cfg.epochs,
                    step + 1,
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
        model.clone().into_record().save(&ck_model).map_err(|e| e.to_string())?;
        optim.save(&ck_optim).map_err(|e| e.to_string())?;
        let ck = Checkpoint { fold, epochs_done: epoch + 1, rng: rng.next_u64() };
        rng = Rng::new(ck.rng);
        std::fs::write(&ck_state, serde_json::to_string(&ck).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    Ok(model.valid())
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
fn cache_batch(cache: &Cache, batch: &[usize], mean: f32, std: f32, device: &Device) -> Tensor<4> {
    let size = cache.size as usize;
    let mut x = Vec::with_capacity(batch.len() * size * size);
    for &i in batch {
        x.extend(cache.image(i).iter().map(|&v| (v as f32 / 255.0 - mean) / std));
    }
    Tensor::<4>::from_data(TensorData::new(x, [batch.len(), 1, size, size]), device)
}

/// A 2-D tensor's values, row-major (empty if the read fails).
fn read_rows(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default()
}

/// Load a record file saved by training into an inference model.
pub fn load_record_file(arch: &ModelConfig, path: &Path, device: &Device) -> Result<Cnn, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| e.to_string())?;
    let m = arch.init(device).try_load_record(rec.cast_to_module_dtype()).map_err(|e| e.to_string())?;
    Ok(m.valid())
}

/// Where a run keeps its caches, checkpoints and logs.
pub fn work_dir(root: &Path, model: &str) -> PathBuf {
    root.join(model)
}

/// Modality of a model id.
pub fn modality_of(id: &str) -> Option<Modality> {
    match id {
        "ct" => Some(Modality::Ct),
        "cxr" => Some(Modality::Cxr),
        _ => None,
    }
}

/// Folds of the pool (deterministic from the seed).
pub fn folds(pool: &[Sample], cfg: &TrainConfig) -> Vec<usize> {
    grouped_folds(pool, cfg.folds, cfg.seed)
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
    pub model: String,
    pub data_dir: PathBuf,
    pub weights_dir: PathBuf,
    pub work_root: PathBuf,
    pub resume: bool,
    pub epochs: Option<usize>,
}

/// Cross-validate, pick the shipped model (fold 0's), fit temperature and operating point on
/// its held-out fold, write the record and manifest entry, then evaluate it the way `ctxr
/// eval` does and store that evaluation.
pub fn run(opts: &RunOptions) -> Result<(), String> {
    use crate::evaluate::{OperatingPoint, Outputs, cross_fitted_ece, full_report, report};
    use crate::metrics::{fit_temperature, mean_sd, softmax_t};
    use serde_json::json;

    let mut cfg = TrainConfig::for_model(&opts.model).ok_or_else(|| format!("unknown model '{}' (ct, cxr or gate)", opts.model))?;
    if let Some(e) = opts.epochs {
        cfg.epochs = e;
    }
    let work = work_dir(&opts.work_root, &cfg.model);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut log = Log::new(&work.join("train.log"));
    let started = Instant::now();
    log.line(&format!("[{}] config {}", cfg.model, serde_json::to_string(&cfg).unwrap_or_default()));
    let plan = plan(&cfg.model, &opts.data_dir)?;
    let pre = cfg.preprocess();
    let t = Instant::now();
    let cache = Cache::build_or_load(&plan.pool, &pre, decode_options(&cfg.model), &work.join("pool.cache"), 2).map_err(|e| e.to_string())?;
    let bad: Vec<&String> = plan.pool.iter().zip(&cache.errors).filter(|(_, e)| e.is_some()).map(|(s, _)| &s.rel).collect();
    log.line(&format!("[{}] cache of {} images ready in {:.0} s ({} failed to decode: {:?})", cfg.model, plan.pool.len(), t.elapsed().as_secs_f64(), bad.len(), bad));
    let labels = label_indices(&plan.pool, &cfg.classes);
    let fold_of = folds(&plan.pool, &cfg);
    let cpu = Device::flex();
    if cfg.model == "gate" {
        return crate::train::gate_run(&cfg, &plan, &cache, &labels, &fold_of, &work, opts, &mut log);
    }
    let n = plan.pool.len();
    let mut results = Vec::new();
    for f in 0..cfg.folds {
        let path = work.join(format!("fold{f}.result.json"));
        if opts.resume && let Ok(r) = std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str::<FoldResult>(&t).map_err(|e| e.to_string())) {
            log.line(&format!("[{} fold {f}] done earlier, reusing its results", cfg.model));
            results.push(r);
            continue;
        }
        let tf = Instant::now();
        let train_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] != f).collect();
        let model = train_model(&cfg, &cache, &labels, &train_idx, f, &work.join("checkpoints"), opts.resume, &mut log)?;
        let bytes = crate::weights::record_bytes(&model, false).map_err(|e| e.to_string())?;
        std::fs::write(work.join(format!("fold{f}.bpk")), &bytes).map_err(|e| e.to_string())?;
        let test_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] == f && labels[i].is_some() && cache.errors[i].is_none()).collect();
        let logits = predict_logits(&model, &cache, &test_idx, &cpu, pre.mean, pre.std);
        let r = FoldResult { fold: f, test_idx, logits, seconds: tf.elapsed().as_secs_f64() };
        std::fs::write(&path, serde_json::to_string(&r).unwrap_or_default()).map_err(|e| e.to_string())?;
        log.line(&format!("[{} fold {f}] finished in {:.1} min", cfg.model, r.seconds / 60.0));
        results.push(r);
    }
    // Cross-validation summary (cache path; same preprocessing, 8-bit cached inputs).
    let key = if cfg.classes.len() == 2 { "auc" } else { "macro_auc" };
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
        aucs.push(rep[key].as_f64().unwrap_or(f64::NAN));
        accs.push(rep["accuracy"].as_f64().unwrap_or(f64::NAN));
        ece_raw.push(er);
        ece_cal.push(ec);
        per_fold.push(json!({"fold": r.fold, "n": truth.len(), key: rep[key], "accuracy": rep["accuracy"], "ece_raw": er, "ece_after_temperature": ec, "minutes": r.seconds / 60.0}));
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
    let cv = json!({
        "folds": cfg.folds,
        "grouping": "patient id where present; blocks of neighbouring file numbers for sarscov2-ct and radiography-224; else one group per image",
        format!("{key}_mean"): am, format!("{key}_sd"): asd,
        "accuracy_mean": cm, "accuracy_sd": csd,
        "ece_raw_mean": erm, "ece_after_temperature_mean": ecm, "ece_after_temperature_sd": ecsd,
        "ece_note": "temperature fitted on one half of each held-out fold's patients, ECE measured on the other half, both ways",
        "per_fold": per_fold,
        "pooled_out_of_fold": pooled,
    });
    log.line(&format!("[{}] cross-validation {key} {am:.4} ± {asd:.4}, accuracy {cm:.4} ± {csd:.4}, ECE {erm:.4} → {ecm:.4}", cfg.model));
    // The shipped model: fold 0's, calibrated and thresholded on its own held-out fold.
    let r0 = &results[0];
    let truth0: Vec<usize> = r0.test_idx.iter().map(|&i| labels[i].unwrap_or(0)).collect();
    let temperature = fit_temperature(&r0.logits, &truth0);
    let probs0: Vec<Vec<f64>> = r0.logits.iter().map(|l| softmax_t(l, temperature)).collect();
    let positive = cfg.classes.iter().position(|c| c == "covid").unwrap_or(cfg.classes.len() - 1);
    let op = OperatingPoint::fit(&probs0, &truth0, &cfg.classes, positive, 0.95, "held-out fold 0 of the training sources (the shipped model never trained on it)");
    let model = load_record_file(&cfg.architecture, &work.join("fold0.bpk"), &cpu)?;
    let full = crate::weights::record_bytes(&model, false).map_err(|e| e.to_string())?;
    let half = crate::weights::record_bytes(&model, true).map_err(|e| e.to_string())?;
    // Keep f16 only if the held-out logits barely move.
    let classes: Vec<&str> = cfg.classes.iter().map(String::as_str).collect();
    let title = if cfg.model == "ct" { "Chest CT slice: COVID-19 vs non-COVID" } else { "Chest X-ray: normal / pneumonia / COVID-19" };
    let record_name = format!("{}.bpk", cfg.model);
    let entry_for = |bytes: &[u8], dtype: &str| crate::weights::ModelEntry {
        temperature: Some(temperature as f32),
        operating_point: op.as_ref().and_then(|o| serde_json::to_value(o).ok()),
        training: Some(json!({
            "config": cfg,
            "pool_sources": count_by(&plan.pool),
            "external_sources": count_by(&plan.external),
            "shipped_model": "fold 0 (trained on the other 4 folds)",
            "cross_validation": cv,
            "minutes": started.elapsed().as_secs_f64() / 60.0,
            "machine": format!("{} CPU threads, burn flex", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        })),
        credits: credits(&cfg.model),
        notes: vec![crate::weights::DISCLAIMER.into()],
        ..crate::weights::ModelEntry::new(&cfg.model, title, modality_of(&cfg.model), &classes, &record_name, bytes, dtype, model.num_params(), cfg.architecture.clone(), pre.clone())
    };
    let mut dtype = "f16";
    let mut bytes = half.clone();
    {
        let hm = crate::classifier::Classifier::load(entry_for(&half, "f16"), &half, cpu.clone()).map_err(|e| e.to_string())?;
        let lh = predict_logits(hm.model(), &cache, &r0.test_idx, &cpu, pre.mean, pre.std);
        let diff = lh.iter().flatten().zip(r0.logits.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        log.line(&format!("[{}] f16 record {} bytes vs f32 {} bytes; max held-out logit change {diff:.4}", cfg.model, half.len(), full.len()));
        if diff > 0.05 {
            dtype = "f32";
            bytes = full.clone();
        }
    }
    let entry = entry_for(&bytes, dtype);
    std::fs::create_dir_all(&opts.weights_dir).map_err(|e| e.to_string())?;
    std::fs::write(opts.weights_dir.join(&entry.record), &bytes).map_err(|e| e.to_string())?;
    let clf = crate::classifier::Classifier::load(entry.clone(), &bytes, cpu.clone()).map_err(|e| e.to_string())?;
    log.line(&format!("[{}] evaluating the shipped model through the full decode → preprocess → model path", cfg.model));
    let eval = crate::pipeline::evaluate_default(&clf, &opts.data_dir)?;
    let mut entry = entry;
    entry.evaluation = Some(eval.clone());
    let mpath = opts.weights_dir.join("manifest.json");
    let mut manifest = std::fs::read_to_string(&mpath).ok().and_then(|t| crate::weights::Manifest::parse(&t).ok()).unwrap_or_default();
    manifest.models.retain(|m| !m.record.contains("untrained"));
    manifest.upsert(entry);
    std::fs::write(&mpath, manifest.to_json()).map_err(|e| e.to_string())?;
    log.line(&format!(
        "[{}] shipped: internal held-out {key} {}, external {key} {} ; total {:.1} min",
        cfg.model,
        eval["sets"]["internal_heldout"][key],
        eval["sets"]["external"][key],
        started.elapsed().as_secs_f64() / 60.0
    ));
    Ok(())
}

fn count_by(samples: &[Sample]) -> serde_json::Value {
    let mut m: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>> = Default::default();
    for s in samples {
        *m.entry(s.source.clone()).or_default().entry(s.label.clone()).or_default() += 1;
    }
    serde_json::to_value(m).unwrap_or_default()
}

/// Dataset credits and licences for a model's manifest entry.
pub fn credits(model: &str) -> Vec<String> {
    let ct = [
        "UCSD-AI4H COVID-CT (Zhao et al. 2020, arXiv:2003.13865), github.com/UCSD-AI4H/COVID-CT — research use; cite the paper",
        "SARS-CoV-2 CT-scan dataset (Soares et al. 2020, medRxiv 10.1101/2020.04.24.20078584) — CC BY-NC-SA 4.0",
        "MosMedData COVID19_1110 (Morozov et al. 2020, medRxiv 10.1101/2020.05.20.20100362) — CC BY-NC-ND 3.0; external test only",
    ];
    let cxr = [
        "Kermany et al. 2018 (Cell), pediatric chest X-rays, Mendeley Data — CC BY 4.0",
        "COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021), Kaggle — cite the papers; normals from RSNA",
        "Figure 1 COVID-19 Chest X-ray Dataset Initiative (COVIDx) — research use only",
        "Hannover Medical School COVID-19 Image Repository (doi 10.25835/0090041) — CC BY 3.0; external test only",
        "OpenIST chest X-ray normals (educational source) — research/testing only; external test only",
    ];
    match model {
        "ct" => ct.iter().map(|s| s.to_string()).collect(),
        "cxr" => cxr.iter().map(|s| s.to_string()).collect(),
        _ => ct.iter().chain(cxr.iter()).map(|s| s.to_string()).collect(),
    }
}

/// The natural photographs among `odd-inputs` (checks for the gate, never training data).
pub const NATURAL_PHOTOS: [&str; 9] = [
    "image-rs/tests/images/jpg/iptc.jpg",
    "image-rs/tests/images/jpg/portrait_2.jpg",
    "image-rs/tests/images/jpg/progressive/3.jpg",
    "image-rs/tests/images/jpg/progressive/cat.jpg",
    "image-rs/tests/images/png/iptc.png",
    "image-rs/tests/images/tiff/testsuite/mandrill.tiff",
    "image-rs/tests/images/tiff/testsuite/planar.tiff",
    "image-rs/tests/images/tiff/testsuite/rgb-3c-16b.tiff",
    "image-rs/tests/images/webp/extended_images/advertises_rgba_but_frames_are_rgb.webp",
];

/// Features of cached images, row-major `n × d`.
fn cache_features(model: &Cnn, cache: &Cache, idx: &[usize], mean: f32, std: f32) -> (Vec<f32>, usize) {
    let cpu = Device::flex();
    let size = cache.size as usize;
    let mut out = Vec::new();
    let mut d = 0;
    for batch in idx.chunks(64) {
        let (f, _) = model.gate_features(cache_batch(cache, batch, mean, std, &cpu));
        let fd = f.dims()[1];
        d = fd + crate::gate::N_STATS;
        let fv = read_rows(f);
        for (j, &i) in batch.iter().enumerate() {
            out.extend_from_slice(&fv[j * fd..(j + 1) * fd]);
            out.extend(crate::gate::image_stats(cache.image(i), size));
        }
    }
    (out, d)
}

fn quantile(v: &[f32], q: f64) -> f32 {
    let mut s: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f32::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)]
}

/// Train the modality gate (CT slice vs chest radiograph) on folds 1–4 of both training pools,
/// fit the Mahalanobis model on those training images, set the distance limit on fold 0
/// (validation), then measure acceptance on the external sets and refusal of natural photos.
#[allow(clippy::too_many_arguments)]
pub fn gate_run(cfg: &TrainConfig, plan: &Plan, cache: &Cache, labels: &[Option<usize>], fold_of: &[usize], work: &Path, opts: &RunOptions, log: &mut Log) -> Result<(), String> {
    use crate::gate::{GateParams, fit_mahalanobis};
    use serde_json::json;
    let started = Instant::now();
    let pre = cfg.preprocess();
    // Outlier exposure: synthetic "neither" images (label 2) appended to the cache.
    let size = cache.size as usize;
    let n_real = plan.pool.len();
    let chest: Vec<&[u8]> = (0..n_real).step_by(7).filter(|&i| cache.errors[i].is_none()).map(|i| cache.image(i)).collect();
    let synthetic = crate::outliers::generate(2000, size, &chest, cfg.seed ^ 0x5EED);
    let mut images = cache.images.clone();
    let mut errors = cache.errors.clone();
    let mut labels = labels.to_vec();
    let mut fold_of = fold_of.to_vec();
    for (j, img) in synthetic.iter().enumerate() {
        images.extend_from_slice(img);
        errors.push(None);
        labels.push(Some(2));
        fold_of.push(j % cfg.folds);
    }
    let cache = &Cache { size: cache.size, images, errors };
    let (labels, fold_of) = (&labels[..], &fold_of[..]);
    let n = labels.len();
    let ok = |i: &usize| labels[*i].is_some() && cache.errors[*i].is_none();
    let train_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] != 0).filter(ok).collect();
    let real = |i: &usize| labels[*i].is_some_and(|l| l < 2);
    let val_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] == 0).filter(ok).filter(real).collect();
    log.line(&format!("[gate] {} chest images and {} synthetic outliers ({} training, {} validation chest images)", n_real, synthetic.len(), train_idx.len(), val_idx.len()));
    let model = train_model(cfg, cache, labels, &train_idx, 0, &work.join("checkpoints"), opts.resume, log)?;
    // The distance model describes chest images only.
    let fit_idx: Vec<usize> = train_idx.iter().copied().filter(|i| real(i)).collect();
    let (ft, d) = cache_features(&model, cache, &fit_idx, pre.mean, pre.std);
    let lt: Vec<usize> = fit_idx.iter().map(|&i| labels[i].unwrap_or(0)).collect();
    let (means, precision) = fit_mahalanobis(&ft, &lt, d, 2, 0.05);
    let mut params = GateParams { feature_dim: d, means, precision, threshold: 0.0, threshold_quantile: 0.999, threshold_margin: 1.25, max_colourfulness: 20.0 };
    let dist_of = |f: &[f32], p: &GateParams| -> Vec<f32> { f.chunks(d).map(|r| p.distance(r)).collect() };
    let (fv, _) = cache_features(&model, cache, &val_idx, pre.mean, pre.std);
    let dv = dist_of(&fv, &params);
    let dt = dist_of(&ft, &params);
    params.threshold = quantile(&dv, params.threshold_quantile as f64) * params.threshold_margin;
    log.line(&format!(
        "[gate] feature dim {d}; training distance q50 {:.1} q99 {:.1} q99.9 {:.1}; validation q99.9 {:.1} → limit {:.1}",
        quantile(&dt, 0.5),
        quantile(&dt, 0.99),
        quantile(&dt, 0.999),
        quantile(&dv, 0.999),
        params.threshold
    ));
    let bytes = crate::weights::record_bytes(&model, true).map_err(|e| e.to_string())?;
    let classes: Vec<&str> = cfg.classes.iter().map(String::as_str).collect();
    let mut entry = crate::weights::ModelEntry {
        training: Some(json!({"config": cfg, "pool_sources": count_by(&plan.pool), "trained_on": "folds 1-4 of both models' training pools", "validation": "fold 0 (sets the distance limit)"})),
        gate: serde_json::to_value(&params).ok(),
        credits: credits("gate"),
        notes: vec!["Refuses images that are neither a chest CT slice nor a chest X-ray; a screening aid for the demo, not a guarantee.".into()],
        ..crate::weights::ModelEntry::new("gate", "Input gate: chest CT slice vs chest X-ray vs neither", None, &classes, "gate.bpk", &bytes, "f16", model.num_params(), cfg.architecture.clone(), pre.clone())
    };
    let clf = crate::classifier::Classifier::load(entry.clone(), &bytes, Device::flex()).map_err(|e| e.to_string())?;
    let gk = crate::gate::Gatekeeper { classifier: clf, params };
    let eval = crate::pipeline::evaluate_gate(&gk, &plan.external, &opts.data_dir.join("odd-inputs"))?;
    log.line(&format!("[gate] {}", eval));
    entry.evaluation = Some(eval);
    std::fs::create_dir_all(&opts.weights_dir).map_err(|e| e.to_string())?;
    std::fs::write(opts.weights_dir.join("gate.bpk"), &bytes).map_err(|e| e.to_string())?;
    let mpath = opts.weights_dir.join("manifest.json");
    let mut manifest = std::fs::read_to_string(&mpath).ok().and_then(|t| crate::weights::Manifest::parse(&t).ok()).unwrap_or_default();
    manifest.models.retain(|m| !m.record.contains("untrained"));
    manifest.upsert(entry);
    std::fs::write(&mpath, manifest.to_json()).map_err(|e| e.to_string())?;
    log.line(&format!("[gate] done in {:.1} min", started.elapsed().as_secs_f64() / 60.0));
    Ok(())
}
