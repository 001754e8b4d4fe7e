//! Step: one optimisation step of a classifier on a batch — forward, (weighted) cross-entropy,
//! backward, AdamW update — with the learning-rate schedule and class weights that go with it.
//! The lab's training runs call it natively; it compiles for wasm so that the page can adapt
//! a model on a user's images with the same step.

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::{Cnn, TrainConfig};

/// One batch of standardised inputs `[n, 1, size, size]` (row-major) with class indices.
pub struct Batch {
    pub inputs: Vec<f32>,
    pub labels: Vec<i64>,
    pub size: usize,
}

/// What a step measured on its batch (before the update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Mean loss over the batch.
    pub loss: f64,
    /// Images whose arg-max logit was their label.
    pub correct: usize,
    pub images: usize,
}

/// Inverse-frequency class weights, normalised to mean 1 (a class without images weighs 0).
pub fn class_weights(counts: &[usize]) -> Vec<f32> {
    let k = counts.len().max(1) as f32;
    let inv: Vec<f32> = counts.iter().map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f32 }).collect();
    let s: f32 = inv.iter().sum::<f32>() / k;
    inv.iter().map(|w| w / s.max(1e-12)).collect()
}

/// The loss of a recipe: cross-entropy, weighted by `weights` when the recipe asks for it.
pub fn loss_for(cfg: &TrainConfig, weights: &[f32], device: &Device) -> CrossEntropyLoss {
    if cfg.class_weighted_loss {
        CrossEntropyLossConfig::new().with_weights(Some(weights.to_vec())).init(device)
    } else {
        CrossEntropyLossConfig::new().init(device)
    }
}

/// The optimiser of a recipe: AdamW with the recipe's weight decay.
pub fn optimizer_for(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(cfg.weight_decay).init()
}

/// Linear warm-up over `warmup` steps, then cosine decay from `base` to 1e-5 at `total`.
pub fn cosine_lr(base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    1e-5 + (base - 1e-5) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// One step at learning rate `lr` on `device` (an autodiff device); returns the updated model.
pub fn step(model: Cnn, optim: &mut ModuleOptimizer, loss_fn: &CrossEntropyLoss, batch: Batch, lr: f64, device: &Device) -> (Cnn, StepOutcome) {
    let n = batch.labels.len();
    let s = batch.size;
    let x = Tensor::<4>::from_data(TensorData::new(batch.inputs, [n, 1, s, s]), device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), device);
    let logits = model.forward(x);
    let loss = loss_fn.forward(logits.clone(), y);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(lr, model, grads);
    let loss = f64::from(loss.into_scalar::<f32>());
    let pred: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
    let correct = pred.iter().zip(&batch.labels).filter(|(a, b)| a == b).count();
    (model, StepOutcome { loss, correct, images: n })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_step_lowers_the_loss_on_its_batch() {
        use crate::model::{AugmentConfig, ModelConfig, ModelId};
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
        };
        let mut model = cfg.architecture.init_seeded(&device, 7);
        let mut optim = optimizer_for(&cfg);
        let loss_fn = loss_for(&cfg, &[1.0, 1.0], &device);
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
            let (m, out) = step(model, &mut optim, &loss_fn, batch(), 1e-2, &device);
            model = m;
            losses.push(out.loss);
        }
        assert!(losses.last().copied().unwrap_or(f64::NAN) < losses.first().copied().unwrap_or(f64::NAN) * 0.7, "{losses:?}");
    }
}
