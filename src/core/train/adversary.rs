//! Adversary: source-adversarial regularisation (Ganin & Lempitsky's gradient reversal) for
//! training on pooled sources. A small head learns to tell which source an image came from
//! by reading the classifier's pooled features; its gradient reaches the trunk negated and
//! scaled, so the trunk learns features from which the source is hard to read. Why: the
//! models read the look of their sources (a source left out of training is scored far below
//! the cross-validation), and balanced sampling alone hides only the label mix, not the look.
//! Training-only: the head never ships, and the classifier it leaves is an ordinary [`Cnn`].
//!
//! [`Cnn`]: crate::model::Cnn

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::nn::{Linear, LinearConfig};
use burn::optim::ModuleOptimizer;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Hidden width of the source head: an MLP, not a linear probe, so that the trunk must hide
/// the source from more than one direction of its features.
const HIDDEN: usize = 64;

/// The head that reads the source from pooled features `[b, features]`.
#[derive(Module, Debug)]
pub struct SourceHead {
    hidden: Linear,
    out: Linear,
}

impl SourceHead {
    fn new(features: usize, sources: usize, device: &Device) -> Self {
        SourceHead { hidden: LinearConfig::new(features, HIDDEN).init(device), out: LinearConfig::new(HIDDEN, sources).init(device) }
    }

    /// Source logits `[b, sources]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.out.forward(relu(self.hidden.forward(features)))
    }
}

/// The source head with its optimiser and loss, carried from step to step.
pub struct Adversary {
    /// `None` only inside a step (the optimiser consumes and returns the head).
    pub(super) head: Option<SourceHead>,
    pub(super) optim: ModuleOptimizer,
    pub(super) loss: CrossEntropyLoss,
    sources: usize,
}

impl Adversary {
    /// A fresh head for `sources` sources over `features` pooled features, on `device` (an
    /// autodiff device), trained by `optim` (the recipe's, [`super::step::optimizer_for`]).
    pub fn new(features: usize, sources: usize, optim: ModuleOptimizer, device: &Device) -> Self {
        Adversary { head: Some(SourceHead::new(features, sources, device)), optim, loss: CrossEntropyLossConfig::new().init(device), sources }
    }

    /// How many sources the head tells apart.
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// The head, for checkpoints.
    pub fn head(&self) -> Option<&SourceHead> {
        self.head.as_ref()
    }

    /// Replace the head (a checkpoint's) and its optimiser state.
    pub fn restore(&mut self, head: SourceHead, optim: ModuleOptimizer) {
        self.head = Some(head);
        self.optim = optim;
    }

    /// The optimiser, for checkpoints.
    pub fn optim(&self) -> &ModuleOptimizer {
        &self.optim
    }
}

/// What one adversarial step needs besides the batch: the head, the source index of each
/// image, and how strongly the reversed gradient reaches the trunk now ([`strength`]).
pub struct Reversal<'a> {
    pub adversary: &'a mut Adversary,
    pub sources: Vec<i64>,
    pub strength: f32,
}

/// Identity forward; backward multiplies the gradient by `-strength`. Built from `detach`:
/// `x` without a gradient plus `-s·(x − x)`, whose value is exactly 0 and whose gradient is `-s`.
pub fn reverse_gradient(x: Tensor<2>, strength: f32) -> Tensor<2> {
    let fixed = x.clone().detach();
    fixed.clone() + (x - fixed).mul_scalar(-strength)
}

/// The reversal's strength at `progress` ∈ [0, 1] of training: Ganin & Lempitsky's ramp
/// `weight · (2 / (1 + e^(−10p)) − 1)`, so the head learns to read the source before the trunk
/// is pushed to hide it, and early, noisy features are not pushed around.
pub fn strength(weight: f32, progress: f64) -> f32 {
    let p = progress.clamp(0.0, 1.0);
    weight * (2.0 / (1.0 + (-10.0 * p).exp()) - 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn the_reversal_keeps_the_value_and_negates_the_scaled_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -2.0, 3.0, 1.0], [2, 2]), &device).require_grad();
        let y = reverse_gradient(x.clone(), 0.3);
        let value = y.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(value, vec![0.5, -2.0, 3.0, 1.0]);
        // d/dx of sum(w ⊙ y) is w without the reversal; with it, -0.3·w.
        let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, -1.0, 4.0], [2, 2]), &device);
        let grads = (y * w).sum().backward();
        let g = x.grad(&grads).unwrap().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for (got, want) in g.iter().zip([-0.3f32, -0.6, 0.3, -1.2]) {
            assert!((got - want).abs() < 1e-6, "{g:?}");
        }
    }

    #[test]
    fn the_strength_ramps_from_zero_to_the_weight() {
        assert_eq!(strength(0.5, 0.0), 0.0);
        assert!((strength(0.5, 1.0) - 0.5).abs() < 1e-3);
        assert!((strength(0.5, 0.25) - 0.5 * 0.848).abs() < 1e-3);
        let ramp: Vec<f32> = (0..=10).map(|i| strength(1.0, i as f64 / 10.0)).collect();
        assert!(ramp.windows(2).all(|w| w[1] > w[0]), "{ramp:?}");
        assert_eq!(strength(1.0, 2.0), strength(1.0, 1.0), "clamped");
    }
}
