//! Training augmentation on the preprocessed 8-bit squares: as in the seed papers, horizontal
//! flip, rotation (±25°), zoom/crop (scale 0.7–1), shift (±5 %), contrast (0.5–1.5); and what
//! tells sources apart, drawn only where a recipe enables it (bars, aspect, export mapping,
//! reconstruction circle, blur and noise). One seeded generator makes every run reproducible.

use crate::model::AugmentConfig;

/// SplitMix64: small, fast, seedable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Augment one `size × size` 8-bit image into [0, 1] floats (`out.len() == size²`).
pub fn augment(src: &[u8], size: usize, cfg: &AugmentConfig, rng: &mut Rng, out: &mut [f32]) {
    let flip = cfg.flip && rng.unit() < 0.5;
    let theta = rng.range(-cfg.rotation_deg, cfg.rotation_deg).to_radians();
    // Crop a fraction `s` of the field of view and enlarge it to the full size.
    let s = rng.range(cfg.scale_min, cfg.scale_max);
    let tx = rng.range(-cfg.shift, cfg.shift) * size as f32;
    let ty = rng.range(-cfg.shift, cfg.shift) * size as f32;
    let contrast = rng.range(cfg.contrast_min, cfg.contrast_max);
    // Squeeze: sample the source more widely along one axis (the content shrinks, bars appear).
    let (mut ax, mut ay) = (1.0f32, 1.0f32);
    if rng.unit() < cfg.squeeze_prob {
        let r = rng.range(cfg.squeeze_min, 1.0).max(1e-3);
        if rng.unit() < 0.5 { ax = 1.0 / r } else { ay = 1.0 / r }
    }
    // Drawn only when enabled, so that recipes without them keep their random sequence.
    if cfg.aspect_max > 1.0 {
        let zoom = 1.0 / rng.range(1.0, cfg.aspect_max);
        if rng.unit() < 0.5 { ax *= zoom } else { ay *= zoom }
    }
    let fov = if cfg.fov_prob > 0.0 && rng.unit() < cfg.fov_prob { Some((rng.range(0.0, 0.5), rng.range(0.47, 0.53) * size as f32)) } else { None };
    let (sin, cos) = theta.sin_cos();
    let c = (size as f32 - 1.0) / 2.0;
    let outside = fov.map_or(0.0, |(grey, _)| grey);
    // With the circle, the source's black background (air outside the body in a lung window)
    // takes the same grey: exporters differ in the level they give it.
    let background = if fov.is_some() { 8 } else { 0 };
    let export = export_mapping(cfg, rng).map(|levels| (levels, content_box(src, size)));
    let degrade = degradation(cfg, rng);
    let get = |x: i64, y: i64| -> f32 {
        if x < 0 || y < 0 || x >= size as i64 || y >= size as i64 {
            return outside;
        }
        let (x, y) = (x as usize, y as usize);
        let v = src[y * size + x];
        match &export {
            _ if v < background => outside,
            Some((levels, content)) if content.contains(x, y) => levels[v as usize],
            _ => v as f32 / 255.0,
        }
    };
    let mut sum = 0.0f32;
    for y in 0..size {
        for x in 0..size {
            let xo = if flip { size - 1 - x } else { x };
            let (u, v) = (xo as f32 - c - tx, y as f32 - c - ty);
            let sx = c + s * ax * (cos * u + sin * v);
            let sy = c + s * ay * (-sin * u + cos * v);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let mut val =
                get(x0, y0) * (1.0 - fx) * (1.0 - fy) + get(x0 + 1, y0) * fx * (1.0 - fy) + get(x0, y0 + 1) * (1.0 - fx) * fy + get(x0 + 1, y0 + 1) * fx * fy;
            if let Some((_, radius)) = fov {
                let (dx, dy) = (x as f32 - c, y as f32 - c);
                if dx * dx + dy * dy > radius * radius {
                    val = 0.0;
                }
            }
            out[y * size + x] = val;
            sum += val;
        }
    }
    if let Some((sigma, noise)) = degrade {
        gaussian_blur(out, size, sigma);
        let mut noise_rng = Rng::new(rng.next_u64());
        for v in out.iter_mut() {
            *v += noise * gaussian(&mut noise_rng);
        }
        sum = out.iter().sum();
    }
    let mean = sum / (size * size) as f32;
    for v in out.iter_mut() {
        *v = ((*v - mean) * contrast + mean).clamp(0.0, 1.0);
    }
}

/// The grey-level table of one export mapping, `None` when the recipe has none. Draws from
/// `rng` only for what is enabled, so that recipes without it keep their random sequence.
fn export_mapping(cfg: &AugmentConfig, rng: &mut Rng) -> Option<[f32; 256]> {
    if cfg.gamma_max <= 1.0 && cfg.export_prob <= 0.0 {
        return None;
    }
    let gamma = if cfg.gamma_max > 1.0 { rng.range(-cfg.gamma_max.ln(), cfg.gamma_max.ln()).exp() } else { 1.0 };
    let (lo, hi) = if cfg.export_prob > 0.0 && rng.unit() < cfg.export_prob { (rng.range(0.0, 0.35), rng.range(0.65, 1.0)) } else { (0.0, 1.0) };
    Some(std::array::from_fn(|v| lo + (hi - lo) * (v as f32 / 255.0).powf(gamma)))
}

/// The blur (pixels) and noise (grey units) of one quality degradation, `None` when the recipe
/// has none or this draw keeps the image as it is. Draws only when enabled.
fn degradation(cfg: &AugmentConfig, rng: &mut Rng) -> Option<(f32, f32)> {
    if cfg.degrade_prob <= 0.0 || rng.unit() >= cfg.degrade_prob {
        return None;
    }
    Some((rng.range(0.0, cfg.blur_max.max(0.0)), rng.range(0.0, cfg.noise_max.max(0.0))))
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut Rng) -> f32 {
    let u = rng.unit().max(1e-7);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * rng.unit()).cos()
}

/// Separable Gaussian blur of a `size × size` image in place, edges clamped; no-op below a
/// standard deviation of 0.2 pixel (its kernel would be a single tap).
fn gaussian_blur(img: &mut [f32], size: usize, sigma: f32) {
    if sigma < 0.2 || size == 0 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let mut kernel: Vec<f32> = (-radius..=radius).map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let last = size as i64 - 1;
    let mut tmp = vec![0.0f32; img.len()];
    for y in 0..size {
        for x in 0..size {
            tmp[y * size + x] = kernel.iter().zip(-radius..).map(|(k, d)| k * img[y * size + (x as i64 + d).clamp(0, last) as usize]).sum();
        }
    }
    for y in 0..size {
        for x in 0..size {
            img[y * size + x] = kernel.iter().zip(-radius..).map(|(k, d)| k * tmp[(y as i64 + d).clamp(0, last) as usize * size + x]).sum();
        }
    }
}

/// Rows and columns of the image inside its letterbox bars (all-black outer rows/columns).
struct ContentBox {
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
}

impl ContentBox {
    fn contains(&self, x: usize, y: usize) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

fn content_box(src: &[u8], size: usize) -> ContentBox {
    let row_lit = |y: usize| src[y * size..(y + 1) * size].iter().any(|&v| v > 0);
    let col_lit = |x: usize| (0..size).any(|y| src[y * size + x] > 0);
    let y0 = (0..size).find(|&y| row_lit(y)).unwrap_or(0);
    let y1 = (0..size).rev().find(|&y| row_lit(y)).map_or(0, |y| y + 1);
    let x0 = (0..size).find(|&x| col_lit(x)).unwrap_or(0);
    let x1 = (0..size).rev().find(|&x| col_lit(x)).map_or(0, |x| x + 1);
    ContentBox { x0, x1, y0, y1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_settings_reproduce_the_image() {
        let size = 16;
        let src: Vec<u8> = (0..size * size).map(|i| (i % 251) as u8).collect();
        let cfg = AugmentConfig::off();
        let mut out = vec![0.0; size * size];
        augment(&src, size, &cfg, &mut Rng::new(1), &mut out);
        for (a, b) in src.iter().zip(&out) {
            assert!((*a as f32 / 255.0 - b).abs() < 1e-5);
        }
    }

    #[test]
    fn zoom_out_with_reconstruction_circle() {
        let size = 64;
        // A white square with a black border (the "air" around a tight crop).
        let src: Vec<u8> = (0..size * size).map(|i| if (8..56).contains(&(i % size)) && (8..56).contains(&(i / size)) { 255 } else { 0 }).collect();
        let cfg = AugmentConfig { scale_min: 1.5, scale_max: 1.5, fov_prob: 1.0, ..AugmentConfig::off() };
        let mut out = vec![0.0; size * size];
        augment(&src, size, &cfg, &mut Rng::new(3), &mut out);
        let at = |x: usize, y: usize| out[y * size + x];
        assert_eq!(at(0, 0), 0.0, "outside the circle is black");
        assert_eq!(at(size - 1, size - 1), 0.0);
        // Inside the circle but outside the shrunken source (and on its black border): one grey.
        let grey = at(size / 2, 3);
        assert!((0.0..=0.5).contains(&grey), "{grey}");
        assert_eq!(at(3, size / 2), grey);
        assert_eq!(at(size / 2, 12), grey, "the source's black border takes the same grey");
        // The centre keeps the content; the 48-pixel square now spans 48 / 1.5 = 32 pixels.
        assert_eq!(at(size / 2, size / 2), 1.0);
        assert_eq!(at(size / 2 - 14, size / 2), 1.0);
        assert_eq!(at(size / 2 - 18, size / 2), grey);
    }

    #[test]
    fn export_mapping_greys_the_content_not_the_bars() {
        let size = 32;
        // Black bars on rows 0..8 and 24..32; content: a black (lung) and white checkerboard.
        let src: Vec<u8> = (0..size * size).map(|i| if (8..24).contains(&(i / size)) && (i + i / size) % 2 == 1 { 255 } else { 0 }).collect();
        let cfg = AugmentConfig { gamma_max: 2.0, export_prob: 1.0, ..AugmentConfig::off() };
        let mut out = vec![0.0; size * size];
        augment(&src, size, &cfg, &mut Rng::new(5), &mut out);
        assert!(out[..8 * size].iter().chain(&out[24 * size..]).all(|&v| v == 0.0), "bars stay black");
        let (black, white) = (out[8 * size], out[8 * size + 1]);
        assert!(black > 0.0 && black <= 0.35, "black content is lifted to lo: {black}");
        assert!((0.65..1.0).contains(&white), "white content drops to hi: {white}");
    }

    #[test]
    fn aspect_jitter_zooms_one_axis_and_never_makes_bars() {
        let size = 32;
        // Vertical stripes 4 px wide: a zoom along x widens them, one along y leaves them.
        let src: Vec<u8> = (0..size * size).map(|i| if (i % size) / 4 % 2 == 0 { 255 } else { 0 }).collect();
        let cfg = AugmentConfig { aspect_max: 1.5, ..AugmentConfig::off() };
        let mut widened = 0;
        for seed in 0..20 {
            let mut out = vec![0.0; size * size];
            augment(&src, size, &cfg, &mut Rng::new(seed), &mut out);
            // A flat image stays flat: the zoom never samples outside the source (no bars).
            let flat = vec![200u8; size * size];
            let mut plain = vec![0.0; size * size];
            augment(&flat, size, &cfg, &mut Rng::new(seed), &mut plain);
            assert!(plain.iter().all(|&v| (v - 200.0 / 255.0).abs() < 1e-4), "seed {seed}: bars appeared");
            let row: Vec<bool> = out[size * size / 2..size * size / 2 + size].iter().map(|&v| v > 0.5).collect();
            let runs = row.windows(2).filter(|w| w[0] != w[1]).count();
            widened += usize::from(runs < 7);
        }
        assert!((3..=17).contains(&widened), "about half the draws zoom along x: {widened} of 20");
    }

    #[test]
    fn degradation_blurs_edges_and_adds_noise_around_the_same_mean() {
        let size = 48;
        // Left half black, right half white: blur softens the edge, noise spreads the flats.
        let src: Vec<u8> = (0..size * size).map(|i| if i % size < size / 2 { 0 } else { 255 }).collect();
        let plain = AugmentConfig::off();
        let run = |cfg: &AugmentConfig, seed| {
            let mut out = vec![0.0; size * size];
            augment(&src, size, cfg, &mut Rng::new(seed), &mut out);
            out
        };
        let row = size * size / 2;
        let sharp = run(&plain, 4);
        // One pixel either side of the edge: sharp is 0 and 1, blurred is in between.
        let (l, r) = (row + size / 2 - 1, row + size / 2);
        assert_eq!((sharp[l], sharp[r]), (0.0, 1.0));
        let blur = AugmentConfig { degrade_prob: 1.0, blur_max: 3.0, ..plain };
        let mut softened = 0;
        for seed in 0..10 {
            let blurred = run(&blur, seed);
            softened += usize::from(blurred[l] > 0.05 && blurred[r] < 0.95);
            // Far from the edge (more than 3 sigma) the blur changes nothing.
            assert!(blurred[row + 1].abs() < 1e-5 && (blurred[row + size - 2] - 1.0).abs() < 1e-5, "seed {seed}");
        }
        assert!(softened >= 7, "sigma is drawn in [0, 3]: {softened} of 10 softened the edge");
        // Noise alone: the grey flats spread but keep their mean.
        let grey = vec![128u8; size * size];
        let mut noisy = vec![0.0; size * size];
        let noise = AugmentConfig { degrade_prob: 1.0, noise_max: 0.1, ..plain };
        let mut spread = 0.0f32;
        for seed in 0..8 {
            augment(&grey, size, &noise, &mut Rng::new(seed), &mut noisy);
            let mean = noisy.iter().sum::<f32>() / noisy.len() as f32;
            assert!((mean - 128.0 / 255.0).abs() < 0.01, "seed {seed}: mean {mean}");
            let sd = (noisy.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / noisy.len() as f32).sqrt();
            assert!(sd <= 0.1 * 1.1, "seed {seed}: sd {sd} above the range");
            spread = spread.max(sd);
        }
        assert!(spread > 0.03, "noise was drawn: largest sd {spread}");
        // Off (probability 0) changes nothing, and keeps the random sequence.
        assert_eq!(run(&AugmentConfig { degrade_prob: 0.0, blur_max: 3.0, noise_max: 0.1, ..plain }, 4), sharp);
    }

    #[test]
    fn same_seed_same_augmentation() {
        let size = 32;
        let src: Vec<u8> = (0..size * size).map(|i| (i * 7 % 256) as u8).collect();
        let (mut a, mut b) = (vec![0.0; size * size], vec![0.0; size * size]);
        augment(&src, size, &AugmentConfig::default(), &mut Rng::new(9), &mut a);
        augment(&src, size, &AugmentConfig::default(), &mut Rng::new(9), &mut b);
        assert_eq!(a, b);
    }
}
