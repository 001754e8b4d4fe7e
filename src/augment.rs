//! Training augmentation as in the seed papers, on the preprocessed 8-bit squares: horizontal
//! flip, rotation (±25°), zoom/crop (scale 0.7–1), shift (±5 %), contrast (0.5–1.5). One
//! seeded generator makes every run reproducible.

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

/// Augmentation ranges.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Probability of squeezing the image along one axis (ratio in [`squeeze_min`, 1]) so that
    /// black letterbox bars appear: inputs that are not square get such bars from
    /// preprocessing, and the model must not learn them as a cue.
    pub squeeze_prob: f32,
    pub squeeze_min: f32,
    pub flip: bool,
    pub rotation_deg: f32,
    pub scale_min: f32,
    pub shift: f32,
    pub contrast_min: f32,
    pub contrast_max: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig { squeeze_prob: 0.5, squeeze_min: 0.7, flip: true, rotation_deg: 25.0, scale_min: 0.7, shift: 0.05, contrast_min: 0.5, contrast_max: 1.5 }
    }
}

/// Augment one `size × size` 8-bit image into [0, 1] floats (`out.len() == size²`).
pub fn augment(src: &[u8], size: usize, cfg: &AugmentConfig, rng: &mut Rng, out: &mut [f32]) {
    let flip = cfg.flip && rng.unit() < 0.5;
    let theta = rng.range(-cfg.rotation_deg, cfg.rotation_deg).to_radians();
    // Crop a fraction `s` of the field of view and enlarge it to the full size.
    let s = rng.range(cfg.scale_min, 1.0);
    let tx = rng.range(-cfg.shift, cfg.shift) * size as f32;
    let ty = rng.range(-cfg.shift, cfg.shift) * size as f32;
    let contrast = rng.range(cfg.contrast_min, cfg.contrast_max);
    // Squeeze: sample the source more widely along one axis (the content shrinks, bars appear).
    let (mut ax, mut ay) = (1.0f32, 1.0f32);
    if rng.unit() < cfg.squeeze_prob {
        let r = rng.range(cfg.squeeze_min, 1.0).max(1e-3);
        if rng.unit() < 0.5 { ax = 1.0 / r } else { ay = 1.0 / r }
    }
    let (sin, cos) = theta.sin_cos();
    let c = (size as f32 - 1.0) / 2.0;
    let get = |x: i64, y: i64| -> f32 {
        if x < 0 || y < 0 || x >= size as i64 || y >= size as i64 { 0.0 } else { src[y as usize * size + x as usize] as f32 / 255.0 }
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
            let val = get(x0, y0) * (1.0 - fx) * (1.0 - fy) + get(x0 + 1, y0) * fx * (1.0 - fy) + get(x0, y0 + 1) * (1.0 - fx) * fy + get(x0 + 1, y0 + 1) * fx * fy;
            out[y * size + x] = val;
            sum += val;
        }
    }
    let mean = sum / (size * size) as f32;
    for v in out.iter_mut() {
        *v = ((*v - mean) * contrast + mean).clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_settings_reproduce_the_image() {
        let size = 16;
        let src: Vec<u8> = (0..size * size).map(|i| (i % 251) as u8).collect();
        let cfg = AugmentConfig { squeeze_prob: 0.0, squeeze_min: 1.0, flip: false, rotation_deg: 0.0, scale_min: 1.0, shift: 0.0, contrast_min: 1.0, contrast_max: 1.0 };
        let mut out = vec![0.0; size * size];
        augment(&src, size, &cfg, &mut Rng::new(1), &mut out);
        for (a, b) in src.iter().zip(&out) {
            assert!((*a as f32 / 255.0 - b).abs() < 1e-5);
        }
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
