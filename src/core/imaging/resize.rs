//! Resize: separable resampling with a triangle kernel, antialiased when shrinking. The one
//! resampler of the crate, used by the preprocessing, the lung crop and Grad-CAM's upsampling
//! back onto the original image.

/// Separable resampling with a triangle (bilinear) kernel widened by the downscale factor,
/// so shrinking averages every source pixel (antialiased) and enlarging interpolates.
pub fn resize(src: &[f32], w: u32, h: u32, nw: u32, nh: u32) -> Vec<f32> {
    let horiz = resample_axis(src, w as usize, h as usize, nw as usize, true);
    resample_axis(&horiz, nw as usize, h as usize, nh as usize, false)
}

fn weights_for(n_src: usize, n_dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = n_src as f64 / n_dst as f64;
    let support = scale.max(1.0);
    (0..n_dst)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let start = ((center - support).floor().max(0.0)) as usize;
            let end = ((center + support).ceil() as usize).min(n_src);
            let mut ws: Vec<f32> = (start..end)
                .map(|j| {
                    let d = ((j as f64 + 0.5 - center) / support).abs();
                    (1.0 - d).max(0.0) as f32
                })
                .collect();
            let sum: f32 = ws.iter().sum();
            if sum > 0.0 {
                ws.iter_mut().for_each(|x| *x /= sum);
            } else if !ws.is_empty() {
                let k = ((center.floor() as usize).min(n_src - 1)).saturating_sub(start).min(ws.len() - 1);
                if let Some(x) = ws.get_mut(k) {
                    *x = 1.0;
                }
            }
            (start, ws)
        })
        .collect()
}

fn resample_axis(src: &[f32], w: usize, h: usize, n: usize, horizontal: bool) -> Vec<f32> {
    if horizontal {
        let table = weights_for(w, n);
        let mut out = vec![0f32; n * h];
        // `max(1)`: a zero-width source or destination has no taps or no output.
        for (dst, row) in out.chunks_exact_mut(n.max(1)).zip(src.chunks_exact(w.max(1))) {
            for (d, (start, ws)) in dst.iter_mut().zip(&table) {
                *d = ws.iter().zip(row.get(*start..).unwrap_or_default()).map(|(a, b)| a * b).sum();
            }
        }
        out
    } else {
        let table = weights_for(h, n);
        let mut out = vec![0f32; w * n];
        for (dst, (start, ws)) in out.chunks_exact_mut(w.max(1)).zip(&table) {
            for (wt, row) in ws.iter().zip(src.chunks_exact(w.max(1)).skip(*start)) {
                for (d, s) in dst.iter_mut().zip(row) {
                    *d += wt * s;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_averages() {
        let src: Vec<f32> = (0..16).map(|i| if i % 2 == 0 { 0.0 } else { 1.0 }).collect();
        let out = resize(&src, 16, 1, 4, 1);
        for v in out {
            assert!((v - 0.5).abs() < 0.1, "{v}");
        }
    }
}
