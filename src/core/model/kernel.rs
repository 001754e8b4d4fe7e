//! Kernel: 2-D convolution for inference on the CPU, as a register-blocked matrix product that
//! adds the bias, an optional residual and applies ReLU as it stores (one pass over the output
//! instead of three). Plain, safe Rust written so that the compiler keeps the accumulator block
//! in registers and vectorises its rows: with wasm's `simd128` (see `.cargo/config.toml`) each
//! row of the block is two 128-bit vectors, natively SSE/AVX.
//!
//! Layout: images are channel-major `[c, h, w]`. Weights are packed once, `MR` output channels
//! at a time. The product reads its `NR` input positions per reduction index in one of two ways,
//! chosen by measurement (issue 16's profile):
//! - **direct**, when an output row holds at least one block (`wo ≥ NR`: every layer from the
//!   stem down to 8², and 12²): the input is copied once into zero-padded planes split by
//!   stride phase, so that the values one kernel tap needs for neighbouring outputs are
//!   contiguous, and the product reads them in place. This copies about the input's size;
//! - **im2col** for rows shorter than a block (4², 6²): the matrix `[c·k·k, positions]` is
//!   written in panels of `NR` positions. That copies `k²` times the input (as much time as the
//!   product itself at 64² and 32²), but these images are small and the panels pack positions
//!   densely, where a direct walk would spend a quarter of its lanes on padding and stream the
//!   weights, which dominate at this size, once more per block.
//!
//! The 3 × 3 stride-1 convolutions with many channels go through [`super::winograd`] instead,
//! which runs this module's block product on transformed tiles.

use super::parallel;

/// Output channels per block (6 divides every width the recipes use: 24, 48, 96, 192), and
/// 6 rows × 2 vectors of accumulators fit the 16 vector registers of x86-64 and of wasm engines.
pub(super) const MR: usize = 6;
/// Output positions per block: two 128-bit vectors.
pub(super) const NR: usize = 8;

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

    /// The weights of output channels `b·MR … b·MR + MR − 1`, one row of `MR` per reduction
    /// index (empty past the last block).
    pub(super) fn block(&self, b: usize) -> &[[f32; MR]] {
        let (rows, _) = self.data.as_chunks::<MR>();
        rows.get(b * self.reduction..(b + 1) * self.reduction).unwrap_or_default()
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
/// side. Returns the output `[cout, ho, wo]`, `ho` and `wo`. `scratch` holds the planes or the
/// im2col matrix between calls so that a forward pass allocates it once.
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
    let output = Output { cout: weights.cout, positions, bias, epilogue };
    if wo >= NR {
        let planes = Planes::fill(x, cin, h, w, kernel, stride, pad, ho, wo, scratch);
        direct_product(weights, &planes, scratch, ho, wo, &output, &mut out);
    } else {
        im2col_panels(x, cin, h, w, kernel, stride, pad, ho, wo, scratch);
        let (rows, _) = scratch.as_chunks::<NR>();
        matmul(weights, rows, &output, &mut out);
    }
    (out, ho, wo)
}

/// Where and how a product writes its output `[cout, positions]`.
struct Output<'a> {
    cout: usize,
    positions: usize,
    bias: &'a [f32],
    epilogue: Epilogue<'a>,
}

impl Output<'_> {
    /// Store the `MR × NR` block of accumulators of channel block `b` at positions `p0 …
    /// p0 + width − 1` (`width` < `NR` only for im2col's last panel) into `out`, the part of
    /// the output that starts at channel block `b0` ([`by_channel_blocks`]).
    #[inline(always)]
    fn write(&self, acc: &[[f32; NR]; MR], b: usize, p0: usize, width: usize, out: &mut [f32], b0: usize) {
        let skip = b0 * MR * self.positions;
        for (i, a) in acc.iter().enumerate() {
            let co = b * MR + i;
            if co >= self.cout {
                break;
            }
            // `start` indexes the whole output (the residual); `local`, this part of it.
            let start = co * self.positions + p0;
            let local = start.wrapping_sub(skip);
            let bias = self.bias.get(co).copied().unwrap_or(0.0);
            if width == NR {
                if let Some(dst) = out.get_mut(local..).and_then(|d| d.first_chunk_mut::<NR>()) {
                    store(dst, a, bias, self.epilogue, start);
                }
            } else if let Some(dst) = out.get_mut(local..local.saturating_add(width)) {
                for (j, (d, v)) in dst.iter_mut().zip(a).enumerate() {
                    *d = finish(v + bias, self.epilogue, start + j);
                }
            }
        }
    }

    /// Store the lanes of a block that are outputs, each at its position (`out` as in
    /// [`Self::write`]).
    fn write_lanes(&self, acc: &[[f32; NR]; MR], b: usize, lanes: &[Option<usize>; NR], out: &mut [f32], b0: usize) {
        let skip = b0 * MR * self.positions;
        for (i, a) in acc.iter().enumerate() {
            let co = b * MR + i;
            if co >= self.cout {
                break;
            }
            let bias = self.bias.get(co).copied().unwrap_or(0.0);
            for (v, p) in a.iter().zip(lanes) {
                let Some(at) = p.map(|p| co * self.positions + p) else { continue };
                if let Some(dst) = out.get_mut(at.wrapping_sub(skip)) {
                    *dst = finish(v + bias, self.epilogue, at);
                }
            }
        }
    }
}

/// The input of a direct convolution: zero-padded planes, one per (row phase, column phase,
/// channel), so that output `(oy, ox)` with kernel tap `(ky, kx)` reads plane phase
/// `(ky % s, kx % s)` at row `oy + ky / s`, column `ox + kx / s`. The offset of a tap from its
/// output is then the same for every output: `NR` neighbouring outputs read `NR` contiguous
/// values, and the product reads them in place.
struct Planes {
    /// Columns per plane: `wo` plus the kernel's reach in phase columns.
    cols: usize,
    /// Offset of each reduction index `(c · k + ky) · k + kx` from its output's position
    /// `oy · cols + ox`.
    taps: Vec<usize>,
}

impl Planes {
    /// Fill `buf` with the planes of `x` (`[cin, h, w]`).
    #[allow(clippy::too_many_arguments)]
    fn fill(x: &[f32], cin: usize, h: usize, w: usize, k: usize, s: usize, pad: usize, ho: usize, wo: usize, buf: &mut Vec<f32>) -> Self {
        let phases = s.min(k);
        let reach = (k - 1) / s;
        let (rows, cols) = (ho + reach, wo + reach);
        buf.clear();
        // NR more: the flat walk's last block reads up to NR − 1 values past the last plane.
        buf.resize(phases * phases * cin * rows * cols + NR, 0.0);
        for ry in 0..phases {
            for rx in 0..phases {
                // Plane column i holds input column i·s + rx − pad: those inside [0, w).
                let lo = pad.saturating_sub(rx).div_ceil(s).min(cols);
                let hi = if w + pad > rx { ((w + pad - rx - 1) / s + 1).min(cols) } else { 0 }.max(lo);
                if lo == hi {
                    continue;
                }
                let first = lo * s + rx - pad;
                for (c, plane) in x.chunks_exact(h * w).take(cin).enumerate() {
                    let dst_plane = ((ry * phases + rx) * cin + c) * rows;
                    for j in 0..rows {
                        // Plane row j holds input row j·s + ry − pad.
                        let iy = j * s + ry;
                        if iy < pad || iy - pad >= h {
                            continue;
                        }
                        let src = &plane[(iy - pad) * w..(iy - pad + 1) * w];
                        let start = (dst_plane + j) * cols;
                        let dst = &mut buf[start + lo..start + hi];
                        if s == 1 {
                            dst.copy_from_slice(&src[first..first + (hi - lo)]);
                        } else {
                            dst.iter_mut().zip(src[first..].iter().step_by(s)).for_each(|(d, v)| *d = *v);
                        }
                    }
                }
            }
        }
        let mut taps = Vec::with_capacity(cin * k * k);
        for c in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    taps.push(((((ky % s) * phases + kx % s) * cin + c) * rows + ky / s) * cols + kx / s);
                }
            }
        }
        Planes { cols, taps }
    }
}

/// The product of a direct convolution, in blocks of `NR` outputs by `MR` channels, the taps
/// read straight from the planes. When an output row is a whole number of blocks, the blocks
/// walk the rows; otherwise they walk the planes' grid `oy · cols + ox` flat, so that a block
/// may span two rows: its lanes at `ox ≥ wo` (the kernel's reach, 2 columns in 14 at 12²) are
/// computed and not stored, which costs less than an im2col copy of the input.
fn direct_product(weights: &PackedWeights, planes: &Planes, buf: &[f32], ho: usize, wo: usize, output: &Output, out: &mut [f32]) {
    let (blocks, _) = weights.data.as_chunks::<MR>();
    let cols = planes.cols;
    let block = |q: usize, w: &[[f32; MR]]| {
        let src = buf.get(q..).unwrap_or_default();
        // A tap out of range cannot happen (the planes cover every output's reach, plus NR);
        // reading zeros there keeps the loop free of panics and of an early exit.
        block_product(w, planes.taps.iter().map(|&o| src.get(o..).and_then(|c| c.first_chunk::<NR>()).unwrap_or(&[0.0; NR])))
    };
    let macs = output.positions * output.cout * weights.reduction;
    by_channel_blocks(out, output.cout, output.positions, macs, |b0, out| {
        let count = out.len().div_ceil(MR * output.positions);
        let group = || blocks.chunks_exact(weights.reduction).enumerate().skip(b0).take(count);
        if wo.is_multiple_of(NR) {
            for oy in 0..ho {
                for ox in (0..wo).step_by(NR) {
                    for (b, w) in group() {
                        output.write(&block(oy * cols + ox, w), b, oy * wo + ox, NR, out, b0);
                    }
                }
            }
            return;
        }
        for q in (0..ho * cols).step_by(NR) {
            // Where each lane's output goes, if it is one.
            let lanes: [Option<usize>; NR] = std::array::from_fn(|j| {
                let (oy, ox) = ((q + j) / cols, (q + j) % cols);
                (oy < ho && ox < wo).then_some(oy * wo + ox)
            });
            let row = q % cols + NR <= wo;
            for (b, w) in group() {
                let acc = block(q, w);
                if row {
                    output.write(&acc, b, (q / cols) * wo + q % cols, NR, out, b0);
                } else {
                    output.write_lanes(&acc, b, &lanes, out, b0);
                }
            }
        }
    });
}

/// Run `product(b0, part)` over the output `out` (`[cout, positions]`) cut into one part of
/// whole channel blocks per thread, `part` starting at block `b0`: each thread keeps the
/// single-threaded loop order and reads the input once.
pub(super) fn by_channel_blocks(out: &mut [f32], cout: usize, positions: usize, macs: usize, product: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let per = cout.div_ceil(MR).div_ceil(parallel::threads()).max(1);
    parallel::in_parts(out, per * MR * positions, macs, |g, part| product(g * per, part));
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
fn matmul(weights: &PackedWeights, panels: &[[f32; NR]], output: &Output, out: &mut [f32]) {
    let (blocks, _) = weights.data.as_chunks::<MR>();
    let macs = output.positions * output.cout * weights.reduction;
    by_channel_blocks(out, output.cout, output.positions, macs, |b0, out| {
        let count = out.len().div_ceil(MR * output.positions);
        for (panel, rows) in panels.chunks_exact(weights.reduction).enumerate() {
            let p0 = panel * NR;
            let width = output.positions.saturating_sub(p0).min(NR);
            for (b, block) in blocks.chunks_exact(weights.reduction).enumerate().skip(b0).take(count) {
                output.write(&block_product(block, rows.iter()), b, p0, width, out, b0);
            }
        }
    });
}

/// ReLU by the sign bit: negative values (and −0) become +0. A comparison (`v > 0`) or
/// `f32::max` left the ReLU-only store scalar in wasm (a libm call per value for `max`); bit
/// operations vectorise everywhere. No NaN reaches a model (the decoders replace non-finite
/// samples), so NaN's sign does not matter.
#[inline(always)]
fn relu(v: f32) -> f32 {
    let bits = v.to_bits();
    f32::from_bits(bits & !(((bits as i32) >> 31) as u32))
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

/// One output value `v` (bias included) at index `at` of the output, finished.
#[inline(always)]
pub(super) fn finish(v: f32, epilogue: Epilogue, at: usize) -> f32 {
    match epilogue {
        Epilogue::Linear => v,
        Epilogue::Relu => relu(v),
        Epilogue::AddRelu(res) => relu(v + res.get(at).copied().unwrap_or(0.0)),
    }
}

/// `Σ_r w[r][i] · rows[r][j]` for the `MR × NR` block (`rows` yields one `NR`-row per `r`). The rows of the accumulator are named
/// locals, not an indexed array, so that they stay in vector registers through the loop.
#[inline(always)]
pub(super) fn block_product<'a>(block: &[[f32; MR]], rows: impl Iterator<Item = &'a [f32; NR]>) -> [[f32; NR]; MR] {
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
pub(super) mod tests {
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

    /// `n` values in [−0.5, 0.5) from a fixed generator (the kernel tests' data, and
    /// [`super::super::winograd`]'s).
    pub(in super::super) fn values(n: usize, seed: u32) -> Vec<f32> {
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
        // projection, odd sizes and channel counts that are not multiples of the block. Output
        // rows of 8 or 16 take the direct path by rows, of 9 to 12 by the flat walk, of fewer
        // than 8 im2col.
        for &(cin, cout, size, k, s, pad) in &[
            (1, 24, 17, 3, 2, 1),
            (24, 24, 9, 3, 1, 1),
            (24, 48, 9, 3, 2, 1),
            (24, 48, 9, 1, 2, 0),
            (5, 7, 6, 3, 1, 1),
            (3, 13, 5, 1, 1, 0),
            (2, 5, 2, 3, 2, 1),
            (1, 24, 32, 3, 2, 1),
            (24, 24, 16, 3, 1, 1),
            (24, 48, 16, 3, 2, 1),
            (24, 48, 16, 1, 2, 0),
            (3, 7, 8, 3, 1, 1),
            (2, 5, 15, 3, 2, 1),
            (4, 6, 16, 1, 1, 0),
            (2, 3, 8, 5, 1, 2),
            (2, 3, 24, 5, 3, 2),
            (5, 7, 12, 3, 1, 1),
            (6, 12, 24, 3, 2, 1),
            (4, 6, 9, 1, 1, 0),
            (1, 24, 19, 3, 2, 1),
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
