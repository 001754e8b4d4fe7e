//! Fused inference: the classifier network as the CPU runs it at inference. Batch-norm is
//! folded into each convolution's weights and bias once, at load time, and the bias, the
//! residual add and the ReLU are applied while a convolution writes its output, by one
//! register-blocked kernel ([`super::kernel`]); the 3 × 3 stride-1 convolutions with many
//! channels run it on Winograd-transformed tiles ([`super::winograd`]).
//!
//! Why a second forward pass: burn's CPU backend runs each layer as written (a layout change,
//! im2col and a general matrix product per convolution, then separate batch-norm, add and
//! ReLU passes, each allocating), which at batch 1 in wasm costs about five times what the
//! arithmetic needs (issue 16). Grad-CAM's backward pass runs here too, by transposed
//! convolutions on the same kernels ([`FusedCnn::class_gradient`]); burn keeps what trains
//! weights (training and adaptation) and every device other than the CPU. Tests check that
//! both give the same logits, features and maps.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use burn::tensor::{Bytes, DType, Tensor, bf16, f16};

use super::cnn::{BN_EPSILON, Block, BlockSpec, Cnn, ConvBn, ConvSpec, ModelConfig};
use super::kernel::{Epilogue, PackedWeights, conv2d};
use super::parallel;
use super::winograd::{self, WinogradWeights};

/// Why a model could not be fused (its weights could not be read on the host).
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    #[error("reading the weights of {layer} failed: {reason}")]
    Read { layer: &'static str, reason: String },
    #[error("{layer} has an unexpected shape: {shape:?}")]
    Shape { layer: &'static str, shape: Vec<usize> },
    #[error("the weights file could not be read: {0}")]
    Record(#[source] burn_pack::Error),
    #[error("the weights file has no tensor '{tensor}' (it is not a record of this architecture)")]
    Missing { tensor: String },
    #[error("the weights file's tensor '{tensor}' has shape {got:?}, the architecture needs {expected:?}")]
    TensorShape { tensor: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("the weights file's tensor '{tensor}' is stored as {dtype} (f32, f16 or bf16 expected)")]
    Dtype { tensor: String, dtype: String },
}

/// Feature maps of one image, channel-major `[channels, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Maps {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Maps {
    /// One greyscale image of `size × size` (the model input).
    pub fn image(pixels: &[f32], size: usize) -> Self {
        let mut data = vec![0.0; size * size];
        let n = pixels.len().min(data.len());
        data[..n].copy_from_slice(&pixels[..n]);
        Maps { channels: 1, height: size, width: size, data }
    }

    /// Global average pooling `[c, h, w] → [c]`.
    pub fn pool(&self) -> Vec<f32> {
        let hw = (self.height * self.width).max(1);
        self.data.chunks_exact(hw).map(|c| c.iter().sum::<f32>() / hw as f32).collect()
    }
}

/// A convolution with its batch-norm folded in.
#[derive(Debug, Clone)]
struct FusedConv {
    weights: Weights,
    bias: Vec<f32>,
    cout: usize,
    cin: usize,
    /// Weights per output channel (`cin · k · k`).
    reduction: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    /// The folded weights `[cout, cin, k, k]`, from which the transposed convolution is built
    /// (empty in a transposed convolution: nothing is carried back through one).
    folded: Vec<f32>,
    /// The convolution that carries a gradient back ([`Self::backward`]), built on first use:
    /// inference never needs it.
    transposed: OnceLock<Box<Transposed>>,
}

/// A convolution's transposed convolution (its gradient at the input from the one at its
/// output), as a stride-1 convolution on the same kernels.
#[derive(Debug, Clone)]
struct Transposed {
    /// Stride 1: the taps flipped, input and output channels swapped, padded by `k − 1 − pad`;
    /// its output is the gradient. Stride `s > 1`: the input positions fall into `s²` phases
    /// (row and column offsets modulo `s`), and each phase's gradient is a stride-1
    /// convolution of the output gradient with its own `⌈k/s⌉²` subset of the taps (zero
    /// where a phase has fewer), padded by `⌈k/s⌉ − 1`; the phases' kernels are stacked as
    /// output channels, so one product computes them all. Spreading the gradient out by the
    /// stride and convolving at the input's size would multiply by zeros `s² − 1` times in
    /// `s²`; the phases do the forward pass's arithmetic rounded up to whole sub-kernels (16
    /// taps for the 9 of a 3 × 3 stride-2 layer, on a map one row and column larger), which
    /// pays most for 1 × 1 stride-2 shortcuts (4× less) and large maps (README: Grad-CAM).
    conv: FusedConv,
    /// The phases `(row, column)` whose gradients `conv`'s output channels hold, `cin` channels
    /// each in this order (phases that no tap reaches, as in a 1 × 1 stride-2 shortcut, are
    /// left out: their gradient is zero); empty for stride 1.
    phases: Vec<(usize, usize)>,
}

/// The folded weights, prepared for the algorithm the layer runs.
#[derive(Debug, Clone)]
enum Weights {
    Direct(PackedWeights),
    Winograd(WinogradWeights),
}

/// A convolution's and its batch-norm's parameters, on the host, before folding.
struct ConvBnValues {
    /// `[cout, cin, k, k]`.
    weight: Vec<f32>,
    /// The convolution's bias, if it has one.
    bias: Option<Vec<f32>>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    epsilon: f32,
}

impl FusedConv {
    /// From burn's layers (a model in memory: the lab's, the tests').
    fn from_conv_bn(layer: &'static str, cb: &ConvBn) -> Result<Self, FuseError> {
        let (conv, bn) = cb.parts();
        let [cout, cin, kh, kw] = conv.weight.val().dims();
        if kh != kw || kh == 0 || conv.stride[0] != conv.stride[1] || conv.groups != 1 || conv.dilation != [1, 1] {
            return Err(FuseError::Shape { layer, shape: vec![cout, cin, kh, kw] });
        }
        let pad = match conv.padding {
            burn::nn::PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
            burn::nn::PaddingConfig2d::Valid => 0,
            _ => return Err(FuseError::Shape { layer, shape: vec![cout, cin, kh, kw] }),
        };
        let values = ConvBnValues {
            weight: host(layer, conv.weight.val())?,
            bias: conv.bias.as_ref().map(|b| host(layer, b.val())).transpose()?,
            gamma: host(layer, bn.gamma.val())?,
            beta: host(layer, bn.beta.val())?,
            mean: host(layer, bn.running_mean.value())?,
            var: host(layer, bn.running_var.value())?,
            epsilon: bn.epsilon as f32,
        };
        Self::fold(layer, values, cout, cin, kh, conv.stride[0], pad)
    }

    /// From a record, the layer that `spec` describes.
    fn from_pack(pack: &Pack, spec: &ConvSpec) -> Result<Self, FuseError> {
        let (cout, cin, k) = (spec.cout, spec.cin, spec.kernel);
        let p = &spec.path;
        let values = ConvBnValues {
            weight: pack.values(&format!("{p}.conv.weight"), &[cout, cin, k, k])?,
            bias: None,
            gamma: pack.values(&format!("{p}.bn.gamma"), &[cout])?,
            beta: pack.values(&format!("{p}.bn.beta"), &[cout])?,
            mean: pack.values(&format!("{p}.bn.running_mean"), &[cout])?,
            var: pack.values(&format!("{p}.bn.running_var"), &[cout])?,
            epsilon: BN_EPSILON as f32,
        };
        Self::fold("a convolution", values, cout, cin, k, spec.stride, spec.pad())
    }

    /// Fold batch-norm into the convolution `[cout, cin, k, k]`.
    fn fold(layer: &'static str, v: ConvBnValues, cout: usize, cin: usize, kernel: usize, stride: usize, pad: usize) -> Result<Self, FuseError> {
        let conv_bias = v.bias.unwrap_or_else(|| vec![0.0; cout]);
        let k = cin * kernel * kernel;
        if [v.gamma.len(), v.beta.len(), v.mean.len(), v.var.len(), conv_bias.len()].iter().any(|&n| n != cout) || v.weight.len() != cout * k {
            return Err(FuseError::Shape { layer, shape: vec![cout, v.gamma.len()] });
        }
        // The transposed convolution pads by k − 1 − pad.
        if pad >= kernel || stride == 0 {
            return Err(FuseError::Shape { layer, shape: vec![cout, cin, kernel, kernel] });
        }
        // BN(conv(x) + b) = s·conv(x) + (β + s·(b − μ)), s = γ / √(σ² + ε): fold s into the
        // weights of each output channel.
        let mut folded = v.weight;
        let mut bias = vec![0.0; cout];
        for co in 0..cout {
            let s = v.gamma[co] / (v.var[co] + v.epsilon).sqrt();
            for w in &mut folded[co * k..(co + 1) * k] {
                *w *= s;
            }
            bias[co] = v.beta[co] + s * (conv_bias[co] - v.mean[co]);
        }
        Ok(FusedConv::new(folded, bias, cout, cin, kernel, stride, pad))
    }

    /// The convolution with folded weights `[cout, cin, k, k]`, prepared for the fastest
    /// algorithm that suits its shape.
    fn new(folded: Vec<f32>, bias: Vec<f32>, cout: usize, cin: usize, kernel: usize, stride: usize, pad: usize) -> Self {
        let weights = if winograd::suits(cin, kernel, stride, pad) {
            Weights::Winograd(WinogradWeights::transform(&folded, cout, cin))
        } else {
            Weights::Direct(PackedWeights::pack(&folded, cout, cin, kernel))
        };
        let reduction = cin * kernel * kernel;
        FusedConv { weights, bias, cout, cin, reduction, kernel, stride, pad, folded, transposed: OnceLock::new() }
    }

    /// The gradient at this convolution's input (`[cin, h, w]`, the input's size) from the
    /// gradient `g` at its output; the bias and the epilogue play no part (the caller masks
    /// for a ReLU). By the transposed convolution ([`Transposed`]).
    fn backward(&self, g: &Maps, h: usize, w: usize, scratch: &mut Vec<f32>) -> Maps {
        let t = self.transposed.get_or_init(|| Box::new(self.transpose()));
        let r = t.conv.run(g, Epilogue::Linear, scratch);
        if t.phases.is_empty() {
            // Stride 1 pads so that the output has the input's size.
            return r;
        }
        // Phase (qy, qx)'s output (u, v) is the gradient at input row s·u + qy − pad,
        // column s·v + qx − pad; rows and columns outside the input are the padding's.
        let (s, pad, cin) = (self.stride, self.pad, self.cin);
        let (uh, uw) = (r.height, r.width);
        let mut gx = vec![0.0; cin * h * w];
        let plane = uh * uw;
        for (i, &(qy, qx)) in t.phases.iter().enumerate() {
            for (ci, dst) in gx.chunks_exact_mut(h * w).enumerate() {
                let src = &r.data[(i * cin + ci) * plane..][..plane];
                for (u, row) in src.chunks_exact(uw).enumerate() {
                    let Some(iy) = (s * u + qy).checked_sub(pad).filter(|&iy| iy < h) else { continue };
                    for (v, &val) in row.iter().enumerate() {
                        if let Some(ix) = (s * v + qx).checked_sub(pad).filter(|&ix| ix < w) {
                            dst[iy * w + ix] = val;
                        }
                    }
                }
            }
        }
        Maps { channels: cin, height: h, width: w, data: gx }
    }

    /// Build the transposed convolution ([`Transposed`]) from the folded weights.
    fn transpose(&self) -> Transposed {
        let (k, s, cin, cout) = (self.kernel, self.stride, self.cin, self.cout);
        let tap = |co: usize, ci: usize, ky: usize, kx: usize| self.folded[((co * cin + ci) * k + ky) * k + kx];
        let (mut conv, phases) = if s == 1 {
            let mut t = vec![0.0; self.folded.len()];
            for (co, ci, ky, kx) in (0..cout).flat_map(|co| (0..cin).flat_map(move |ci| (0..k * k).map(move |i| (co, ci, i / k, i % k)))) {
                t[((ci * cout + co) * k + (k - 1 - ky)) * k + (k - 1 - kx)] = tap(co, ci, ky, kx);
            }
            (FusedConv::new(t, vec![0.0; cin], cin, cout, k, 1, k - 1 - self.pad), Vec::new())
        } else {
            // Input row iy = s·u + q − pad takes taps ky = q + s·j from output row u − j.
            let j = k.div_ceil(s);
            let phases: Vec<(usize, usize)> = (0..s.min(k)).flat_map(|qy| (0..s.min(k)).map(move |qx| (qy, qx))).collect();
            let mut t = vec![0.0; phases.len() * cin * cout * j * j];
            for (i, &(qy, qx)) in phases.iter().enumerate() {
                for (ci, co) in (0..cin).flat_map(|ci| (0..cout).map(move |co| (ci, co))) {
                    for (a, b) in (0..j).flat_map(|a| (0..j).map(move |b| (a, b))) {
                        let (ky, kx) = (qy + s * (j - 1 - a), qx + s * (j - 1 - b));
                        if ky < k && kx < k {
                            t[(((i * cin + ci) * cout + co) * j + a) * j + b] = tap(co, ci, ky, kx);
                        }
                    }
                }
            }
            let channels = phases.len() * cin;
            (FusedConv::new(t, vec![0.0; channels], channels, cout, j, 1, j - 1), phases)
        };
        conv.folded = Vec::new();
        Transposed { conv, phases }
    }

    fn run(&self, x: &Maps, epilogue: Epilogue, scratch: &mut Vec<f32>) -> Maps {
        let (data, height, width) = match &self.weights {
            Weights::Direct(w) => conv2d(&x.data, x.channels, x.height, x.width, w, &self.bias, self.kernel, self.stride, self.pad, epilogue, scratch),
            Weights::Winograd(w) => (winograd::conv3x3(&x.data, x.height, x.width, w, &self.bias, epilogue, scratch), x.height, x.width),
        };
        Maps { channels: self.cout, height, width, data }
    }
}

#[derive(Debug, Clone)]
struct FusedBlock {
    a: FusedConv,
    b: FusedConv,
    down: Option<FusedConv>,
}

impl FusedBlock {
    fn from_block(block: &Block) -> Result<Self, FuseError> {
        let (a, b, down) = block.parts();
        Ok(FusedBlock {
            a: FusedConv::from_conv_bn("a block's first convolution", a)?,
            b: FusedConv::from_conv_bn("a block's second convolution", b)?,
            down: down.map(|d| FusedConv::from_conv_bn("a block's shortcut projection", d)).transpose()?,
        })
    }

    fn from_pack(pack: &Pack, spec: &BlockSpec) -> Result<Self, FuseError> {
        Ok(FusedBlock {
            a: FusedConv::from_pack(pack, &spec.a)?,
            b: FusedConv::from_pack(pack, &spec.b)?,
            down: spec.down.as_ref().map(|d| FusedConv::from_pack(pack, d)).transpose()?,
        })
    }

    /// relu(b(relu(a(x))) + shortcut(x)), the add and both ReLUs inside the convolutions.
    /// `lap` is called after each convolution with its part's name.
    fn run(&self, x: &Maps, scratch: &mut Vec<f32>, lap: &mut dyn FnMut(Part, &FusedConv, &Maps)) -> Maps {
        let shortcut = self.down.as_ref().map(|d| {
            let s = d.run(x, Epilogue::Linear, scratch);
            lap(Part::Down, d, &s);
            s
        });
        let y = self.a.run(x, Epilogue::Relu, scratch);
        lap(Part::A, &self.a, &y);
        let residual = shortcut.as_ref().unwrap_or(x);
        let out = self.b.run(&y, Epilogue::AddRelu(&residual.data), scratch);
        lap(Part::B, &self.b, &out);
        out
    }

    /// The gradient at the block's input `x` from the gradient `g` at its output `out`, with
    /// `y` the first convolution's output (both ReLUs pass the gradient where their output is
    /// positive, as burn's ReLU does).
    fn backward(&self, x: &Maps, y: &Maps, out: &Maps, mut g: Maps, scratch: &mut Vec<f32>) -> Maps {
        relu_mask(&mut g.data, &out.data);
        let mut gy = self.b.backward(&g, y.height, y.width, scratch);
        relu_mask(&mut gy.data, &y.data);
        let mut gx = self.a.backward(&gy, x.height, x.width, scratch);
        let shortcut = match &self.down {
            Some(d) => d.backward(&g, x.height, x.width, scratch),
            None => g,
        };
        for (a, b) in gx.data.iter_mut().zip(&shortcut.data) {
            *a += b;
        }
        gx
    }
}

/// Zero the gradient `g` where the ReLU's output `out` is not positive.
fn relu_mask(g: &mut [f32], out: &[f32]) {
    for (g, &o) in g.iter_mut().zip(out) {
        if o <= 0.0 {
            *g = 0.0;
        }
    }
}

/// The parts of a stage a profile times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Down,
    A,
    B,
}

/// One layer's share of a forward pass ([`FusedCnn::profile`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerTime {
    /// "stem", "stage2.a" (first convolution), "stage2.b" (second, with the add),
    /// "stage2.down" (shortcut projection), "stage2.pool", "head".
    pub layer: String,
    /// Output shape `[channels, height, width]`.
    pub output: [usize; 3],
    /// Multiply-accumulates.
    pub macs: u64,
    /// Median milliseconds over the runs.
    pub ms: f64,
}

/// The network with batch-norm folded, for inference on the CPU.
#[derive(Debug, Clone)]
pub struct FusedCnn {
    stem: FusedConv,
    stages: Vec<FusedBlock>,
    /// Head weight, `[features, classes]` row-major (burn's linear layout).
    head_weight: Vec<f32>,
    head_bias: Vec<f32>,
    classes: usize,
}

impl FusedCnn {
    /// Fold a model in inference mode (`valid()`, running statistics) whose tensors can be
    /// read synchronously (the CPU device).
    pub fn from_cnn(model: &Cnn) -> Result<Self, FuseError> {
        let (stem, stages, head) = model.parts();
        let [features, classes] = head.weight.val().dims();
        let head_weight = host("the head", head.weight.val())?;
        let head_bias = match &head.bias {
            Some(b) => host("the head", b.val())?,
            None => vec![0.0; classes],
        };
        if classes == 0 || head_weight.len() != features * classes || head_bias.len() != classes {
            return Err(FuseError::Shape { layer: "the head", shape: vec![features, classes] });
        }
        Ok(FusedCnn {
            stem: FusedConv::from_conv_bn("the stem", stem)?,
            stages: stages.iter().map(FusedBlock::from_block).collect::<Result<_, _>>()?,
            head_weight,
            head_bias,
            classes,
        })
    }

    /// Fold the network of architecture `arch` straight from its record (burnpack bytes, f32
    /// or f16; the caller has checked its hash), without building burn's network first: what
    /// the CPU loads at every start. Building burn's network and reading its tensors back took
    /// 35–45 ms of a cold start in the page, most of it the browser compiling burn's
    /// record code on first use (measured 2026-12-07).
    pub fn from_record(arch: &ModelConfig, record: &[u8]) -> Result<Self, FuseError> {
        let pack = Pack::read(record)?;
        let (features, classes) = (arch.features(), arch.num_classes);
        Ok(FusedCnn {
            stem: FusedConv::from_pack(&pack, &arch.stem())?,
            stages: arch.blocks().iter().map(|b| FusedBlock::from_pack(&pack, b)).collect::<Result<_, _>>()?,
            head_weight: pack.values("head.weight", &[features, classes])?,
            head_bias: pack.values("head.bias", &[classes])?,
            classes,
        })
    }

    /// The trunk up to stage `k`, pushing the pooled output of every stage it runs to `pooled`.
    fn trunk(&self, image: &[f32], size: usize, k: usize, pooled: &mut Vec<Vec<f32>>) -> Maps {
        self.trunk_laps(image, size, k, pooled, &mut |_| {})
    }

    /// [`Self::trunk`], calling `lap` after each layer with its description (time unset).
    fn trunk_laps(&self, image: &[f32], size: usize, k: usize, pooled: &mut Vec<Vec<f32>>, lap: &mut dyn FnMut(LayerTime)) -> Maps {
        let conv = |layer: String, c: &FusedConv, out: &Maps| LayerTime {
            layer,
            output: [out.channels, out.height, out.width],
            macs: (out.data.len() * c.reduction) as u64,
            ms: 0.0,
        };
        let mut scratch = Vec::new();
        let mut a = self.stem.run(&Maps::image(image, size), Epilogue::Relu, &mut scratch);
        lap(conv("stem".into(), &self.stem, &a));
        for (i, stage) in self.stages.iter().take(k + 1).enumerate() {
            let name = |part| match part {
                Part::Down => format!("stage{}.down", i + 1),
                Part::A => format!("stage{}.a", i + 1),
                Part::B => format!("stage{}.b", i + 1),
            };
            a = stage.run(&a, &mut scratch, &mut |part, c, out| lap(conv(name(part), c, out)));
            pooled.push(a.pool());
            lap(LayerTime { layer: format!("stage{}.pool", i + 1), output: [a.channels, 1, 1], macs: 0, ms: 0.0 });
        }
        a
    }

    /// Median time of each layer over `runs` forward passes of one `size × size` image (after
    /// one untimed pass), with `now` a clock in milliseconds: where a forward pass spends its
    /// time, for the README's profile and for choosing what to optimise next.
    pub fn profile(&self, image: &[f32], size: usize, runs: usize, now: &(dyn Fn() -> f64 + Sync)) -> Vec<LayerTime> {
        parallel::run(|| self.profile_here(image, size, runs, now))
    }

    fn profile_here(&self, image: &[f32], size: usize, runs: usize, now: &(dyn Fn() -> f64 + Sync)) -> Vec<LayerTime> {
        let mut layers: Vec<LayerTime> = Vec::new();
        let mut times: Vec<Vec<f64>> = Vec::new();
        for run in 0..=runs.max(1) {
            let mut pooled = Vec::new();
            let mut i = 0;
            let mut t = now();
            let last = self.trunk_laps(image, size, self.stages.len(), &mut pooled, &mut |layer| {
                let t1 = now();
                if run > 0 {
                    if let Some(v) = times.get_mut(i) {
                        v.push(t1 - t);
                    }
                } else {
                    layers.push(layer);
                    times.push(Vec::new());
                }
                i += 1;
                t = now();
            });
            if let Some(p) = pooled.last() {
                self.head(p);
            }
            let t1 = now();
            if run == 0 {
                let c = last.channels;
                layers.push(LayerTime { layer: "head".into(), output: [self.classes, 1, 1], macs: (c * self.classes) as u64, ms: 0.0 });
                times.push(Vec::new());
            } else if let Some(v) = times.last_mut() {
                v.push(t1 - t);
            }
        }
        for (l, mut v) in layers.iter_mut().zip(times) {
            v.sort_by(f64::total_cmp);
            l.ms = v.get(v.len() / 2).copied().unwrap_or(0.0);
        }
        layers
    }

    /// What Grad-CAM needs for `class` at stage `k` (0-based) of one `size × size` image: the
    /// stage's output A, the gradient ∂y_c/∂A of the class logit (same shape) and y_c. The
    /// gradient runs back from the logit through the later stages by their transposed
    /// convolutions; folding batch-norm changes nothing here either, since at inference it is
    /// an affine map. `None` when `class` or `k` is out of range.
    pub fn class_gradient(&self, image: &[f32], size: usize, class: usize, k: usize) -> Option<(Maps, Maps, f32)> {
        parallel::run(|| self.class_gradient_here(image, size, class, k))
    }

    fn class_gradient_here(&self, image: &[f32], size: usize, class: usize, k: usize) -> Option<(Maps, Maps, f32)> {
        if class >= self.classes || k >= self.stages.len() {
            return None;
        }
        let mut scratch = Vec::new();
        let mut x = self.stem.run(&Maps::image(image, size), Epilogue::Relu, &mut scratch);
        for stage in &self.stages[..k] {
            x = stage.run(&x, &mut scratch, &mut |_, _, _| {});
        }
        // The outputs of stage k and every later stage, and the later stages' first
        // convolution outputs: what their backward passes mask with.
        let mut outs = vec![self.stages[k].run(&x, &mut scratch, &mut |_, _, _| {})];
        let mut firsts = Vec::new();
        for stage in &self.stages[k + 1..] {
            let mut first = None;
            let out = stage.run(outs.last()?, &mut scratch, &mut |part, _, m| {
                if part == Part::A {
                    first = Some(m.clone());
                }
            });
            firsts.push(first?);
            outs.push(out);
        }
        let last = outs.last()?;
        let score = *self.head(&last.pool()).get(class)?;
        // y_c = Σ_f W[f, c] · mean(A_f) + b_c: the gradient at the last stage is W[f, c] / hw
        // at every position of channel f.
        let hw = last.height * last.width;
        let mut g = Maps { channels: last.channels, height: last.height, width: last.width, data: Vec::with_capacity(last.data.len()) };
        for f in 0..last.channels {
            let v = self.head_weight.get(f * self.classes + class).copied().unwrap_or(0.0) / hw.max(1) as f32;
            g.data.extend(std::iter::repeat_n(v, hw));
        }
        for j in (1..outs.len()).rev() {
            g = self.stages[k + j].backward(&outs[j - 1], &firsts[j - 1], &outs[j], g, &mut scratch);
        }
        Some((outs.swap_remove(0), g, score))
    }

    /// Logits from pooled features (the linear head).
    pub fn head(&self, pooled: &[f32]) -> Vec<f32> {
        let mut out = self.head_bias.clone();
        for (f, row) in pooled.iter().zip(self.head_weight.chunks_exact(self.classes)) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += f * w;
            }
        }
        out
    }

    /// Logits of one `size × size` image, as [`Cnn::forward`].
    pub fn forward(&self, image: &[f32], size: usize) -> Vec<f32> {
        self.gate_features(image, size).1
    }

    /// Pooled outputs of the last two stages, concatenated, and the logits, as
    /// [`Cnn::gate_features`].
    pub fn gate_features(&self, image: &[f32], size: usize) -> (Vec<f32>, Vec<f32>) {
        parallel::run(|| self.gate_features_here(image, size))
    }

    fn gate_features_here(&self, image: &[f32], size: usize) -> (Vec<f32>, Vec<f32>) {
        let mut pooled = Vec::new();
        self.trunk(image, size, self.stages.len().saturating_sub(1), &mut pooled);
        let logits = match pooled.last() {
            Some(last) => self.head(last),
            None => self.head(&[]),
        };
        // With one stage, Cnn::gate_features pools that stage twice.
        let from = pooled.len().saturating_sub(2);
        let features = match &pooled[from..] {
            [only] => [only.as_slice(), only.as_slice()].concat(),
            two => two.concat(),
        };
        (features, logits)
    }
}

/// A record's tensors by name (burn's own reader of its format).
struct Pack(BTreeMap<String, burn_pack::Tensor>);

impl Pack {
    fn read(record: &[u8]) -> Result<Self, FuseError> {
        let tensors = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(record.to_vec())).and_then(|r| r.into_tensors()).map_err(FuseError::Record)?;
        Ok(Pack(tensors.into_iter().map(|t| (t.name.clone(), t)).collect()))
    }

    /// The values of tensor `name`, which must have `shape`, as f32.
    fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, FuseError> {
        let t = self.0.get(name).ok_or_else(|| FuseError::Missing { tensor: name.into() })?;
        if t.shape.as_slice() != shape {
            return Err(FuseError::TensorShape { tensor: name.into(), expected: shape.to_vec(), got: t.shape.as_slice().to_vec() });
        }
        let bytes = t.to_bytes().map_err(FuseError::Record)?;
        let values: Vec<f32> = match t.dtype {
            DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            DType::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            DType::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(FuseError::Dtype { tensor: name.into(), dtype: format!("{other:?}") }),
        };
        if values.len() != shape.iter().product::<usize>() {
            return Err(FuseError::TensorShape { tensor: name.into(), expected: shape.to_vec(), got: vec![values.len()] });
        }
        Ok(values)
    }
}

/// A parameter tensor's values on the host (synchronous: the CPU device).
fn host<const D: usize>(layer: &'static str, t: Tensor<D>) -> Result<Vec<f32>, FuseError> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| FuseError::Read { layer, reason: format!("{e:?}") })
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::TensorData;

    use super::super::kernel::tests::values;
    use super::super::{device, model_from_record, record_bytes};
    use super::*;

    /// Moves every parameter by a fixed pseudo-random amount, so that no weight, scale or
    /// shift is a default that a mixed-up name could still match.
    struct Jitter(u32);

    impl ModuleMapper for Jitter {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            let seed = self.0;
            param.map(|t| {
                let dims = t.dims();
                let n = dims.iter().product();
                let shift = Tensor::<D>::from_data(TensorData::new(values(n, seed), dims), &t.device());
                t + shift
            })
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn a_network_read_from_its_record_equals_the_one_folded_from_burns_layers() {
        let arch = ModelConfig { in_channels: 1, stem_width: 8, stage_widths: vec![8, 16, 24], num_classes: 3 };
        let cpu = device::cpu();
        let model = arch.init_seeded(&cpu, 11).map(&mut Jitter(0)).valid();
        let image = values(40 * 40, 5).iter().map(|v| v + 0.5).collect::<Vec<_>>();
        for half in [false, true] {
            let record = record_bytes(&model, half).unwrap();
            // burn's reading of the same record (an f16 one rounds every parameter).
            let loaded = model_from_record(&arch, record.clone(), &cpu).unwrap();
            let want = FusedCnn::from_cnn(&loaded).unwrap().gate_features(&image, 40);
            let got = FusedCnn::from_record(&arch, &record).unwrap().gate_features(&image, 40);
            assert!(max_diff(&want.1, &got.1) < 1e-5, "logits, f16 {half}: {:?} vs {:?}", want.1, got.1);
            assert!(max_diff(&want.0, &got.0) < 1e-5, "features, f16 {half}");
        }
    }

    #[test]
    fn a_record_of_another_network_or_not_a_record_is_refused_with_the_reason() {
        let arch = ModelConfig { in_channels: 1, stem_width: 8, stage_widths: vec![8, 16], num_classes: 2 };
        let record = record_bytes(&arch.init_seeded(&device::cpu(), 3), false).unwrap();
        let wider = ModelConfig { stage_widths: vec![8, 32], ..arch.clone() };
        assert!(matches!(FusedCnn::from_record(&wider, &record), Err(FuseError::TensorShape { tensor, .. }) if tensor == "stages.1.a.conv.weight"));
        let deeper = ModelConfig { stage_widths: vec![8, 16, 16], ..arch.clone() };
        assert!(matches!(FusedCnn::from_record(&deeper, &record), Err(FuseError::Missing { tensor }) if tensor == "stages.2.a.conv.weight"));
        let classes = ModelConfig { num_classes: 3, ..arch.clone() };
        assert!(matches!(FusedCnn::from_record(&classes, &record), Err(FuseError::TensorShape { tensor, .. }) if tensor == "head.weight"));
        assert!(matches!(FusedCnn::from_record(&arch, b"not a record"), Err(FuseError::Record(_))));
        assert!(matches!(FusedCnn::from_record(&arch, &record[..record.len() / 2]), Err(FuseError::Record(_))));
        assert!(FusedCnn::from_record(&arch, &record).is_ok());
    }

    /// The gradient at a convolution's input by the definition: every output position sends
    /// its gradient back through every tap that read an input position.
    fn naive_backward(
        w: &[f32],
        g: &[f32],
        (cin, cout, k, s, pad): (usize, usize, usize, usize, usize),
        (h, wd): (usize, usize),
        (oh, ow): (usize, usize),
    ) -> Vec<f32> {
        let mut gx = vec![0.0; cin * h * wd];
        for (co, ci, oy, ox, ky, kx) in (0..cout)
            .flat_map(|co| (0..cin).flat_map(move |ci| (0..oh * ow).flat_map(move |o| (0..k * k).map(move |t| (co, ci, o / ow, o % ow, t / k, t % k)))))
        {
            let (iy, ix) = ((oy * s + ky).checked_sub(pad), (ox * s + kx).checked_sub(pad));
            if let (Some(iy), Some(ix)) = (iy.filter(|&y| y < h), ix.filter(|&x| x < wd)) {
                gx[(ci * h + iy) * wd + ix] += w[((co * cin + ci) * k + ky) * k + kx] * g[(co * oh + oy) * ow + ox];
            }
        }
        gx
    }

    #[test]
    fn the_transposed_convolution_equals_the_definition_for_every_stride_and_size() {
        // The models' layers (3 × 3 stride 1 and 2, 1 × 1 stride-2 shortcuts) at even and odd
        // sizes, small maps (im2col) and wide ones (the direct product), and a stride of 3.
        for (n, &(k, s, pad, h, w)) in [
            (3, 2, 1, 8, 8),
            (3, 2, 1, 9, 7),
            (3, 2, 1, 24, 30),
            (1, 2, 0, 8, 8),
            (1, 2, 0, 7, 9),
            (1, 2, 0, 32, 32),
            (3, 1, 1, 6, 5),
            (3, 1, 1, 20, 20),
            (3, 3, 1, 10, 11),
        ]
        .iter()
        .enumerate()
        {
            let (cin, cout) = (5, 12);
            let weights = values(cout * cin * k * k, 100 + n as u32);
            let conv = FusedConv::new(weights.clone(), vec![0.0; cout], cout, cin, k, s, pad);
            let x = Maps { channels: cin, height: h, width: w, data: values(cin * h * w, 7) };
            let y = conv.run(&x, Epilogue::Linear, &mut Vec::new());
            let g = Maps { data: values(y.data.len(), 200 + n as u32), ..y };
            let got = conv.backward(&g, h, w, &mut Vec::new());
            assert_eq!((got.channels, got.height, got.width), (cin, h, w));
            let want = naive_backward(&weights, &g.data, (cin, cout, k, s, pad), (h, w), (g.height, g.width));
            let d = max_diff(&want, &got.data);
            assert!(d < 1e-5, "k {k} stride {s} pad {pad} {h}×{w}: differs by {d}");
        }
    }
}
