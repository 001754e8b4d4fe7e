//! Step: one optimisation step of a classifier on a batch — forward, (weighted) cross-entropy,
//! backward, AdamW update — with the learning-rate schedule and class weights that go with it.
//! The lab's training runs call it natively; it compiles for wasm so that the page can adapt
//! a model on a user's images with the same step. Its one read-back is async, as WebGPU in a
//! browser requires; native callers block on it.

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::adversary::{Reversal, reverse_gradient};
use crate::explain::CamError;
use crate::explain::gradcam::read;
use crate::model::Cnn;

/// One batch of standardised inputs `[n, 1, size, size]` (row-major) with class indices.
pub struct Batch {
    pub inputs: Vec<f32>,
    pub labels: Vec<i64>,
    pub size: usize,
}

/// What a step measured on its batch (before the update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Mean loss over the batch (the classifier's; the source adversary's is apart).
    pub loss: f64,
    /// Images whose arg-max logit was their label.
    pub correct: usize,
    pub images: usize,
    /// Images whose source the adversary read right (0 without one).
    pub sources_read: usize,
}

/// Inverse-frequency class weights, normalised to mean 1 (a class without images weighs 0).
pub fn class_weights(counts: &[usize]) -> Vec<f32> {
    let k = counts.len().max(1) as f32;
    let inv: Vec<f32> = counts.iter().map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f32 }).collect();
    let s: f32 = inv.iter().sum::<f32>() / k;
    inv.iter().map(|w| w / s.max(1e-12)).collect()
}

/// The loss of a recipe: cross-entropy, weighted by `weights` when the recipe asks for it
/// (`class_weighted`, [`crate::model::TrainConfig::class_weighted_loss`]).
pub fn loss_for(class_weighted: bool, weights: &[f32], device: &Device) -> CrossEntropyLoss {
    if !class_weighted {
        return CrossEntropyLossConfig::new().init(device);
    }
    // burn panics on a weight that is not positive; a class without images (a user's set of
    // normals and pneumonias given to the three-class model) never meets its weight.
    let weights = weights.iter().map(|&w| if w.is_finite() && w > 0.0 { w } else { 1.0 }).collect();
    CrossEntropyLossConfig::new().with_weights(Some(weights)).init(device)
}

/// The optimiser of a recipe: AdamW with the recipe's weight decay
/// ([`crate::model::TrainConfig::weight_decay`]).
pub fn optimizer_for(weight_decay: f32) -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(weight_decay).init()
}

/// Linear warm-up over `warmup` steps, then cosine decay from `base` to 1e-5 at `total`.
pub fn cosine_lr(base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    1e-5 + (base - 1e-5) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Which layers a step trains.
pub enum Trunk<'a> {
    /// Every layer (the lab's training runs).
    Trained,
    /// The stem and stages `0..=through` stay as they are: `model`, an inference copy on the
    /// plain `device`, runs them without gradients and with its running batch-norm statistics
    /// (a frozen layer must not drift with a small set's batch statistics), and only the later
    /// stages and the head of the trained model learn. Cheaper too: no backward pass through
    /// the frozen part.
    Frozen { model: &'a Cnn, through: usize, device: &'a Device },
}

/// One step at learning rate `lr` on `device` (an autodiff device), training what `trunk`
/// says, and with a source adversary when `reversal` is given (the lab's training runs; see
/// [`super::adversary`]): its head learns at the same rate, and its gradient reaches the trunk
/// reversed. Returns the updated model.
#[allow(clippy::too_many_arguments)]
pub async fn step(
    model: Cnn,
    optim: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: Batch,
    lr: f64,
    device: &Device,
    trunk: &Trunk<'_>,
    reversal: Option<Reversal<'_>>,
) -> Result<(Cnn, StepOutcome), CamError> {
    let n = batch.labels.len();
    let s = batch.size;
    let data = TensorData::new(batch.inputs, [n, 1, s, s]);
    let features = match trunk {
        Trunk::Trained => {
            let last = model.num_stages().saturating_sub(1);
            model.features_from(model.trunk_until(Tensor::<4>::from_data(data, device), last), last)
        }
        Trunk::Frozen { model: fixed, through, device: plain } => {
            let a = fixed.trunk_until(Tensor::<4>::from_data(data, *plain), *through).detach().autodiff();
            model.features_from(a, *through)
        }
    };
    let logits = model.classify(features.clone());
    let y = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), device);
    let loss = loss_fn.forward(logits.clone(), y);
    let (model, source_logits) = match reversal {
        None => {
            let grads = GradientsParams::from_grads(loss.clone().backward(), &model);
            (optim.step(lr, model, grads), None)
        }
        Some(Reversal { adversary, sources, strength }) => {
            let head = adversary.head.take().ok_or(CamError::NoSourceHead)?;
            let source_logits = head.forward(reverse_gradient(features, strength));
            let truth = Tensor::<1, Int>::from_data(TensorData::new(sources.clone(), [n]), device);
            let total = loss.clone() + adversary.loss.forward(source_logits.clone(), truth);
            let mut grads = total.backward();
            let head_grads = GradientsParams::from_module(&mut grads, &head);
            adversary.head = Some(adversary.optim.step(lr, head, head_grads));
            let grads = GradientsParams::from_grads(grads, &model);
            (optim.step(lr, model, grads), Some((source_logits, sources)))
        }
    };
    let loss = read(loss.reshape([1])).await?.first().copied().map(f64::from).unwrap_or(f64::NAN);
    let correct = argmax_hits(logits, &batch.labels).await?;
    let sources_read = match source_logits {
        None => 0,
        Some((l, truth)) => argmax_hits(l, &truth).await?,
    };
    Ok((model, StepOutcome { loss, correct, images: n, sources_read }))
}

/// How many rows of `logits` `[n, k]` have their arg-max at `truth`.
async fn argmax_hits(logits: Tensor<2>, truth: &[i64]) -> Result<usize, CamError> {
    let [n, k] = logits.dims();
    let out = read(logits.detach().reshape([n * k])).await?;
    Ok(out.chunks_exact(k.max(1)).zip(truth).filter(|(l, y)| crate::infer::decision::argmax(l) as i64 == **y).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_floor() {
        let (base, total, warmup) = (1e-3, 1000, 100);
        assert!((cosine_lr(base, 0, total, warmup) - base / 100.0).abs() < 1e-12);
        assert!((cosine_lr(base, 99, total, warmup) - base).abs() < 1e-12);
        // Half-way through the decay the rate is half-way between base and the floor.
        let mid = cosine_lr(base, warmup + (total - warmup) / 2, total, warmup);
        assert!((mid - (base + 1e-5) / 2.0).abs() < 1e-9, "{mid}");
        assert!((cosine_lr(base, total, total, warmup) - 1e-5).abs() < 1e-12);
        assert!((cosine_lr(base, 10 * total, total, warmup) - 1e-5).abs() < 1e-12, "stays at the floor");
        let rates: Vec<f64> = (warmup..total).map(|s| cosine_lr(base, s, total, warmup)).collect();
        assert!(rates.windows(2).all(|w| w[1] <= w[0]), "monotone decay");
    }

    #[test]
    fn class_weights_are_inverse_frequency_with_mean_one() {
        let w = class_weights(&[100, 300, 0]);
        assert!((w[0] / w[1] - 3.0).abs() < 1e-5);
        assert_eq!(w[2], 0.0);
        assert!((w.iter().sum::<f32>() / 3.0 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_class_without_images_does_not_break_the_weighted_loss() {
        // Two of three classes present: the weights hold a 0, which burn refuses.
        let w = class_weights(&[10, 30, 0]);
        let device = Device::flex();
        let loss = loss_for(true, &w, &device);
        let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0], [2, 3]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let v = loss.forward(logits, y).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0];
        assert!(v.is_finite() && v > 0.0, "{v}");
    }

    #[test]
    fn a_step_lowers_the_loss_on_its_batch() {
        use crate::model::{AugmentConfig, ModelConfig, ModelId, TrainConfig};
        let device = Device::flex().autodiff();
        let cfg = TrainConfig {
            model: ModelId::Cxr,
            classes: vec!["a".into(), "b".into()],
            input_size: 16,
            epochs: 1,
            batch: 4,
            lr: 1e-2,
            weight_decay: 0.0,
            seed: 1,
            folds: 2,
            augment: AugmentConfig::default(),
            architecture: ModelConfig { in_channels: 1, stem_width: 4, stage_widths: vec![4, 8], num_classes: 2 },
            class_weighted_loss: false,
            data: Default::default(),
            sampling: Default::default(),
            framing: Default::default(),
            tone: Default::default(),
            mask_to_lungs: false,
            source_adversary: 0.0,
        };
        let mut model = cfg.architecture.init_seeded(&device, 7);
        let mut optim = optimizer_for(cfg.weight_decay);
        let loss_fn = loss_for(cfg.class_weighted_loss, &[1.0, 1.0], &device);
        // Class 1 is bright, class 0 dark: separable in one feature.
        let batch = || {
            let mut inputs = Vec::new();
            for i in 0..4 {
                inputs.extend(std::iter::repeat_n(if i % 2 == 1 { 1.0f32 } else { -1.0 }, 256));
            }
            Batch { inputs, labels: vec![0, 1, 0, 1], size: 16 }
        };
        let mut losses = Vec::new();
        for _ in 0..15 {
            let (m, out) = pollster::block_on(step(model, &mut optim, &loss_fn, batch(), 1e-2, &device, &Trunk::Trained, None)).unwrap();
            model = m;
            losses.push(out.loss);
        }
        assert!(losses.last().copied().unwrap_or(f64::NAN) < losses.first().copied().unwrap_or(f64::NAN) * 0.7, "{losses:?}");
    }
    #[test]
    fn the_source_adversary_reads_the_source_and_reaches_the_trunk_only_through_the_reversal() {
        use crate::model::ModelConfig;
        use crate::train::adversary::Adversary;
        let device = Device::flex().autodiff();
        let arch = ModelConfig { in_channels: 1, stem_width: 4, stage_widths: vec![4, 8], num_classes: 2 };
        let loss_fn = loss_for(false, &[1.0, 1.0], &device);
        // The label is the brightness; the source is the texture: stripes four rows wide over
        // source 1's images.
        let sources = vec![0i64, 0, 1, 1];
        let batch = || {
            let mut inputs = Vec::new();
            for i in 0..4 {
                let level = if i % 2 == 1 { 1.0f32 } else { -1.0 };
                inputs.extend((0..256).map(|p| level + if i >= 2 && (p / 16) % 8 < 4 { 1.0 } else { 0.0 }));
            }
            Batch { inputs, labels: vec![0, 1, 0, 1], size: 16 }
        };
        let logits = |m: &Cnn| {
            let plain = Device::flex();
            let x = Tensor::<4>::from_data(TensorData::new(batch().inputs, [4, 1, 16, 16]), &plain);
            m.clone().valid().forward(x).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        };
        // A fresh copy per run, through its record: clones share their batch-norm running
        // statistics, and a re-seeded init can differ while other tests draw from the device.
        let base = arch.init_seeded(&device, 7);
        let fresh = || arch.init(&device).load_record(base.clone().into_record());
        let run = |reversal: Option<Reversal<'_>>| {
            let model = fresh();
            pollster::block_on(step(model, &mut optimizer_for(0.0), &loss_fn, batch(), 1e-2, &device, &Trunk::Trained, reversal)).unwrap().0
        };
        let plain = logits(&run(None));
        // At strength 0 the adversary's gradient is stopped: the trunk moves as without it.
        let mut adversary = Adversary::new(arch.features(), 2, optimizer_for(0.0), &device);
        let stopped = logits(&run(Some(Reversal { adversary: &mut adversary, sources: sources.clone(), strength: 0.0 })));
        let gap = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(gap(&plain, &stopped) < 1e-6, "{plain:?} {stopped:?}");
        // With strength, the reversed gradient moves the trunk too.
        let reversed = logits(&run(Some(Reversal { adversary: &mut adversary, sources: sources.clone(), strength: 1.0 })));
        assert!(gap(&plain, &reversed) > 1e-4, "{plain:?} {reversed:?}");
        // The head itself learns to read the source.
        let mut model = fresh();
        let mut optim = optimizer_for(0.0);
        let mut read = Vec::new();
        for _ in 0..80 {
            let reversal = Reversal { adversary: &mut adversary, sources: sources.clone(), strength: 0.0 };
            let (m, out) = pollster::block_on(step(model, &mut optim, &loss_fn, batch(), 1e-2, &device, &Trunk::Trained, Some(reversal))).unwrap();
            model = m;
            read.push(out.sources_read);
        }
        let (first, last): (usize, usize) = (read[..10].iter().sum(), read[70..].iter().sum());
        assert!(last >= 36 && last > first, "{read:?}");
    }
}
