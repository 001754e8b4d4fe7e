//! Preprocess: the one path from a decoded [`MedImage`] to the model's input, shared by
//! training, the CLI and the browser.
//!
//! 1. **Intensity → [0, 1].** Hounsfield images are windowed (lung W 1500 / L −600 by default;
//!    presets and custom windows on request). Other images (8/16-bit PNG/JPEG, radiograph
//!    DICOM) are stretched between their 0.5th and 99.5th percentiles, which cancels the
//!    gain/offset differences between sources and ignores burnt-in text and dead pixels;
//!    a DICOM window in the file is used instead when the caller asks for it.
//!    MONOCHROME1 (and TIFF WhiteIsZero) is inverted *after* this step.
//! 2. **Resize, aspect preserved.** The longer side is scaled to the input size with an
//!    antialiasing triangle filter; the shorter side is padded symmetrically with black.
//!    [`Letterbox`] records where the image sits so heatmaps map back onto it.
//! 3. **Standardise.** `x = (v − mean) / std` with the manifest's mean and std.
//!
//! It returns the model tensor data and the 8-bit "what the model saw" image.

use serde::{Deserialize, Serialize};

use crate::decode::{Intensity, MedImage, Photometric, Window};

/// Named CT windows (width, level in HU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowPreset {
    Lung,
    Mediastinum,
    Bone,
}

impl WindowPreset {
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

/// Preprocessing parameters; part of each model's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Side of the square model input in pixels.
    pub input_size: u32,
    /// Window applied to Hounsfield images in `Auto` mode.
    pub ct_window: Window,
    /// Percentiles for the stretch of non-HU images.
    pub percentile_low: f32,
    pub percentile_high: f32,
    /// Standardisation of the [0, 1] image.
    pub mean: f32,
    pub std: f32,
    /// Crop CT slices to the lungs before resizing (see [`crate::crop`]). Off for radiographs.
    #[serde(default)]
    pub crop_to_lungs: bool,
}

impl PreprocessConfig {
    pub fn new(input_size: u32) -> Self {
        PreprocessConfig {
            input_size,
            ct_window: WindowPreset::Lung.window(),
            percentile_low: 0.5,
            percentile_high: 99.5,
            mean: 0.5,
            std: 0.25,
            crop_to_lungs: false,
        }
    }
}

/// Where the resized image sits inside the square input, and which part of the original
/// image it shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Letterbox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// The region of the original image that was resized (the lung crop, or all of it).
    pub source: Region,
}

/// A rectangle as fractions of an image's width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Region {
    pub const FULL: Region = Region { x: 0.0, y: 0.0, width: 1.0, height: 1.0 };
}

/// The model's view of one image.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    pub size: u32,
    /// Standardised input, `size × size`, row-major.
    pub input: Vec<f32>,
    /// The same image as 8-bit grey ("what the model saw").
    pub seen: Vec<u8>,
    pub letterbox: Letterbox,
    /// The intensity mapping that was applied (in the image's units).
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    #[error("the image has no pixels")]
    Empty,
    #[error("the image buffer holds {got} values for {width}×{height} pixels")]
    BadBuffer { width: u32, height: u32, got: usize },
    #[error("window width must be positive, got {0}")]
    BadWindow(f32),
    #[error("input size must be between 8 and 2048, got {0}")]
    BadSize(u32),
}

/// The window that `choice` selects for `img` (for percentile mode: the stretch bounds).
pub fn resolve_window(img: &MedImage, cfg: &PreprocessConfig, choice: WindowChoice) -> Result<Window, PreprocessError> {
    let w = match choice {
        WindowChoice::Custom { center, width } => Window { center, width },
        WindowChoice::FromFile => match img.windows.first() {
            Some(w) => *w,
            None => return resolve_window(img, cfg, WindowChoice::Auto),
        },
        WindowChoice::Auto => {
            if img.intensity == Intensity::Hounsfield {
                cfg.ct_window
            } else {
                let (lo, hi) = percentiles(&img.pixels, cfg.percentile_low, cfg.percentile_high);
                let width = (hi - lo).max(1e-6);
                Window { center: lo + width / 2.0, width }
            }
        }
    };
    if !(w.width > 0.0 && w.width.is_finite() && w.center.is_finite()) {
        return Err(PreprocessError::BadWindow(w.width));
    }
    Ok(w)
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
fn to_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Run the whole preprocessing for the model.
pub fn preprocess(img: &MedImage, cfg: &PreprocessConfig, choice: WindowChoice) -> Result<Preprocessed, PreprocessError> {
    let (w, h) = (img.width, img.height);
    if w == 0 || h == 0 || img.pixels.is_empty() {
        return Err(PreprocessError::Empty);
    }
    if img.pixels.len() != (w as usize) * (h as usize) {
        return Err(PreprocessError::BadBuffer { width: w, height: h, got: img.pixels.len() });
    }
    let size = cfg.input_size;
    if !(8..=2048).contains(&size) {
        return Err(PreprocessError::BadSize(size));
    }
    let mut window = resolve_window(img, cfg, choice)?;
    let mut unit = apply_window(img, window);
    let (mut w, mut h) = (w, h);
    let mut source = Region::FULL;
    if cfg.crop_to_lungs
        && let Some(b) = crate::crop::lung_box(&unit, w, h)
    {
        // Window again on the crop: a percentile stretch must not count the field of view.
        let sub = crop_image(img, b);
        window = resolve_window(&sub, cfg, choice)?;
        unit = apply_window(&sub, window);
        source = Region {
            x: b.x0 as f32 / w as f32,
            y: b.y0 as f32 / h as f32,
            width: b.width() as f32 / w as f32,
            height: b.height() as f32 / h as f32,
        };
        (w, h) = (b.width(), b.height());
    }
    let scale = size as f64 / w.max(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).clamp(1, size);
    let nh = ((h as f64 * scale).round() as u32).clamp(1, size);
    let resized = resize(&unit, w, h, nw, nh);
    let (ox, oy) = ((size - nw) / 2, (size - nh) / 2);
    let mut canvas = vec![0f32; (size * size) as usize];
    let canvas_rows = canvas.chunks_exact_mut(size as usize).skip(oy as usize);
    for (dst, src) in canvas_rows.zip(resized.chunks_exact(nw as usize)) {
        dst.iter_mut().skip(ox as usize).zip(src).for_each(|(d, &s)| *d = s);
    }
    let seen = canvas.iter().map(|&v| to_u8(v)).collect();
    let inv_std = 1.0 / cfg.std;
    let input = canvas.iter().map(|&v| (v - cfg.mean) * inv_std).collect();
    Ok(Preprocessed { size, input, seen, letterbox: Letterbox { x: ox, y: oy, width: nw, height: nh, source }, window })
}

/// The pixels of `img` inside `b` (which lies inside the image), with the image's other facts.
fn crop_image(img: &MedImage, b: crate::crop::PixelBox) -> MedImage {
    let w = img.width as usize;
    let mut pixels = Vec::with_capacity(b.width() as usize * b.height() as usize);
    for y in b.y0 as usize..b.y1 as usize {
        if let Some(row) = img.pixels.get(y * w + b.x0 as usize..y * w + b.x1 as usize) {
            pixels.extend_from_slice(row);
        }
    }
    MedImage {
        width: b.width(),
        height: b.height(),
        pixels,
        format: img.format,
        intensity: img.intensity,
        bits_stored: img.bits_stored,
        source_channels: img.source_channels,
        float_samples: img.float_samples,
        photometric: img.photometric,
        windows: img.windows.clone(),
        modality: img.modality.clone(),
        body_part: img.body_part.clone(),
        frame: img.frame,
        frames: img.frames,
        dicom: None,
        replaced_non_finite: img.replaced_non_finite,
        colourfulness: img.colourfulness,
    }
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
    use crate::decode::{Format, MedImage};

    fn img(w: u32, h: u32, px: Vec<f32>, intensity: Intensity, photometric: Photometric) -> MedImage {
        MedImage { photometric, ..MedImage::new(Format::Png, w, h, px, intensity, 16) }
    }

    #[test]
    fn lung_window_maps_air_to_black_and_soft_tissue_near_white() {
        let m = img(2, 1, vec![-1350.0, 150.0], Intensity::Hounsfield, Photometric::Monochrome2);
        let w = resolve_window(&m, &PreprocessConfig::new(32), WindowChoice::Auto).unwrap();
        assert_eq!(w, Window { center: -600.0, width: 1500.0 });
        assert_eq!(apply_window(&m, w), vec![0.0, 1.0]);
    }

    #[test]
    fn monochrome1_is_inverted_after_windowing() {
        let m = img(2, 1, vec![0.0, 100.0], Intensity::Modality, Photometric::Monochrome1);
        let v = apply_window(&m, Window { center: 50.0, width: 100.0 });
        assert_eq!(v, vec![1.0, 0.0]);
    }

    #[test]
    fn letterbox_keeps_aspect_and_centres() {
        let m = img(100, 50, (0..5000).map(|i| (i % 100) as f32).collect(), Intensity::Raw, Photometric::Monochrome2);
        let p = preprocess(&m, &PreprocessConfig::new(64), WindowChoice::Auto).unwrap();
        assert_eq!(p.letterbox, Letterbox { x: 0, y: 16, width: 64, height: 32, source: Region::FULL });
        assert_eq!(p.seen.len(), 64 * 64);
        assert_eq!(p.seen[0], 0, "padding is black");
        assert!(p.seen[(32 * 64 + 63) as usize] > 240, "right edge of a ramp is bright");
    }

    #[test]
    fn downscale_averages() {
        let src: Vec<f32> = (0..16).map(|i| if i % 2 == 0 { 0.0 } else { 1.0 }).collect();
        let out = resize(&src, 16, 1, 4, 1);
        for v in out {
            assert!((v - 0.5).abs() < 0.1, "{v}");
        }
    }

    #[test]
    fn percentile_stretch_ignores_outliers() {
        let mut px: Vec<f32> = (0..10000).map(|i| (i % 100) as f32).collect();
        px[0] = 10000.0;
        let (lo, hi) = percentiles(&px, 0.5, 99.5);
        assert!(lo < 2.0 && hi > 97.0 && hi < 200.0, "{lo} {hi}");
    }
}
