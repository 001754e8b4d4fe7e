//! Model: one compact ResNet-style CNN for single-channel images, the same type on every
//! device (flex CPU, wgpu/WebGPU). Its trunk exposes each stage's output so Grad-CAM can
//! target a shallow, middle or deep layer; the head is global average pooling + a linear
//! layer, which makes Grad-CAM at the last stage equal to CAM.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Architecture of the classifier; stored in each model's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Input channels (1: greyscale).
    pub in_channels: usize,
    /// Stem width followed by the width of each stage. The stem and every stage halve the
    /// resolution (like a ResNet's stem convolution and max-pool, then its stages), so stage
    /// `i` (0-based) sees the input at 1/2^(i+2): 32², 16², 8², 4² for a 128² input.
    pub stem_width: usize,
    pub stage_widths: Vec<usize>,
    pub num_classes: usize,
}

impl ModelConfig {
    pub fn new(num_classes: usize) -> Self {
        ModelConfig { in_channels: 1, stem_width: 24, stage_widths: vec![24, 48, 96, 192], num_classes }
    }

    /// Build a model with weights initialised from `seed` (reproducible) on `device`.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Cnn {
        device.seed(seed);
        self.init(device)
    }

    /// Build a model with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> Cnn {
        self.build(device, Fill::Random)
    }

    /// Build a model whose parameters a record is about to replace
    /// ([`super::weights::model_from_record`]): zeros, not random draws. Drawing the random
    /// initial weights was more than half of loading a model (measured with callgrind: 57 % of
    /// the instructions), and the page pays it at every cold start.
    pub(super) fn init_for_record(&self, device: &Device) -> Cnn {
        self.build(device, Fill::Zeros)
    }

    fn build(&self, device: &Device, fill: Fill) -> Cnn {
        let stem = ConvBn::new(&self.stem(), fill, device);
        let stages = self.blocks().iter().map(|b| Block::new(b, fill, device)).collect();
        let head = fill.linear(LinearConfig::new(self.features(), self.num_classes)).init(device);
        Cnn { stem, stages, head }
    }

    /// The stem convolution.
    pub fn stem(&self) -> ConvSpec {
        ConvSpec { path: "stem".into(), cin: self.in_channels, cout: self.stem_width, kernel: 3, stride: 2 }
    }

    /// Each stage's residual block. Every stage halves the resolution (its first convolution
    /// has stride 2), so each has a projected shortcut.
    pub fn blocks(&self) -> Vec<BlockSpec> {
        let mut c = self.stem_width;
        let mut blocks = Vec::with_capacity(self.stage_widths.len());
        for (i, &w) in self.stage_widths.iter().enumerate() {
            let path = format!("stages.{i}");
            let stride = 2;
            blocks.push(BlockSpec {
                a: ConvSpec { path: format!("{path}.a"), cin: c, cout: w, kernel: 3, stride },
                b: ConvSpec { path: format!("{path}.b"), cin: w, cout: w, kernel: 3, stride: 1 },
                down: (stride != 1 || c != w).then(|| ConvSpec { path: format!("{path}.down"), cin: c, cout: w, kernel: 1, stride }),
            });
            c = w;
        }
        blocks
    }

    /// Width of the pooled features the head reads (the last stage's).
    pub fn features(&self) -> usize {
        self.stage_widths.last().copied().unwrap_or(self.stem_width)
    }

    /// Names of the Grad-CAM targets, shallow to deep ("stage1" … "stageN").
    pub fn layer_names(&self) -> Vec<String> {
        (1..=self.stage_widths.len()).map(|i| format!("stage{i}")).collect()
    }
}

/// How [`ModelConfig`] fills the weights it creates.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// The layers' own initialisers (training from scratch).
    Random,
    /// Zeros, for parameters that a record replaces.
    Zeros,
}

impl Fill {
    fn conv(self, c: Conv2dConfig) -> Conv2dConfig {
        match self {
            Fill::Random => c,
            Fill::Zeros => c.with_initializer(Initializer::Zeros),
        }
    }

    fn linear(self, c: LinearConfig) -> LinearConfig {
        match self {
            Fill::Random => c,
            Fill::Zeros => c.with_initializer(Initializer::Zeros),
        }
    }
}

/// The batch-norm epsilon of every layer (burn's default), which folding uses too.
pub const BN_EPSILON: f64 = 1e-5;

/// One convolution of the network (no bias, followed by batch-norm): where its parameters sit
/// in a record (`{path}.conv.weight`, `{path}.bn.gamma`, …) and its shape. burn's network is
/// built from these, and the CPU's fused network is read from a record by them
/// ([`super::fused::FusedCnn::from_record`]), so the two cannot describe different networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSpec {
    pub path: String,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl ConvSpec {
    /// "Same" padding for the odd kernel.
    pub fn pad(&self) -> usize {
        self.kernel / 2
    }
}

/// A residual block's convolutions ([`Block`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    pub a: ConvSpec,
    pub b: ConvSpec,
    pub down: Option<ConvSpec>,
}

/// Convolution (no bias) + batch normalisation.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(spec: &ConvSpec, fill: Fill, device: &Device) -> Self {
        let (k, s, pad) = (spec.kernel, spec.stride, spec.pad());
        let conv =
            Conv2dConfig::new([spec.cin, spec.cout], [k, k]).with_stride([s, s]).with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad)).with_bias(false);
        let conv = fill.conv(conv).init(device);
        ConvBn { conv, bn: BatchNormConfig::new(spec.cout).with_epsilon(BN_EPSILON).init(device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }

    /// The layers, read-only: folded for the CPU (`model::fused`), exported by the lab.
    pub fn parts(&self) -> (&Conv2d, &BatchNorm) {
        (&self.conv, &self.bn)
    }
}

/// Residual basic block: 3×3 conv-BN-ReLU, 3×3 conv-BN, plus a (projected) shortcut, ReLU.
#[derive(Module, Debug)]
pub struct Block {
    a: ConvBn,
    b: ConvBn,
    down: Option<ConvBn>,
}

impl Block {
    fn new(spec: &BlockSpec, fill: Fill, device: &Device) -> Self {
        Block { a: ConvBn::new(&spec.a, fill, device), b: ConvBn::new(&spec.b, fill, device), down: spec.down.as_ref().map(|d| ConvBn::new(d, fill, device)) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.down {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(self.a.forward(x));
        relu(self.b.forward(y) + shortcut)
    }

    /// The layers, read-only: folded for the CPU (`model::fused`), exported by the lab.
    pub fn parts(&self) -> (&ConvBn, &ConvBn, Option<&ConvBn>) {
        (&self.a, &self.b, self.down.as_ref())
    }
}

/// The classifier network. Input `[batch, 1, S, S]`, output logits `[batch, classes]`.
#[derive(Module, Debug)]
pub struct Cnn {
    stem: ConvBn,
    stages: Vec<Block>,
    head: Linear,
}

impl Cnn {
    /// Number of trunk stages (Grad-CAM targets).
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    /// Logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let n = self.stages.len();
        self.forward_from(self.trunk_until(x, n.saturating_sub(1)), n.saturating_sub(1))
    }

    /// Output of stage `k` (0-based; clamped to the last stage).
    pub fn trunk_until(&self, x: Tensor<4>, k: usize) -> Tensor<4> {
        let mut a = relu(self.stem.forward(x));
        for stage in self.stages.iter().take(k + 1) {
            a = stage.forward(a);
        }
        a
    }

    /// Continue from the output of stage `k` to the logits.
    pub fn forward_from(&self, a: Tensor<4>, k: usize) -> Tensor<2> {
        self.classify(self.features_from(a, k))
    }

    /// Continue from the output of stage `k` to the pooled penultimate features `[b, c]`
    /// (what the head reads; training's source adversary reads them too).
    pub fn features_from(&self, a: Tensor<4>, k: usize) -> Tensor<2> {
        let mut a = a;
        for stage in self.stages.iter().skip(k + 1) {
            a = stage.forward(a);
        }
        Self::pool(a)
    }

    /// The head: pooled features `[b, c]` to logits.
    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// Global average pooling `[b, c, h, w] → [b, c]` (the penultimate features).
    pub fn pool(a: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = a.dims();
        a.mean_dim(3).mean_dim(2).reshape([b, c])
    }

    /// Pooled outputs of the last two stages, concatenated (the input gate's feature vector:
    /// two depths describe out-of-distribution images better than one), and the logits.
    pub fn gate_features(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let n = self.stages.len();
        let k = n.saturating_sub(2);
        let mid = self.trunk_until(x, k);
        let last = self.forward_stage(mid.clone(), k + 1);
        let logits = self.head.forward(Self::pool(last.clone()));
        (Tensor::cat(vec![Self::pool(mid), Self::pool(last)], 1), logits)
    }

    fn forward_stage(&self, a: Tensor<4>, k: usize) -> Tensor<4> {
        match self.stages.get(k) {
            Some(s) => s.forward(a),
            None => a,
        }
    }

    /// The layers, read-only: folded for the CPU (`model::fused`), exported by the lab.
    pub fn parts(&self) -> (&ConvBn, &[Block], &Linear) {
        (&self.stem, &self.stages, &self.head)
    }

    /// The head's weight `[features, classes]` (for CAM).
    pub fn head_weight(&self) -> Tensor<2> {
        self.head.weight.val()
    }
}
