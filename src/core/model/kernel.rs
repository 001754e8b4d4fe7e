//! Kernel: 2-D convolution for inference on the CPU, as im2col and a register-blocked matrix
//! product that adds the bias, an optional residual and applies ReLU as it stores (one pass
//! over the output instead of three). Plain Rust written so that the compiler keeps the
//! accumulator block in registers and vectorises its rows: with wasm's `simd128` (see
//! `.cargo/config.toml`) each row of the block is two 128-bit vectors, natively SSE/AVX.
//!
//! Layout: images are channel-major `[c, h, w]`. The im2col matrix `[c·k·k, positions]` is
//! written in panels of `NR` positions and the weights are packed once, `MR` output channels at
//! a time, so that the product reads both front to back.

/// Output channels per block (6 divides every width the recipes use: 24, 48, 96, 192), and
/// 6 rows × 2 vectors of accumulators fit the 16 vector registers of x86-64 and of wasm engines.
const MR: usize = 6;
/// Output positions per block: two 128-bit vectors.
const NR: usize = 8;

/// Convolution weights `[cout, cin, k, k]` packed in blocks of [`MR`] output channels:
/// block `b` holds, for each reduction index `r` (input channel, row, column), the weights of
/// channels `b·MR … b·MR + MR − 1` (zero beyond `cout`).
#[derive(Debug, Clone)]
pub struct PackedWeights {
    data: Vec<f32>,
    cout: usize,
    reduction: usize,
}

impl PackedWeights {
    /// Pack row-major `[cout, cin, k, k]` weights.
    pub fn pack(w: &[f32], cout: usize, cin: usize, k: usize) -> Self {
        let reduction = cin * k * k;
        let blocks = cout.div_ceil(MR);
        let mut data = vec![0.0; blocks * reduction * MR];
        for co in 0..cout {
            let (b, i) = (co / MR, co % MR);
            for r in 0..reduction {
                data[(b * reduction + r) * MR + i] = w.get(co * reduction + r).copied().unwrap_or(0.0);
            }
        }
        PackedWeights { data, cout, reduction }
    }

    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Weights per output channel (`cin · k · k`).
    pub fn reduction(&self) -> usize {
        self.reduction
    }
}

/// What the product does with each output value `v` (bias included) as it stores it.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    Linear,
    Relu,
    /// `max(0, v + residual)`, the residual shaped as the output.
    AddRelu(&'a [f32]),
}

/// Convolve `x` (`[cin, h, w]`) with square `kernel`, `stride` and zero padding `pad` on every
/// side. Returns the output `[cout, ho, wo]`, `ho` and `wo`. `scratch` holds the im2col matrix
/// between calls so that a forward pass allocates it once.
pub fn conv2d(
    x: &[f32],
    cin: usize,
    h: usize,
    w: usize,
    weights: &PackedWeights,
    bias: &[f32],
    kernel: usize,
    stride: usize,
    pad: usize,
    epilogue: Epilogue,
    scratch: &mut Vec<f32>,
) -> (Vec<f32>, usize, usize) {
    let stride = stride.max(1);
    let out_dim = |n: usize| if n + 2 * pad >= kernel { (n + 2 * pad - kernel) / stride + 1 } else { 0 };
    let (ho, wo) = (out_dim(h), out_dim(w));
    let positions = ho * wo;
    let mut out = vec![0.0; weights.cout * positions];
    if positions == 0 || weights.reduction == 0 || x.len() < cin * h * w || weights.reduction != cin * kernel * kernel {
        return (out, ho, wo);
    }
    im2col_panels(x, cin, h, w, kernel, stride, pad, ho, wo, scratch);
    let (rows, _) = scratch.as_chunks::<NR>();
    matmul(weights, rows, positions, bias, epilogue, &mut out);
    (out, ho, wo)
}

/// The im2col matrix `col[r][p] = x[c][oy·s + ky − pad][ox·s + kx − pad]` (`r = (c·k + ky)·k +
/// kx`, `p = oy·wo + ox`, 0 outside the image), stored as panels of [`NR`] positions: panel
/// `p / NR` holds its `NR` values of row 0, then of row 1, …, so that the product reads each
/// panel front to back. The last panel is padded with zeros.
fn im2col_panels(x: &[f32], cin: usize, h: usize, w: usize, kernel: usize, stride: usize, pad: usize, ho: usize, wo: usize, col: &mut Vec<f32>) {
    let reduction = cin * kernel * kernel;
    let panel = reduction * NR;
    col.clear();
    col.resize((ho * wo).div_ceil(NR) * panel, 0.0);
    let mut r = 0;
    for plane in x.chunks_exact(h * w).take(cin) {
        for ky in 0..kernel {
            for kx in 0..kernel {
                // Output columns whose input column ox·s + kx − pad lies inside [0, w).
                let lo = pad.saturating_sub(kx).div_ceil(stride).min(wo);
                let hi = if w + pad > kx { ((w + pad - kx - 1) / stride + 1).min(wo) } else { 0 }.max(lo);
                for oy in 0..ho {
                    let iy = oy * stride + ky;
                    if iy < pad || iy - pad >= h {
                        continue; // already zero
                    }
                    let src = &plane[(iy - pad) * w..(iy - pad + 1) * w];
                    for ox in lo..hi {
                        let p = oy * wo + ox;
                        col[(p / NR) * panel + r * NR + p % NR] = src[ox * stride + kx - pad];
                    }
                }
                r += 1;
            }
        }
    }
}

/// `out[co][p] = epilogue(bias[co] + Σ_r W[co][r] · col[r][p])`, in blocks of `MR × NR`, from
/// the panels of [`im2col_panels`].
fn matmul(weights: &PackedWeights, panels: &[[f32; NR]], positions: usize, bias: &[f32], epilogue: Epilogue, out: &mut [f32]) {
    let reduction = weights.reduction;
    let cout = weights.cout;
    let (blocks, _) = weights.data.as_chunks::<MR>();
    for (panel, rows) in panels.chunks_exact(reduction).enumerate() {
        let p0 = panel * NR;
        let width = positions.saturating_sub(p0).min(NR);
        for (b, block) in blocks.chunks_exact(reduction).enumerate() {
            let acc = block_product(block, rows);
            for (i, a) in acc.iter().enumerate() {
                let co = b * MR + i;
                if co >= cout {
                    break;
                }
                let start = co * positions + p0;
                let bias = bias.get(co).copied().unwrap_or(0.0);
                if width == NR {
                    if let Some(dst) = out.get_mut(start..).and_then(|d| d.first_chunk_mut::<NR>()) {
                        store(dst, a, bias, epilogue, start);
                    }
                } else {
                    store_partial(&mut out[start..start + width], a, bias, epilogue, start);
                }
            }
        }
    }
}

/// ReLU as a comparison, not `f32::max`: wasm32 has no vector form of C's `fmaxf`
/// semantics, so `max` became a call per value there and kept the stores scalar.
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v > 0.0 { v } else { 0.0 }
}

/// Write one full row of a block: `NR` values with bias and epilogue.
#[inline(always)]
fn store(dst: &mut [f32; NR], a: &[f32; NR], bias: f32, epilogue: Epilogue, start: usize) {
    match epilogue {
        Epilogue::Linear => (0..NR).for_each(|j| dst[j] = a[j] + bias),
        Epilogue::Relu => (0..NR).for_each(|j| dst[j] = relu(a[j] + bias)),
        Epilogue::AddRelu(res) => {
            if let Some(r) = res.get(start..).and_then(|r| r.first_chunk::<NR>()) {
                (0..NR).for_each(|j| dst[j] = relu(a[j] + bias + r[j]));
            }
        }
    }
}

/// Write the first `dst.len()` (< `NR`) values of a row (the last, partial panel).
fn store_partial(dst: &mut [f32], a: &[f32; NR], bias: f32, epilogue: Epilogue, start: usize) {
    match epilogue {
        Epilogue::Linear => dst.iter_mut().zip(a).for_each(|(d, v)| *d = v + bias),
        Epilogue::Relu => dst.iter_mut().zip(a).for_each(|(d, v)| *d = relu(v + bias)),
        Epilogue::AddRelu(res) => {
            if let Some(r) = res.get(start..start + dst.len()) {
                dst.iter_mut().zip(a).zip(r).for_each(|((d, v), r)| *d = relu(v + bias + r));
            }
        }
    }
}

/// `Σ_r w[r][i] · rows[r][j]` for the `MR × NR` block. The rows of the accumulator are named
/// locals, not an indexed array, so that they stay in vector registers through the loop.
#[inline(always)]
fn block_product(block: &[[f32; MR]], rows: &[[f32; NR]]) -> [[f32; NR]; MR] {
    #[inline(always)]
    fn axpy(acc: &mut [f32; NR], w: f32, c: &[f32; NR]) {
        for j in 0..NR {
            acc[j] += w * c[j];
        }
    }
    let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = ([0.0; NR], [0.0; NR], [0.0; NR], [0.0; NR], [0.0; NR], [0.0; NR]);
    for (w, c) in block.iter().zip(rows) {
        axpy(&mut a0, w[0], c);
        axpy(&mut a1, w[1], c);
        axpy(&mut a2, w[2], c);
        axpy(&mut a3, w[3], c);
        axpy(&mut a4, w[4], c);
        axpy(&mut a5, w[5], c);
    }
    [a0, a1, a2, a3, a4, a5]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, for checking the blocked one.
    fn naive(x: &[f32], cin: usize, h: usize, w: usize, wt: &[f32], cout: usize, k: usize, s: usize, pad: usize) -> Vec<f32> {
        let ho = (h + 2 * pad - k) / s + 1;
        let wo = (w + 2 * pad - k) / s + 1;
        let mut out = vec![0.0; cout * ho * wo];
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut v = 0.0;
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = ((oy * s + ky) as isize - pad as isize, (ox * s + kx) as isize - pad as isize);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    v += wt[((co * cin + ci) * k + ky) * k + kx] * x[(ci * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                    }
                    out[(co * ho + oy) * wo + ox] = v;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn the_blocked_convolution_equals_the_definition_for_every_shape_the_models_use() {
        // (cin, cout, size, kernel, stride, pad): the stem, 3×3 at stride 1 and 2, the 1×1
        // projection, odd sizes and channel counts that are not multiples of the block.
        for &(cin, cout, size, k, s, pad) in &[
            (1, 24, 17, 3, 2, 1),
            (24, 24, 9, 3, 1, 1),
            (24, 48, 9, 3, 2, 1),
            (24, 48, 9, 1, 2, 0),
            (5, 7, 6, 3, 1, 1),
            (3, 13, 5, 1, 1, 0),
            (2, 5, 2, 3, 2, 1),
        ] {
            let x = values(cin * size * size, 1);
            let wt = values(cout * cin * k * k, 2);
            let bias = values(cout, 3);
            let want = naive(&x, cin, size, size, &wt, cout, k, s, pad);
            let packed = PackedWeights::pack(&wt, cout, cin, k);
            let mut scratch = Vec::new();
            let (got, ho, wo) = conv2d(&x, cin, size, size, &packed, &bias, k, s, pad, Epilogue::Linear, &mut scratch);
            let positions = ho * wo;
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let w = w + bias[i / positions];
                assert!((g - w).abs() < 1e-5, "{cin}→{cout} {size}² k{k} s{s}: [{i}] {g} vs {w}");
            }
            let residual = values(got.len(), 4);
            let (fused, _, _) = conv2d(&x, cin, size, size, &packed, &bias, k, s, pad, Epilogue::AddRelu(&residual), &mut scratch);
            for ((f, g), r) in fused.iter().zip(&got).zip(&residual) {
                assert!((f - (g + r).max(0.0)).abs() < 1e-6);
            }
            let (relu, _, _) = conv2d(&x, cin, size, size, &packed, &bias, k, s, pad, Epilogue::Relu, &mut scratch);
            assert!(relu.iter().zip(&got).all(|(a, b)| *a == b.max(0.0)));
        }
    }
}
