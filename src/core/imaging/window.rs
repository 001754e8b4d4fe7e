//! Window: map stored values (Hounsfield units, raw intensities) to [0, 1] through a window
//! (centre, width), the named CT presets, and the percentile bounds used to stretch images that
//! carry no calibrated units. Pure arithmetic shared by preprocessing and display.

use serde::{Deserialize, Serialize};

use crate::decode::{MedImage, Photometric, Window};

/// Named CT windows (width, level in HU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowPreset {
    Lung,
    Mediastinum,
    Bone,
}

impl WindowPreset {
    pub const ALL: [WindowPreset; 3] = [WindowPreset::Lung, WindowPreset::Mediastinum, WindowPreset::Bone];

    /// The preset's name for a menu.
    pub fn label(self) -> &'static str {
        match self {
            WindowPreset::Lung => "Lung",
            WindowPreset::Mediastinum => "Mediastinum",
            WindowPreset::Bone => "Bone",
        }
    }

    pub fn window(self) -> Window {
        match self {
            WindowPreset::Lung => Window { center: -600.0, width: 1500.0 },
            WindowPreset::Mediastinum => Window { center: 40.0, width: 400.0 },
            WindowPreset::Bone => Window { center: 400.0, width: 1800.0 },
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lung" => Some(Self::Lung),
            "mediastinum" | "soft" | "soft-tissue" => Some(Self::Mediastinum),
            "bone" => Some(Self::Bone),
            _ => None,
        }
    }
}

/// How to map values to display intensity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WindowChoice {
    /// Hounsfield → the model's CT window; others → percentile stretch.
    #[default]
    Auto,
    /// The file's own first window (DICOM Window Center/Width), else `Auto`.
    FromFile,
    /// A fixed window in the image's units.
    Custom { center: f32, width: f32 },
}

/// Values → [0, 1] through `window` (linear, clamped), inverted for MONOCHROME1. Full size.
pub fn apply_window(img: &MedImage, window: Window) -> Vec<f32> {
    let lo = window.center - window.width / 2.0;
    let inv = 1.0 / window.width;
    let invert = img.photometric == Photometric::Monochrome1;
    img.pixels
        .iter()
        .map(|&v| {
            let t = ((v - lo) * inv).clamp(0.0, 1.0);
            if invert { 1.0 - t } else { t }
        })
        .collect()
}

/// 8-bit rendering of `img` through `window` at full resolution (for display).
pub fn render(img: &MedImage, window: Window) -> Vec<u8> {
    apply_window(img, window).into_iter().map(to_u8).collect()
}

#[inline]
pub(crate) fn to_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Percentiles (in %) of finite values via a 4096-bin histogram between min and max.
pub fn percentiles(px: &[f32], low: f32, high: f32) -> (f32, f32) {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in px {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo >= hi {
        return if lo.is_finite() { (lo, lo + 1.0) } else { (0.0, 1.0) };
    }
    const BINS: usize = 4096;
    let mut hist = vec![0u64; BINS];
    let k = (BINS - 1) as f32 / (hi - lo);
    let mut n = 0u64;
    for &v in px {
        if v.is_finite()
            && let Some(bin) = hist.get_mut((((v - lo) * k) as usize).min(BINS - 1))
        {
            *bin += 1;
            n += 1;
        }
    }
    let at = |p: f32| -> f32 {
        let target = ((p.clamp(0.0, 100.0) / 100.0) as f64 * n as f64) as u64;
        let mut acc = 0u64;
        for (i, &c) in hist.iter().enumerate() {
            acc += c;
            if acc > target {
                return lo + i as f32 / k;
            }
        }
        hi
    };
    let (a, b) = (at(low), at(high));
    if b > a { (a, b) } else { (lo, hi) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Format, Intensity};

    fn img(w: u32, h: u32, px: Vec<f32>, intensity: Intensity, photometric: Photometric) -> MedImage {
        MedImage { photometric, ..MedImage::new(Format::Png, w, h, px, intensity, 16) }
    }

    #[test]
    fn monochrome1_is_inverted_after_windowing() {
        let m = img(2, 1, vec![0.0, 100.0], Intensity::Modality, Photometric::Monochrome1);
        let v = apply_window(&m, Window { center: 50.0, width: 100.0 });
        assert_eq!(v, vec![1.0, 0.0]);
    }

    #[test]
    fn percentile_stretch_ignores_outliers() {
        let mut px: Vec<f32> = (0..10000).map(|i| (i % 100) as f32).collect();
        px[0] = 10000.0;
        let (lo, hi) = percentiles(&px, 0.5, 99.5);
        assert!(lo < 2.0 && hi > 97.0 && hi < 200.0, "{lo} {hi}");
    }
}
