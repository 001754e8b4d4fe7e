//! Winograd: the 3 × 3, stride-1, pad-1 convolutions (the second convolution of every residual
//! block, about half of each network's multiply-accumulates) by Winograd's minimal filtering
//! F(2×2, 3×3) (Lavin and Gray, 2016): each 2 × 2 block of outputs comes from its 4 × 4 input
//! tile with 16 multiplications per pair of channels instead of 36.
//!
//! The filters are transformed once, at load time (`U = G g Gᵀ`), into 16 matrices
//! `[cout, cin]`; each forward pass transforms the input tiles (`V = Bᵀ d B`), runs the 16
//! products with the register-blocked kernel of [`super::kernel`], and transforms each block of
//! products back (`Y = Aᵀ M A`) as it adds the bias and residual and applies ReLU, so that the
//! 16 products are never written out. The transforms only add and halve, so the result differs
//! from the direct convolution by rounding alone (tests: within 1e-5 on random data, and the
//! networks' logits within 1e-4 of burn's).

use super::kernel::{Epilogue, MR, NR, PackedWeights, block_product, by_channel_blocks, finish};
use super::parallel::in_parts;

/// Values per tile: 4 × 4.
const TILE: usize = 16;

/// 3 × 3 filters in the Winograd domain: `xi[ξ]` holds, packed for the kernel, the matrix
/// `[cout, cin]` of element `ξ = 4·row + column` of every `U = G g Gᵀ`.
#[derive(Debug, Clone)]
pub struct WinogradWeights {
    xi: Vec<PackedWeights>,
    cout: usize,
    cin: usize,
}

impl WinogradWeights {
    /// Transform row-major `[cout, cin, 3, 3]` filters.
    pub fn transform(w: &[f32], cout: usize, cin: usize) -> Self {
        let mut u = vec![vec![0.0; cout * cin]; TILE];
        for (pair, g) in w.chunks_exact(9).take(cout * cin).enumerate() {
            // t = G g (4 × 3), then U = t Gᵀ (4 × 4), G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
            let mut t = [[0.0f32; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                t[0][c] = g0;
                t[1][c] = 0.5 * (g0 + g1 + g2);
                t[2][c] = 0.5 * (g0 - g1 + g2);
                t[3][c] = g2;
            }
            for (r, t) in t.iter().enumerate() {
                let row = [t[0], 0.5 * (t[0] + t[1] + t[2]), 0.5 * (t[0] - t[1] + t[2]), t[2]];
                for (c, v) in row.into_iter().enumerate() {
                    u[4 * r + c][pair] = v;
                }
            }
        }
        WinogradWeights { xi: u.iter().map(|m| PackedWeights::pack(m, cout, cin, 1)).collect(), cout, cin }
    }
}

/// Whether a convolution runs by Winograd: 3 × 3, stride 1, padding 1, and at least 48 input
/// channels. Measured in Chromium against the direct kernel (ms, one image): 48 channels at 16²
/// 0.32 → 0.26, 96 at 8² 0.31 → 0.20, 96 at 12² 0.85 → 0.50, 192 at 6² 0.90 → 0.69; but 24
/// channels at 32² 0.31 → 0.35: with 24 terms per product the transforms cost more than the
/// multiplications they save.
pub fn suits(cin: usize, kernel: usize, stride: usize, pad: usize) -> bool {
    kernel == 3 && stride == 1 && pad == 1 && cin >= 48
}

/// Convolve `x` (`[cin, h, w]`) with the 3 × 3 filters, stride 1, zero padding 1: the output is
/// `[cout, h, w]`. `scratch` holds the transformed input between calls.
pub fn conv3x3(x: &[f32], h: usize, w: usize, weights: &WinogradWeights, bias: &[f32], epilogue: Epilogue, scratch: &mut Vec<f32>) -> Vec<f32> {
    let (cin, cout) = (weights.cin, weights.cout);
    let positions = h * w;
    let mut out = vec![0.0; cout * positions];
    if positions == 0 || cin == 0 || x.len() < cin * positions {
        return out;
    }
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = th * tw;
    let panels = tiles.div_ceil(NR);
    // V[panel][ξ][ci][lane]: for each panel of NR tiles, the 16 matrices the kernel reads.
    // (With ξ outermost, the 16 values of a tile were written a power of two apart at some
    // sizes, all into one cache set: twice as slow.)
    scratch.clear();
    scratch.resize(panels * TILE * cin * NR, 0.0);
    let macs = tiles * TILE * cin * cout;
    in_parts(scratch, TILE * cin * NR, macs, |panel, dst| {
        for (ci, plane) in x.chunks_exact(positions).take(cin).enumerate() {
            // The 4 × 4 input of each of the panel's tiles (rows and columns 2·ty − 1 …
            // 2·ty + 2, zero outside), lane by lane, then transformed for all lanes at once.
            let mut d = [[[0.0f32; NR]; 4]; 4];
            for lane in 0..NR {
                let t = panel * NR + lane;
                if t >= tiles {
                    break;
                }
                let (ty, tx) = (t / tw, t % tw);
                for (r, row) in d.iter_mut().enumerate() {
                    let Some(iy) = (2 * ty + r).checked_sub(1).filter(|&iy| iy < h) else { continue };
                    let src = &plane[iy * w..(iy + 1) * w];
                    for (c, v) in row.iter_mut().enumerate() {
                        if let Some(&s) = (2 * tx + c).checked_sub(1).and_then(|ix| src.get(ix)) {
                            v[lane] = s;
                        }
                    }
                }
            }
            // V = Bᵀ d B, Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
            let v = transform_rows(transpose(transform_rows(d)));
            // v is V transposed: v[column][row].
            for (column, col) in v.iter().enumerate() {
                for (row, lanes) in col.iter().enumerate() {
                    let at = ((4 * row + column) * cin + ci) * NR;
                    if let Some(dst) = dst.get_mut(at..at + NR) {
                        dst.copy_from_slice(lanes);
                    }
                }
            }
        }
    });
    let (v, _) = scratch.as_chunks::<NR>();
    by_channel_blocks(&mut out, cout, positions, macs, |b0, part| {
        let skip = b0 * MR * positions;
        for b in b0..(b0 + part.len().div_ceil(MR * positions)).min(cout.div_ceil(MR)) {
            for panel in 0..panels {
                let m: [[[f32; NR]; MR]; TILE] = std::array::from_fn(|xi| {
                    let rows = v.get((panel * TILE + xi) * cin..(panel * TILE + xi + 1) * cin).unwrap_or_default();
                    block_product(weights.xi[xi].block(b), rows.iter())
                });
                for (i, co) in (b * MR..cout.min(b * MR + MR)).enumerate() {
                    let y = inverse(|xi| &m[xi][i]);
                    let bias = bias.get(co).copied().unwrap_or(0.0);
                    for lane in 0..NR {
                        let t = panel * NR + lane;
                        if t >= tiles {
                            break;
                        }
                        let (oy, ox) = (2 * (t / tw), 2 * (t % tw));
                        for (k, y) in y.iter().enumerate() {
                            let (oy, ox) = (oy + k / 2, ox + k % 2);
                            if oy < h && ox < w {
                                // `at` indexes the whole output (the residual); `part` starts at `skip`.
                                let at = co * positions + oy * w + ox;
                                if let Some(o) = part.get_mut(at.wrapping_sub(skip)) {
                                    *o = finish(y[lane] + bias, epilogue, at);
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    out
}

/// `Bᵀ d` for `NR` tiles at once (each value of the 4 × 4 tile a row of lanes).
#[inline(always)]
fn transform_rows(d: [[[f32; NR]; 4]; 4]) -> [[[f32; NR]; 4]; 4] {
    let [d0, d1, d2, d3] = d;
    let sub = |a: &[[f32; NR]; 4], b: &[[f32; NR]; 4]| -> [[f32; NR]; 4] { std::array::from_fn(|c| std::array::from_fn(|j| a[c][j] - b[c][j])) };
    let add = |a: &[[f32; NR]; 4], b: &[[f32; NR]; 4]| -> [[f32; NR]; 4] { std::array::from_fn(|c| std::array::from_fn(|j| a[c][j] + b[c][j])) };
    [sub(&d0, &d2), add(&d1, &d2), sub(&d2, &d1), sub(&d1, &d3)]
}

#[inline(always)]
fn transpose<T: Copy>(d: [[T; 4]; 4]) -> [[T; 4]; 4] {
    std::array::from_fn(|r| std::array::from_fn(|c| d[c][r]))
}

/// `Y = Aᵀ M A` (2 × 2) for `NR` tiles at once, `M[ξ]` given by `m(ξ)`;
/// `Aᵀ = [1 1 1 0; 0 1 −1 −1]`. Returns `Y` in row-major order.
#[inline(always)]
fn inverse<'a>(m: impl Fn(usize) -> &'a [f32; NR]) -> [[f32; NR]; 4] {
    let add3 = |a: &[f32; NR], b: &[f32; NR], c: &[f32; NR]| -> [f32; NR] { std::array::from_fn(|j| a[j] + b[j] + c[j]) };
    let sub3 = |a: &[f32; NR], b: &[f32; NR], c: &[f32; NR]| -> [f32; NR] { std::array::from_fn(|j| a[j] - b[j] - c[j]) };
    // t = Aᵀ M (2 × 4), column by column.
    let t0: [[f32; NR]; 4] = std::array::from_fn(|c| add3(m(c), m(4 + c), m(8 + c)));
    let t1: [[f32; NR]; 4] = std::array::from_fn(|c| sub3(m(4 + c), m(8 + c), m(12 + c)));
    [add3(&t0[0], &t0[1], &t0[2]), sub3(&t0[1], &t0[2], &t0[3]), add3(&t1[0], &t1[1], &t1[2]), sub3(&t1[1], &t1[2], &t1[3])]
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::values;
    use super::*;

    #[test]
    fn winograd_equals_the_direct_convolution() {
        // Even and odd sizes (a last row or column of tiles half outside), channel counts that
        // are not multiples of the block, more tiles than one panel and fewer.
        for &(cin, cout, h, w) in &[(24, 24, 32, 32), (5, 7, 9, 6), (3, 13, 1, 1), (2, 6, 12, 12), (1, 1, 3, 5), (8, 12, 6, 6)] {
            let x = values(cin * h * w, 1);
            let wt = values(cout * cin * 9, 2);
            let bias = values(cout, 3);
            let residual = values(cout * h * w, 4);
            let direct = PackedWeights::pack(&wt, cout, cin, 3);
            let wino = WinogradWeights::transform(&wt, cout, cin);
            let mut scratch = Vec::new();
            for epilogue in [Epilogue::Linear, Epilogue::Relu, Epilogue::AddRelu(&residual)] {
                let (want, ho, wo) = super::super::kernel::conv2d(&x, cin, h, w, &direct, &bias, 3, 1, 1, epilogue, &mut scratch);
                assert_eq!((ho, wo), (h, w));
                let got = conv3x3(&x, h, w, &wino, &bias, epilogue, &mut scratch);
                assert_eq!(got.len(), want.len());
                for (i, (g, d)) in got.iter().zip(&want).enumerate() {
                    assert!((g - d).abs() < 1e-5, "{cin}→{cout} {h}×{w} {epilogue:?}: [{i}] {g} vs {d}");
                }
            }
        }
    }
}
