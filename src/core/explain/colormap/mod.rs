//! Colour maps for heatmaps and alpha compositing onto a grey image. `viridis` (the default)
//! and `cividis` are perceptually uniform and readable with colour-vision deficiencies;
//! `turbo` and `jet` are offered for people used to them (jet is not perceptually uniform).

mod tables;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    #[default]
    Viridis,
    Cividis,
    Turbo,
    Jet,
}

impl Colormap {
    pub const ALL: [Colormap; 4] = [Colormap::Viridis, Colormap::Cividis, Colormap::Turbo, Colormap::Jet];

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Cividis => "cividis",
            Colormap::Turbo => "turbo",
            Colormap::Jet => "jet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Colour of `t ∈ [0, 1]` (clamped; NaN maps to 0).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        match self {
            Colormap::Viridis => tables::VIRIDIS[(t * 255.0).round() as usize],
            Colormap::Cividis => tables::CIVIDIS[(t * 255.0).round() as usize],
            Colormap::Turbo => {
                // Polynomial approximation of Google's Turbo (A. Mikhailov, Apache-2.0).
                let x = t as f64;
                let r = 0.13572138 + x * (4.61539260 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
                let g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
                let b = 0.10667330 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
                [unit(r as f32), unit(g as f32), unit(b as f32)]
            }
            Colormap::Jet => {
                let f = |c: f32| unit(1.5 - (4.0 * t - c).abs());
                [f(3.0), f(2.0), f(1.0)]
            }
        }
    }
}

/// Heat below this is drawn fully transparent: weak evidence should not tint the image
/// (nor the area outside what the model saw, whose heat is 0).
pub const TRANSPARENT_BELOW: f32 = 0.1;
/// Heat from this up is drawn at the full chosen opacity; in between it fades in linearly.
pub const OPAQUE_FROM: f32 = 0.4;

/// How much of the chosen opacity a heat value `t` gets (0 to 1; NaN counts as 0).
pub fn opacity(t: f32) -> f32 {
    if t.is_nan() {
        return 0.0;
    }
    ((t - TRANSPARENT_BELOW) / (OPAQUE_FROM - TRANSPARENT_BELOW)).clamp(0.0, 1.0)
}

fn unit(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Composite `heat` (values in [0, 1], one per pixel) coloured by `cmap` over the grey `base`
/// with opacity `alpha` ∈ [0, 1], scaled per pixel by [`opacity`] (low heat leaves the image
/// as it is). Returns RGBA (opaque), `base.len() * 4` bytes.
/// Both slices must have the same length; the shorter one bounds the output.
pub fn overlay(base: &[u8], heat: &[f32], cmap: Colormap, alpha: f32) -> Vec<u8> {
    let alpha = if alpha.is_nan() { 0.0 } else { alpha.clamp(0.0, 1.0) };
    let mut out = Vec::with_capacity(base.len() * 4);
    for (&g, &h) in base.iter().zip(heat) {
        let a = alpha * opacity(h);
        let c = cmap.rgb(h);
        let g = f32::from(g);
        for ch in c {
            out.push(((1.0 - a) * g + a * f32::from(ch)).round().clamp(0.0, 255.0) as u8);
        }
        out.push(255);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_references() {
        assert_eq!(Colormap::Viridis.rgb(0.0), [68, 1, 84]);
        assert_eq!(Colormap::Viridis.rgb(1.0), [253, 231, 37]);
        assert_eq!(Colormap::Jet.rgb(0.5), [128, 255, 128]);
        let lum = |c: [u8; 3]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
        for cm in [Colormap::Viridis, Colormap::Cividis] {
            let mut prev = -1.0;
            for i in 0..=20 {
                let l = lum(cm.rgb(i as f32 / 20.0));
                assert!(l > prev, "{} lightness must increase monotonically", cm.name());
                prev = l;
            }
        }
    }

    #[test]
    fn overlay_blends_strong_heat_and_leaves_weak_heat_transparent() {
        let out = overlay(&[100], &[1.0], Colormap::Viridis, 0.5);
        assert_eq!(out, vec![177, 166, 69, 255]);
        assert_eq!(overlay(&[7], &[1.0], Colormap::Jet, 0.0), vec![7, 7, 7, 255]);
        // No heat, or heat below the transparency floor: the image shows unchanged.
        assert_eq!(overlay(&[100, 100], &[0.0, TRANSPARENT_BELOW], Colormap::Viridis, 1.0), vec![100, 100, 100, 255, 100, 100, 100, 255]);
        // Half-way up the fade: half the chosen opacity.
        let mid = (TRANSPARENT_BELOW + OPAQUE_FROM) / 2.0;
        assert!((opacity(mid) - 0.5).abs() < 1e-6 && opacity(OPAQUE_FROM) == 1.0 && opacity(f32::NAN) == 0.0);
    }
}
