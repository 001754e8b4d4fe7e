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

use std::sync::OnceLock;

use burn::tensor::Tensor;

use super::cnn::{Block, Cnn, ConvBn};
use super::kernel::{Epilogue, PackedWeights, conv2d};
use super::parallel;
use super::winograd::{self, WinogradWeights};

/// Why a model could not be fused (its weights could not be read on the host).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FuseError {
    #[error("reading the weights of {layer} failed: {reason}")]
    Read { layer: &'static str, reason: String },
    #[error("{layer} has an unexpected shape: {shape:?}")]
    Shape { layer: &'static str, shape: Vec<usize> },
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
    transposed: OnceLock<Box<FusedConv>>,
}

/// The folded weights, prepared for the algorithm the layer runs.
#[derive(Debug, Clone)]
enum Weights {
    Direct(PackedWeights),
    Winograd(WinogradWeights),
}

impl FusedConv {
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
        let w = host(layer, conv.weight.val())?;
        let conv_bias = match &conv.bias {
            Some(b) => host(layer, b.val())?,
            None => vec![0.0; cout],
        };
        let gamma = host(layer, bn.gamma.val())?;
        let beta = host(layer, bn.beta.val())?;
        let mean = host(layer, bn.running_mean.value())?;
        let var = host(layer, bn.running_var.value())?;
        if [gamma.len(), beta.len(), mean.len(), var.len(), conv_bias.len()].iter().any(|&n| n != cout) {
            return Err(FuseError::Shape { layer, shape: vec![cout, gamma.len()] });
        }
        // BN(conv(x) + b) = s·conv(x) + (β + s·(b − μ)), s = γ / √(σ² + ε): fold s into the
        // weights of each output channel.
        let k = cin * kh * kw;
        let mut folded = w;
        let mut bias = vec![0.0; cout];
        for co in 0..cout {
            let s = gamma[co] / (var[co] + bn.epsilon as f32).sqrt();
            for v in &mut folded[co * k..(co + 1) * k] {
                *v *= s;
            }
            bias[co] = beta[co] + s * (conv_bias[co] - mean[co]);
        }
        // The transposed convolution pads by k − 1 − pad.
        if pad >= kh {
            return Err(FuseError::Shape { layer, shape: vec![cout, cin, kh, kw] });
        }
        Ok(FusedConv::new(folded, bias, cout, cin, kh, conv.stride[0], pad))
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
    /// for a ReLU). As a stride-1 convolution, so that it runs on the same kernels as the
    /// forward pass: `g` is spread out by the stride (zeros between its values, and at the end
    /// the rows and columns the forward stride skipped), then convolved with the taps flipped
    /// and the input and output channels swapped, padded by `k − 1 − pad`.
    fn backward(&self, g: &Maps, h: usize, w: usize, scratch: &mut Vec<f32>) -> Maps {
        let transposed = self.transposed.get_or_init(|| {
            let (k, cin, cout) = (self.kernel, self.cin, self.cout);
            let mut t = vec![0.0; self.folded.len()];
            for (co, filter) in self.folded.chunks_exact(cin * k * k).enumerate() {
                for (ci, taps) in filter.chunks_exact(k * k).enumerate() {
                    for (tap, &v) in taps.iter().enumerate() {
                        t[(ci * cout + co) * k * k + (k * k - 1 - tap)] = v;
                    }
                }
            }
            let mut conv = FusedConv::new(t, vec![0.0; cin], cin, cout, k, 1, k - 1 - self.pad);
            conv.folded = Vec::new();
            Box::new(conv)
        });
        let s = self.stride;
        let (hd, wd) = ((h + 2 * self.pad + 1).saturating_sub(self.kernel), (w + 2 * self.pad + 1).saturating_sub(self.kernel));
        if (s, hd, wd) == (1, g.height, g.width) {
            return transposed.run(g, Epilogue::Linear, scratch);
        }
        let mut spread = vec![0.0; g.channels * hd * wd];
        for (dst, src) in spread.chunks_exact_mut(hd * wd).zip(g.data.chunks_exact(g.height * g.width)) {
            for (oy, row) in src.chunks_exact(g.width).enumerate().filter(|(oy, _)| oy * s < hd) {
                for (ox, &v) in row.iter().enumerate().filter(|(ox, _)| ox * s < wd) {
                    dst[oy * s * wd + ox * s] = v;
                }
            }
        }
        transposed.run(&Maps { channels: g.channels, height: hd, width: wd, data: spread }, Epilogue::Linear, scratch)
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

/// A parameter tensor's values on the host (synchronous: the CPU device).
fn host<const D: usize>(layer: &'static str, t: Tensor<D>) -> Result<Vec<f32>, FuseError> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| FuseError::Read { layer, reason: format!("{e:?}") })
}
