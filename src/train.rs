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
            "ct" => (vec!["noncovid", "covid"], 24),
            "cxr" => (vec!["normal", "pneumonia", "covid"], 8),
            "gate" => (vec!["ct", "cxr"], 2),
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
            augment: AugmentConfig::default(),
            architecture: arch,
            class_weighted_loss: true,
        })
    }

    pub fn preprocess(&self) -> PreprocessConfig {
        PreprocessConfig::new(self.input_size)
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
    let mut model = cfg.architecture.init(&dev);
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
            let mut unit = vec![0u8; size * size];
            for (j, &i) in batch.iter().enumerate() {
                let src = cache.image(i);
                for (u, &v) in unit.iter_mut().zip(src) {
                    *u = v;
                }
                let out = &mut x[j * size * size..(j + 1) * size * size];
                augment(&unit, size, &cfg.augment, &mut rng, out);
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
                let left = (cfg.epochs - epoch) * train_idx.len() - (step + 1) * cfg.batch;
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
    let size = cache.size as usize;
    let mut out = Vec::with_capacity(idx.len());
    for batch in idx.chunks(32) {
        let mut x = Vec::with_capacity(batch.len() * size * size);
        for &i in batch {
            x.extend(cache.image(i).iter().map(|&v| (v as f32 / 255.0 - mean) / std));
        }
        let t = Tensor::<4>::from_data(TensorData::new(x, [batch.len(), 1, size, size]), device);
        let l: Vec<f32> = model.forward(t).into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        let k = l.len() / batch.len().max(1);
        out.extend(l.chunks(k.max(1)).map(|c| c.to_vec()));
    }
    out
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
