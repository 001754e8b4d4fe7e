//! Adapt: fine-tune a shipped model on a user's own labelled images, and measure honestly
//! whether it helped. The gain is never measured on the images a model trained on: the set is
//! split into patient-grouped folds; for each fold a copy of the base model is fine-tuned on
//! the other folds (with one part of *their* patients held out for early stopping and for
//! refitting the temperature and operating point) and scores the fold; the pooled out-of-fold
//! scores give the "after" AUC, the base model's scores on the same images the "before", and a
//! paired bootstrap over patients the interval of the difference. The model the user keeps is
//! then fitted the same way on the whole set.
//!
//! The work advances one batch per call ([`Adaptation::advance`]) so that a page's worker can
//! report progress, stay responsive and cancel mid-epoch; the CLI simply loops. Images are held
//! as the 8-bit squares the model saw (what [`crate::imaging::Preprocessed::seen`] holds), a
//! quarter of f32: 1,000 CT slices at 192² take 37 MB.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};

use crate::explain::CamError;
use crate::explain::gradcam::read;
use crate::infer::decision::softmax;
pub use crate::model::adapted::{AdaptConfig, CrossValidated, EpochRecord, FoldRecord, Part, Provenance, WARNING};
use crate::model::report::TrainingSummary;
use crate::model::{AugmentConfig, Cnn, DISCLAIMER, ModelEntry, OperatingPoint, RecordDtype, WeightsError, record_bytes, sha256_hex};
use crate::train::assess::{RESAMPLES, bootstrap, fold_mean_auc, headline_auc};
use crate::train::augment::{Rng, augment};
use crate::train::folds::grouped_folds;
use crate::train::labelled::SetError;
use crate::train::metrics::fit_temperature;
use crate::train::step::{Batch, Trunk, class_weights, cosine_lr, loss_for, optimizer_for, step};

/// Why an adaptation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    #[error(
        "{images} images of {size}×{size} need {} MB, more than the {} MB this machine allows for adapting; use fewer images",
        bytes >> 20, limit >> 20
    )]
    TooLarge { images: usize, size: usize, bytes: usize, limit: usize },
    #[error("an image of {got} values where the model reads {want} ({size}×{size})")]
    WrongSize { got: usize, want: usize, size: usize },
    #[error(
        "the '{class}' images come from {patients} patients; adapting needs at least {need}, so that every fold and the held-out part have one (label more patients, or name fewer folds)"
    )]
    TooFewPatients { class: String, patients: usize, need: usize },
    #[error("label {label} does not exist: the model has {classes} classes")]
    NoSuchLabel { label: usize, classes: usize },
    #[error(transparent)]
    Set(#[from] SetError),
    #[error(transparent)]
    Device(#[from] CamError),
    #[error("the adaptation has not finished")]
    Unfinished,
    #[error(transparent)]
    Record(#[from] WeightsError),
}

/// A user's labelled images as the model's 8-bit input squares, with labels and patients.
#[derive(Debug, Clone)]
pub struct Examples {
    size: usize,
    images: Vec<u8>,
    labels: Vec<usize>,
    groups: Vec<Option<String>>,
}

impl Examples {
    /// Room for `n` images of `size`², refused before anything is read when they would need
    /// more than `limit` bytes.
    pub fn with_capacity(n: usize, size: usize, limit: usize) -> Result<Self, AdaptError> {
        let bytes = n.saturating_mul(size * size);
        if bytes > limit {
            return Err(AdaptError::TooLarge { images: n, size, bytes, limit });
        }
        Ok(Examples { size, images: Vec::with_capacity(bytes), labels: Vec::with_capacity(n), groups: Vec::with_capacity(n) })
    }

    pub fn push(&mut self, seen: &[u8], label: usize, group: Option<String>) -> Result<(), AdaptError> {
        let want = self.size * self.size;
        if seen.len() != want {
            return Err(AdaptError::WrongSize { got: seen.len(), want, size: self.size });
        }
        self.images.extend_from_slice(seen);
        self.labels.push(label);
        self.groups.push(group);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes the images take.
    pub fn bytes(&self) -> usize {
        self.images.len()
    }

    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    pub fn groups(&self) -> &[Option<String>] {
        &self.groups
    }

    fn image(&self, i: usize) -> &[u8] {
        let s = self.size * self.size;
        &self.images[i * s..(i + 1) * s]
    }

    /// A patient key per image: its group, or the image itself when it names none.
    fn group_keys(&self) -> Vec<String> {
        self.groups.iter().enumerate().map(|(i, g)| g.clone().unwrap_or_else(|| format!("\u{0}image {i}"))).collect()
    }
}

/// The result: the adapted model (inference copy), its calibration and how it was made.
pub struct Adapted {
    pub model: Cnn,
    pub temperature: f64,
    pub operating_point: Option<OperatingPoint>,
    pub provenance: Provenance,
    /// Out-of-fold probabilities before and after, per image (for the caller's own reports).
    pub before: Vec<Vec<f64>>,
    pub after: Vec<Vec<f64>>,
}

impl Adapted {
    /// The adapted record (f32) and its manifest entry, which takes the place of `base`'s: the
    /// title says it was adapted locally and is not validated, the provenance says from what
    /// and on what, and the base's evaluation is dropped because it measured other weights.
    /// The CLI writes the pair to a weights folder, the page to a file and IndexedDB. Async:
    /// the weights are read back from the device with awaited reads (WebGPU requires it).
    pub async fn entry(&self, base: &ModelEntry) -> Result<(ModelEntry, Vec<u8>), AdaptError> {
        let bytes = record_bytes(&to_host(&self.model).await?, false)?;
        let n: usize = self.provenance.counts.iter().sum();
        let entry = ModelEntry {
            title: format!("{} — adapted locally on {n} images, not validated", base.title),
            record: format!("{}.adapted.bpk", base.id),
            sha256: sha256_hex(&bytes),
            record_bytes: bytes.len() as u64,
            dtype: RecordDtype::F32,
            temperature: Some(self.temperature as f32),
            operating_point: self.operating_point.clone(),
            evaluation: None,
            // The base model's cross-validation and details describe other weights.
            training: base.training.clone().map(|t| TrainingSummary { cross_validation: None, ..t }),
            details: None,
            adapted: Some(Box::new(self.provenance.clone())),
            notes: vec![WARNING.into(), DISCLAIMER.into()],
            ..base.clone()
        };
        Ok((entry, bytes))
    }
}

/// What one call of [`Adaptation::advance`] did (tagged `stage` for the page's worker).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Progress {
    /// The base model scored a batch of the set (the "before").
    Scored { done: usize, of: usize },
    /// One optimisation step. `fit` counts the cross-validation folds then the final fit
    /// (`fit == folds`); `steps_run` counts the steps run so far, `steps_left` those still
    /// to come at most (no early stop): an ETA is the time per step run times the steps left.
    Step { fit: usize, epoch: usize, loss: f64, steps_run: usize, steps_left: usize },
    /// An epoch ended and was measured on the held-out patients.
    Epoch { fit: usize, record: EpochRecord, stopping: bool },
    /// Everything is done: call [`Adaptation::finish`].
    Done,
}

/// The recipe pieces of the base model that adaptation reuses: same augmentation, loss and
/// standardisation as its training.
struct Recipe {
    classes: Vec<String>,
    positive: usize,
    augment: AugmentConfig,
    class_weighted_loss: bool,
    weight_decay: f32,
    mean: f32,
    std: f32,
}

/// One fine-tuning run: train rows, held-out rows, the model and its optimiser state.
struct Fit {
    train: Vec<usize>,
    held: Vec<usize>,
    test: Vec<usize>,
    model: Cnn,
    optim: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
    /// The loss's class weights (all 1 when the recipe does not weight).
    class_weights: Vec<f32>,
    rng: Rng,
    epoch: usize,
    order: Vec<usize>,
    pos: usize,
    step: usize,
    steps_total: usize,
    sums: (f64, usize, usize),
    /// Held-out AUC of the kept model (`None` until the base model was measured: it is the
    /// bar every epoch must clear).
    best_score: Option<f64>,
    best: Cnn,
    best_epoch: usize,
    since_best: usize,
    history: Vec<EpochRecord>,
}

/// A running adaptation of one model on one labelled set.
pub struct Adaptation {
    cfg: AdaptConfig,
    recipe: Recipe,
    examples: Examples,
    base: Cnn,
    base_entry_sha: String,
    base_title: String,
    base_temperature: f64,
    plain: Device,
    autodiff: Device,
    fold_of: Vec<usize>,
    before_logits: Vec<Vec<f32>>,
    after: Vec<Option<Vec<f64>>>,
    /// Index of the current fit (`0..folds` CV, `folds` the final fit).
    fit_index: usize,
    fit: Option<Fit>,
    folds_done: Vec<FoldRecord>,
    final_fit: Option<(Cnn, f64, Option<OperatingPoint>, FoldRecord)>,
    steps_run: usize,
    /// Steps an early stop saved.
    steps_skipped: usize,
    steps_max: usize,
}

const SCORE_BATCH: usize = 32;

impl Adaptation {
    /// Start adapting `base` (an inference model described by `entry`, on the plain `device`)
    /// to `examples`. Refuses sets that cannot be cross-validated.
    pub fn new(entry: &ModelEntry, base: Cnn, device: &Device, examples: Examples, cfg: AdaptConfig) -> Result<Self, AdaptError> {
        let k = entry.classes.len();
        if let Some(&label) = examples.labels.iter().find(|&&l| l >= k) {
            return Err(AdaptError::NoSuchLabel { label, classes: k });
        }
        if examples.size != entry.preprocess.input_size as usize {
            let want = (entry.preprocess.input_size as usize).pow(2);
            return Err(AdaptError::WrongSize { got: examples.size * examples.size, want, size: entry.preprocess.input_size as usize });
        }
        let counts = counts(&examples.labels, k);
        let present: Vec<usize> = (0..k).filter(|&c| counts[c] > 0).collect();
        match present.as_slice() {
            [] => return Err(SetError::Empty.into()),
            [c] => return Err(SetError::OneClass { class: entry.classes[*c].clone() }.into()),
            _ => {}
        }
        // Each class needs a patient in every fold and in the held-out part of each fit.
        let folds = cfg.folds.max(2);
        let need_per_class = folds.max(cfg.hold_one_in.max(2));
        let keys = examples.group_keys();
        let patients_of = |c: usize| {
            let mut g: Vec<&str> = (0..examples.len()).filter(|&i| examples.labels[i] == c).map(|i| keys[i].as_str()).collect();
            g.sort_unstable();
            g.dedup();
            g.len()
        };
        if let Some(&c) = present.iter().find(|&&c| patients_of(c) < need_per_class) {
            return Err(AdaptError::TooFewPatients { class: entry.classes[c].clone(), patients: patients_of(c), need: need_per_class });
        }
        let training = entry.training.as_ref().map(|t| &t.config);
        let recipe = Recipe {
            classes: entry.classes.clone(),
            positive: entry.classes.iter().position(|c| c == "covid").unwrap_or(k - 1),
            augment: training.map(|t| t.augment).unwrap_or_default(),
            class_weighted_loss: training.is_none_or(|t| t.class_weighted_loss),
            weight_decay: training.map(|t| t.weight_decay).unwrap_or(1e-4),
            mean: entry.preprocess.mean,
            std: entry.preprocess.std,
        };
        let strata: Vec<String> = examples.labels.iter().map(|l| l.to_string()).collect();
        let fold_of =
            grouped_folds(&keys.iter().map(String::as_str).collect::<Vec<_>>(), &strata.iter().map(String::as_str).collect::<Vec<_>>(), folds, cfg.seed);
        let n = examples.len();
        let cfg = AdaptConfig { folds, ..cfg };
        let mut a = Adaptation {
            recipe,
            base: base.valid(),
            base_entry_sha: entry.sha256.clone(),
            base_title: entry.title.clone(),
            base_temperature: f64::from(entry.temperature()),
            plain: device.clone(),
            autodiff: device.clone().autodiff(),
            fold_of,
            before_logits: Vec::with_capacity(n),
            after: vec![None; n],
            fit_index: 0,
            fit: None,
            folds_done: Vec::new(),
            final_fit: None,
            steps_run: 0,
            steps_skipped: 0,
            steps_max: 0,
            examples,
            cfg,
        };
        a.steps_max = (0..=a.cfg.folds).map(|f| a.split(f).0.len().div_ceil(a.cfg.batch) * a.cfg.max_epochs).sum();
        Ok(a)
    }

    pub fn config(&self) -> &AdaptConfig {
        &self.cfg
    }

    /// The number of optimisation steps if no fit stops early (for progress bars and ETAs).
    pub fn steps_max(&self) -> usize {
        self.steps_max
    }

    /// Do the next piece of work: one batch of scoring, one optimisation step, or one
    /// held-out measurement at the end of an epoch.
    pub async fn advance(&mut self) -> Result<Progress, AdaptError> {
        let n = self.examples.len();
        if self.before_logits.len() < n {
            let rows: Vec<usize> = (self.before_logits.len()..n.min(self.before_logits.len() + SCORE_BATCH)).collect();
            let l = self.logits(&self.base, &rows).await?;
            self.before_logits.extend(l);
            return Ok(Progress::Scored { done: self.before_logits.len(), of: n });
        }
        if self.fit_index > self.cfg.folds {
            return Ok(Progress::Done);
        }
        if self.fit.is_none() {
            self.fit = Some(self.start_fit(self.fit_index));
        }
        let fit_index = self.fit_index;
        let steps_max = self.steps_max;
        let Some(fit) = self.fit.as_mut() else { return Ok(Progress::Done) };
        if fit.pos < fit.order.len() {
            let size = self.examples.size;
            let rows: Vec<usize> = fit.order[fit.pos..(fit.pos + self.cfg.batch).min(fit.order.len())].to_vec();
            fit.pos += rows.len();
            let mut x = vec![0f32; rows.len() * size * size];
            for (out, &i) in x.chunks_exact_mut(size * size).zip(&rows) {
                augment(self.examples.image(i), size, &self.recipe.augment, &mut fit.rng, out);
                for v in out.iter_mut() {
                    *v = (*v - self.recipe.mean) / self.recipe.std;
                }
            }
            let labels: Vec<i64> = rows.iter().map(|&i| self.examples.labels[i] as i64).collect();
            let lr = cosine_lr(self.cfg.lr, fit.step, fit.steps_total, fit.steps_total / self.cfg.max_epochs.max(1));
            let through = self.cfg.part.frozen_through(self.base.num_stages());
            let trunk = match through {
                Some(through) => Trunk::Frozen { model: &self.base, through, device: &self.plain },
                None => Trunk::Trained,
            };
            let model = fit.model.clone();
            let (model, outcome) = step(model, &mut fit.optim, &fit.loss_fn, Batch { inputs: x, labels, size }, lr, &self.autodiff, &trunk, None).await?;
            fit.model = model;
            fit.step += 1;
            fit.sums.0 += outcome.loss * outcome.images as f64;
            fit.sums.1 += outcome.images;
            fit.sums.2 += outcome.correct;
            self.steps_run += 1;
            let steps_left = steps_max.saturating_sub(self.steps_run + self.steps_skipped);
            return Ok(Progress::Step { fit: fit_index, epoch: fit.epoch + 1, loss: outcome.loss, steps_run: self.steps_run, steps_left });
        }
        // End of an epoch: measure on the held-out patients.
        fit.epoch += 1;
        let current = fit.model.valid();
        let held = fit.held.clone();
        let logits = self.logits(&current, &held).await?;
        let Some(fit) = self.fit.as_mut() else { return Ok(Progress::Done) };
        let truth: Vec<usize> = held.iter().map(|&i| self.examples.labels[i]).collect();
        let held_loss = weighted_nll(&logits, &truth, &fit.class_weights);
        let probs: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l, 1.0)).collect();
        let auc = headline_auc(&probs, &truth, self.recipe.classes.len());
        let record = EpochRecord {
            epoch: fit.epoch,
            train_loss: fit.sums.0 / fit.sums.1.max(1) as f64,
            train_accuracy: fit.sums.2 as f64 / fit.sums.1.max(1) as f64,
            held_loss,
            held_auc: auc.is_finite().then_some(auc),
        };
        fit.sums = (0.0, 0, 0);
        // Early stopping watches the held-out AUC, the number adaptation is judged by (the
        // loss moves with calibration too, which the refitted temperature corrects).
        let score = |auc: f64, loss: f64| if auc.is_finite() { auc } else { -loss };
        let bar = match fit.best_score {
            Some(b) => b,
            None => {
                let base = self.logits(&self.base, &held).await?;
                let p: Vec<Vec<f64>> = base.iter().map(|l| softmax(l, 1.0)).collect();
                score(
                    headline_auc(&p, &truth, self.recipe.classes.len()),
                    weighted_nll(&base, &truth, &self.fit.as_ref().map(|f| f.class_weights.clone()).unwrap_or_default()),
                )
            }
        };
        let Some(fit) = self.fit.as_mut() else { return Ok(Progress::Done) };
        fit.best_score = Some(bar);
        if score(auc, held_loss) > bar {
            fit.best_score = Some(score(auc, held_loss));
            fit.best = current;
            fit.best_epoch = fit.epoch;
            fit.since_best = 0;
        } else {
            fit.since_best += 1;
        }
        fit.history.push(record.clone());
        let stopping = fit.since_best >= self.cfg.patience || fit.epoch >= self.cfg.max_epochs;
        if !stopping {
            let mut order = fit.train.clone();
            fit.rng.shuffle(&mut order);
            fit.order = order;
            fit.pos = 0;
            return Ok(Progress::Epoch { fit: fit_index, record, stopping });
        }
        // Skipped steps of an early stop no longer count towards the maximum.
        let left = fit.steps_total - fit.step;
        self.steps_skipped += left;
        self.finish_fit().await?;
        Ok(Progress::Epoch { fit: fit_index, record, stopping })
    }

    /// Calibrate the finished fit on its held-out patients, score its test fold (or keep it as
    /// the final model) and move on.
    async fn finish_fit(&mut self) -> Result<(), AdaptError> {
        let Some(fit) = self.fit.take() else { return Ok(()) };
        let held_logits = self.logits(&fit.best, &fit.held).await?;
        let truth: Vec<usize> = fit.held.iter().map(|&i| self.examples.labels[i]).collect();
        let temperature = fit_temperature(&held_logits, &truth);
        let held_probs: Vec<Vec<f64>> = held_logits.iter().map(|l| softmax(l, temperature)).collect();
        let k = self.recipe.classes.len();
        let mut record = FoldRecord {
            fold: self.fit_index,
            train_images: fit.train.len(),
            held_images: fit.held.len(),
            test_images: fit.test.len(),
            best_epoch: fit.best_epoch,
            epochs: fit.history,
            auc_before: None,
            auc_after: None,
        };
        if self.fit_index < self.cfg.folds {
            let logits = self.logits(&fit.best, &fit.test).await?;
            let t: Vec<usize> = fit.test.iter().map(|&i| self.examples.labels[i]).collect();
            let after: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l, temperature)).collect();
            let before: Vec<Vec<f64>> = fit.test.iter().map(|&i| softmax(&self.before_logits[i], self.base_temperature)).collect();
            record.auc_before = Some(headline_auc(&before, &t, k)).filter(|a| a.is_finite());
            record.auc_after = Some(headline_auc(&after, &t, k)).filter(|a| a.is_finite());
            for (&i, p) in fit.test.iter().zip(after) {
                self.after[i] = Some(p);
            }
            self.folds_done.push(record);
        } else {
            let op = OperatingPoint::fit(
                &held_probs,
                &truth,
                &self.recipe.classes,
                self.recipe.positive,
                self.cfg.target_sensitivity,
                "the held-out patients of the user's own set (one in five), after adapting on the others",
            );
            self.final_fit = Some((fit.best, temperature, op, record));
        }
        self.fit_index += 1;
        Ok(())
    }

    /// The rows of fit `index`: CV fold `index` is its test part (none for the final fit); one
    /// patient in `hold_one_in` of the rest, stratified by label, is held out; the rest trains.
    fn split(&self, index: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let n = self.examples.len();
        let in_test = |i: usize| index < self.cfg.folds && self.fold_of[i] == index;
        let test: Vec<usize> = (0..n).filter(|&i| in_test(i)).collect();
        let rest: Vec<usize> = (0..n).filter(|&i| !in_test(i)).collect();
        let keys = self.examples.group_keys();
        let g: Vec<&str> = rest.iter().map(|&i| keys[i].as_str()).collect();
        let s: Vec<String> = rest.iter().map(|&i| self.examples.labels[i].to_string()).collect();
        let parts = grouped_folds(&g, &s.iter().map(String::as_str).collect::<Vec<_>>(), self.cfg.hold_one_in.max(2), self.cfg.seed ^ (index as u64 + 1));
        let (mut train, mut held) = (Vec::new(), Vec::new());
        for (j, &i) in rest.iter().enumerate() {
            if parts[j] == 0 { held.push(i) } else { train.push(i) }
        }
        (train, held, test)
    }

    /// A new fit for `index`: CV fold `index` is the test part (none for the final fit); one
    /// patient in `hold_one_in` of the rest is held out.
    fn start_fit(&self, index: usize) -> Fit {
        let (train, held, test) = self.split(index);
        let k = self.recipe.classes.len();
        let weights = class_weights(&counts(&train.iter().map(|&i| self.examples.labels[i]).collect::<Vec<_>>(), k));
        // Early stopping watches the training loss on the held-out patients: weighted alike.
        let held_weights = if self.recipe.class_weighted_loss { weights.clone() } else { vec![1.0; k] };
        let mut rng = Rng::new(self.cfg.seed ^ (0x5eed << 8) ^ index as u64);
        let mut order = train.clone();
        rng.shuffle(&mut order);
        let steps_total = train.len().div_ceil(self.cfg.batch) * self.cfg.max_epochs;
        Fit {
            loss_fn: loss_for(self.recipe.class_weighted_loss, &weights, &self.autodiff),
            class_weights: held_weights,
            optim: optimizer_for(self.recipe.weight_decay),
            model: self.base.clone().train(),
            rng,
            epoch: 0,
            order,
            pos: 0,
            step: 0,
            steps_total,
            sums: (0.0, 0, 0),
            // The base model is the one to beat: an adaptation that never helps on the
            // held-out patients keeps it.
            best_score: None,
            best: self.base.clone(),
            best_epoch: 0,
            since_best: 0,
            history: Vec::new(),
            train,
            held,
            test,
        }
    }

    /// Logits of `model` (inference mode) for `rows`, in batches.
    async fn logits(&self, model: &Cnn, rows: &[usize]) -> Result<Vec<Vec<f32>>, AdaptError> {
        let size = self.examples.size;
        let k = self.recipe.classes.len();
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(SCORE_BATCH) {
            let mut x = Vec::with_capacity(chunk.len() * size * size);
            for &i in chunk {
                x.extend(self.examples.image(i).iter().map(|&v| (f32::from(v) / 255.0 - self.recipe.mean) / self.recipe.std));
            }
            let t = Tensor::<4>::from_data(TensorData::new(x, [chunk.len(), 1, size, size]), &self.plain);
            let flat = read(model.forward(t).reshape([chunk.len() * k])).await?;
            out.extend(flat.chunks_exact(k).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// The adapted model and the cross-validated comparison, once [`Progress::Done`] came.
    pub fn finish(self) -> Result<Adapted, AdaptError> {
        let Some((model, temperature, operating_point, final_fit)) = self.final_fit else { return Err(AdaptError::Unfinished) };
        let after: Vec<Vec<f64>> = self.after.into_iter().collect::<Option<Vec<_>>>().ok_or(AdaptError::Unfinished)?;
        let before: Vec<Vec<f64>> = self.before_logits.iter().map(|l| softmax(l, self.base_temperature)).collect();
        let truth = &self.examples.labels;
        let groups = &self.examples.groups;
        let k = self.recipe.classes.len();
        let finite = |a: f64| a.is_finite().then_some(a);
        let seed = self.cfg.seed;
        let (fold_of, folds, n) = (&self.fold_of, self.cfg.folds, truth.len());
        let cv_auc = |p: &[Vec<f64>], items: &[usize]| fold_mean_auc(p, truth, k, fold_of, folds, items);
        let all: Vec<usize> = (0..n).collect();
        let cross_validation = CrossValidated {
            folds,
            auc_before: finite(cv_auc(&before, &all)),
            auc_before_ci: bootstrap(n, groups, RESAMPLES, seed, |items| cv_auc(&before, items)),
            auc_after: finite(cv_auc(&after, &all)),
            auc_after_ci: bootstrap(n, groups, RESAMPLES, seed, |items| cv_auc(&after, items)),
            difference_ci: bootstrap(n, groups, RESAMPLES, seed, |items| cv_auc(&after, items) - cv_auc(&before, items)),
            per_fold: self.folds_done,
        };
        let provenance = Provenance {
            base_sha256: self.base_entry_sha,
            base_title: self.base_title,
            counts: counts(truth, k),
            grouped: groups.iter().all(Option::is_some),
            config: self.cfg,
            cross_validation,
            final_fit,
            warning: WARNING.into(),
        };
        Ok(Adapted { model, temperature, operating_point, provenance, before, after })
    }
}

/// Every float tensor of a module (weights and running statistics), flattened, in visit order.
struct Flatten(Vec<(Tensor<1>, Vec<usize>)>);

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let dims = t.dims().to_vec();
        let n = dims.iter().product::<usize>();
        self.0.push((t.reshape([n]), dims));
    }
}

/// Puts host values back in visit order, on the host device.
struct Place {
    values: std::vec::IntoIter<(Vec<f32>, Vec<usize>)>,
    device: Device,
}

impl ModuleMapper for Place {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.next() {
            Some((v, dims)) => {
                let device = self.device.clone();
                param.map(|_| Tensor::from_data(TensorData::new(v, dims), &device))
            }
            None => param,
        }
    }
}

/// A copy of `model` (inference copy) on the CPU, each tensor read back with an awaited read:
/// a browser's WebGPU cannot read a tensor synchronously, and a record is written from host
/// memory, so an adapted model is brought here before [`record_bytes`].
async fn to_host(model: &Cnn) -> Result<Cnn, CamError> {
    let m = model.valid();
    let mut flat = Flatten(Vec::new());
    m.visit(&mut flat);
    let mut values = Vec::with_capacity(flat.0.len());
    for (t, dims) in flat.0 {
        values.push((read(t).await?, dims));
    }
    // Every tensor is replaced by its host copy; no device-to-device transfer (itself a
    // synchronous read on WebGPU) is asked of the backend.
    Ok(m.map(&mut Place { values: values.into_iter(), device: crate::model::device::cpu() }))
}

/// Mean cross-entropy weighted per class as burn's weighted loss is (Σ wᵧ·(−log pᵧ) / Σ wᵧ).
fn weighted_nll(logits: &[Vec<f32>], truth: &[usize], weights: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (l, &y) in logits.iter().zip(truth) {
        let w = f64::from(weights.get(y).copied().unwrap_or(1.0));
        num -= w * softmax::<f64>(l, 1.0).get(y).copied().unwrap_or(0.0).max(1e-12).ln();
        den += w;
    }
    if den > 0.0 { num / den } else { f64::NAN }
}

fn counts(labels: &[usize], k: usize) -> Vec<usize> {
    let mut c = vec![0; k];
    for &l in labels {
        if let Some(x) = c.get_mut(l) {
            *x += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::PreprocessConfig;
    use crate::model::report::TrainingSummary;
    use crate::model::{EntrySpec, ModelConfig, ModelId, RecordDtype, TrainConfig, record_bytes};

    /// A recipe that does not augment: in these 16² toys the corner is the signal.
    fn plain_recipe(arch: &ModelConfig) -> TrainingSummary {
        let augment = AugmentConfig::off();
        let config = TrainConfig {
            model: ModelId::Ct,
            classes: vec!["noncovid".into(), "covid".into()],
            input_size: 16,
            epochs: 1,
            batch: 8,
            lr: 1e-2,
            weight_decay: 0.0,
            seed: 1,
            folds: 5,
            augment,
            architecture: arch.clone(),
            class_weighted_loss: true,
            data: Default::default(),
            sampling: Default::default(),
            framing: Default::default(),
            tone: Default::default(),
            mask_to_lungs: false,
            source_adversary: 0.0,
        };
        TrainingSummary {
            config,
            pool_sources: Default::default(),
            external_sources: None,
            shipped_model: None,
            cross_validation: None,
            trained_on: None,
            validation: None,
            minutes: None,
            machine: None,
            leave_one_source_out: None,
        }
    }

    /// A tiny model and a set it cannot read at first: class 1 has a bright square in the
    /// top-left corner, class 0 in the bottom-right; 24 patients of 2 images each.
    fn setup() -> (ModelEntry, Cnn, Examples) {
        let device = Device::flex();
        let arch = ModelConfig { in_channels: 1, stem_width: 4, stage_widths: vec![8, 8], num_classes: 2 };
        let base = arch.init_seeded(&device, 3).valid();
        let classes = vec!["noncovid".to_string(), "covid".to_string()];
        let bytes = record_bytes(&base, false).unwrap();
        let spec = EntrySpec {
            id: ModelId::Ct,
            title: "test",
            classes: &classes,
            dtype: RecordDtype::F32,
            params: base.num_params(),
            architecture: arch.clone(),
            preprocess: PreprocessConfig::new(16),
        };
        let mut entry = ModelEntry::new(spec, &bytes);
        entry.training = Some(plain_recipe(&arch));
        let mut ex = Examples::with_capacity(48, 16, 1 << 20).unwrap();
        let mut rng = Rng::new(9);
        for p in 0..24 {
            let label = p % 2;
            for _ in 0..2 {
                let mut img = vec![0u8; 256];
                for v in img.iter_mut() {
                    *v = (rng.unit() * 60.0) as u8;
                }
                let o = if label == 1 { 2 } else { 9 };
                for y in o..o + 5 {
                    for x in o..o + 5 {
                        img[y * 16 + x] = 240;
                    }
                }
                ex.push(&img, label, Some(format!("p{p}"))).unwrap();
            }
        }
        (entry, base, ex)
    }

    fn run(a: &mut Adaptation) -> Vec<Progress> {
        let mut seen = Vec::new();
        loop {
            let p = pollster::block_on(a.advance()).unwrap();
            if p == Progress::Done {
                return seen;
            }
            seen.push(p);
        }
    }

    #[test]
    fn adapting_all_layers_learns_what_the_base_cannot_read_and_says_so_out_of_fold() {
        let (entry, base, ex) = setup();
        let cfg = AdaptConfig { folds: 3, hold_one_in: 4, max_epochs: 12, patience: 12, batch: 8, lr: 1e-2, ..AdaptConfig::new(Part::All) };
        let mut a = Adaptation::new(&entry, base, &Device::flex(), ex, cfg).unwrap();
        let max = a.steps_max();
        let seen = run(&mut a);
        let steps: Vec<(usize, usize)> = seen
            .iter()
            .filter_map(|p| match p {
                Progress::Step { steps_run, steps_left, .. } => Some((*steps_run, *steps_left)),
                _ => None,
            })
            .collect();
        assert_eq!(steps.first(), Some(&(1, max - 1)));
        assert!(steps.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 < w[0].1), "steps count up, what is left counts down");
        assert_eq!(steps.last().map(|s| s.1), Some(0), "the last step leaves nothing");
        let r = a.finish().unwrap();
        let cv = &r.provenance.cross_validation;
        assert_eq!(cv.per_fold.len(), 3);
        // Every image scored once out of fold; no patient in two folds' test parts.
        assert_eq!(cv.per_fold.iter().map(|f| f.test_images).sum::<usize>(), 48);
        let (before, after) = (cv.auc_before.unwrap(), cv.auc_after.unwrap());
        assert!(after > 0.9 && after > before + 0.2, "before {before} after {after}");
        assert!(cv.difference_ci.as_ref().is_some_and(|d| d.lo > 0.0), "{:?}", cv.difference_ci);
        assert_eq!(r.provenance.counts, vec![24, 24]);
        assert!(r.provenance.final_fit.best_epoch > 0);
        assert!(r.temperature > 0.0);
    }

    #[test]
    fn a_set_that_cannot_be_cross_validated_is_refused_before_any_work() {
        let (entry, base, ex) = setup();
        // 5 folds and one patient in 5 held out need 5 patients of each class: 4 given.
        let mut small = Examples::with_capacity(16, 16, 1 << 20).unwrap();
        for i in 0..16 {
            small.push(ex.image(i), ex.labels[i], ex.groups[i].clone()).unwrap();
        }
        let e = Adaptation::new(&entry, base.clone(), &Device::flex(), small, AdaptConfig::new(Part::Head)).err();
        assert!(matches!(&e, Some(AdaptError::TooFewPatients { patients: 4, need: 5, .. })), "{e:?}");
        let mut one = Examples::with_capacity(2, 16, 1 << 20).unwrap();
        one.push(ex.image(0), 0, None).unwrap();
        one.push(ex.image(2), 0, None).unwrap();
        let e = Adaptation::new(&entry, base.clone(), &Device::flex(), one, AdaptConfig::new(Part::Head)).err();
        assert!(matches!(e, Some(AdaptError::Set(SetError::OneClass { .. }))), "{e:?}");
        // Too large for the memory allowed: refused before reading a file.
        assert!(matches!(Examples::with_capacity(2000, 192, 64 << 20), Err(AdaptError::TooLarge { images: 2000, .. })));
        let mut wrong = Examples::with_capacity(1, 16, 1 << 20).unwrap();
        assert!(matches!(wrong.push(&[0u8; 10], 0, None), Err(AdaptError::WrongSize { got: 10, want: 256, .. })));
    }

    #[test]
    fn head_only_leaves_the_trunk_as_it_was() {
        let (entry, base, ex) = setup();
        let cfg = AdaptConfig { folds: 2, hold_one_in: 3, max_epochs: 2, patience: 2, batch: 8, lr: 1e-2, ..AdaptConfig::new(Part::Head) };
        let mut a = Adaptation::new(&entry, base.clone(), &Device::flex(), ex, cfg).unwrap();
        run(&mut a);
        let r = a.finish().unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(vec![0.5f32; 256], [1, 1, 16, 16]), &Device::flex());
        let read = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let (b, a) = (read(base.trunk_until(x.clone(), 1)), read(r.model.trunk_until(x, 1)));
        assert_eq!(b, a, "the trunk's weights and statistics are unchanged");
        // …while the head learned (the final fit kept a trained epoch).
        assert!(r.provenance.final_fit.best_epoch > 0, "{:?}", r.provenance.final_fit);
        let w = |m: &Cnn| m.head_weight().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_ne!(w(&base), w(&r.model));
    }

    /// The host copy holds the same weights and running statistics: its record is the model's.
    #[test]
    fn the_host_copy_writes_the_same_record() {
        let model = ModelConfig::new(2).init_seeded(&Device::flex(), 7);
        let host = pollster::block_on(to_host(&model)).expect("read back");
        assert_eq!(record_bytes(&host, false).unwrap(), record_bytes(&model, false).unwrap());
    }
}
