//! Synthetic "neither" images for training the input gate (outlier exposure): pink-noise
//! textures with natural-image spectra, random shapes, text-like rows and block-shuffled chest
//! images (their grey levels without their anatomy). No real photograph is used for training;
//! the natural photos in `odd-inputs` stay a held-out check.

use ctxr::train::augment::Rng;

fn stretch(v: &mut [f32]) -> Vec<u8> {
    let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let k = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    v.iter().map(|&x| ((x - lo) * k).round().clamp(0.0, 255.0) as u8).collect()
}

/// Sum of value-noise octaves with amplitude ∝ wavelength^β (β≈1–2.5 spans natural scenes).
fn pink(size: usize, rng: &mut Rng) -> Vec<u8> {
    let beta = rng.range(0.8, 2.5);
    let mut img = vec![0f32; size * size];
    let mut cells = 2usize;
    while cells <= size {
        let amp = (size as f32 / cells as f32).powf(beta / 2.0);
        let grid: Vec<f32> = (0..(cells + 1) * (cells + 1)).map(|_| rng.range(-1.0, 1.0)).collect();
        for y in 0..size {
            let fy = y as f32 * cells as f32 / size as f32;
            let (y0, ty) = (fy.floor() as usize, fy.fract());
            for x in 0..size {
                let fx = x as f32 * cells as f32 / size as f32;
                let (x0, tx) = (fx.floor() as usize, fx.fract());
                let g = |i: usize, j: usize| grid[(j.min(cells)) * (cells + 1) + i.min(cells)];
                let top = g(x0, y0) * (1.0 - tx) + g(x0 + 1, y0) * tx;
                let bot = g(x0, y0 + 1) * (1.0 - tx) + g(x0 + 1, y0 + 1) * tx;
                img[y * size + x] += amp * (top * (1.0 - ty) + bot * ty);
            }
        }
        cells *= 2;
    }
    stretch(&mut img)
}

/// Random rectangles, ellipses and lines over a gradient background.
fn shapes(size: usize, rng: &mut Rng) -> Vec<u8> {
    let (a, b, c) = (rng.range(0.0, 1.0), rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
    let mut img: Vec<f32> = (0..size * size).map(|i| a + 0.5 * (b * (i % size) as f32 + c * (i / size) as f32) / size as f32).collect();
    for _ in 0..(3 + rng.below(12)) {
        let (cx, cy) = (rng.range(0.0, size as f32), rng.range(0.0, size as f32));
        let (rx, ry) = (rng.range(2.0, size as f32 / 2.0), rng.range(2.0, size as f32 / 2.0));
        let val = rng.range(0.0, 1.0);
        let kind = rng.below(3);
        for y in 0..size {
            for x in 0..size {
                let (dx, dy) = ((x as f32 - cx) / rx, (y as f32 - cy) / ry);
                let inside = match kind {
                    0 => dx.abs() < 1.0 && dy.abs() < 1.0,
                    1 => dx * dx + dy * dy < 1.0,
                    _ => (dx - dy).abs() < 0.08,
                };
                if inside {
                    img[y * size + x] = val;
                }
            }
        }
    }
    stretch(&mut img)
}

/// Rows of short dark bars on a light page (documents, screenshots, slides).
fn text(size: usize, rng: &mut Rng) -> Vec<u8> {
    let bg = rng.range(0.6, 1.0);
    let mut img = vec![bg; size * size];
    let line = 3 + rng.below(6);
    let mut y = rng.below(line + 1);
    while y + 2 < size {
        let mut x = rng.below(4);
        while x + 2 < size {
            let w = 1 + rng.below(line);
            if rng.unit() < 0.8 {
                for yy in y..(y + line * 2 / 3).min(size) {
                    for xx in x..(x + w).min(size) {
                        img[yy * size + xx] = rng.range(0.0, 0.3);
                    }
                }
            }
            x += w + 1 + rng.below(3);
        }
        y += line + 1 + rng.below(3);
    }
    stretch(&mut img)
}

/// A chest image cut into blocks and shuffled.
fn shuffled(src: &[u8], size: usize, rng: &mut Rng) -> Vec<u8> {
    let blocks = [2usize, 4, 8][rng.below(3)];
    let bs = size / blocks;
    let mut order: Vec<usize> = (0..blocks * blocks).collect();
    rng.shuffle(&mut order);
    let mut out = vec![0u8; size * size];
    for (dst, &s) in order.iter().enumerate() {
        let (dx, dy, sx, sy) = ((dst % blocks) * bs, (dst / blocks) * bs, (s % blocks) * bs, (s / blocks) * bs);
        for y in 0..bs {
            for x in 0..bs {
                out[(dy + y) * size + dx + x] = src[(sy + y) * size + sx + x];
            }
        }
    }
    out
}

/// `n` synthetic outliers of `size²` (8-bit, as preprocessing outputs), drawing block-shuffled
/// images from `chest` (`size²` each) for a quarter of them.
pub fn generate(n: usize, size: usize, chest: &[&[u8]], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| match i % 4 {
            0 => pink(size, &mut rng),
            1 => shapes(size, &mut rng),
            2 => text(size, &mut rng),
            _ if !chest.is_empty() => {
                let k = rng.below(chest.len());
                shuffled(chest[k], size, &mut rng)
            }
            _ => pink(size, &mut rng),
        })
        .collect()
}
