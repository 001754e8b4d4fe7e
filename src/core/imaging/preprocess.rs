//! Preprocess: the one path from a decoded [`MedImage`] to the model's input, shared by
//! training, the CLI and the browser.
//!
//! 1. **Intensity → [0, 1].** Hounsfield images are windowed (lung W 1500 / L −600 by default;
//!    presets and custom windows on request). Other images (8/16-bit PNG/JPEG, radiograph
//!    DICOM) are stretched between their 0.5th and 99.5th percentiles, which cancels the
//!    gain/offset differences between sources and ignores burnt-in text and dead pixels;
//!    a DICOM window in the file is used instead when the caller asks for it.
//!    MONOCHROME1 (and TIFF WhiteIsZero) is inverted *after* this step.
//!    With [`Tone::Equalized`] the [0, 1] image is then replaced by its grey-level ranks
//!    (histogram equalisation): any monotone grey mapping an exporter applied (window, gamma)
//!    gives the same ranks, so the model cannot tell exporters apart by their grey mapping.
//!    With `mask_to_lungs` everything outside the lungs' region ([`lung_region`]: body wall,
//!    table, field of view) is then set to black, so that neither the anatomy around the lungs
//!    nor a scanner's or exporter's framing of it is left for the model to read.
//! 2. **Resize.** With [`Framing::Letterbox`] the longer side is scaled to the input size with
//!    an antialiasing triangle filter and the shorter side padded symmetrically with black;
//!    with [`Framing::Stretch`] the image fills the square, as the uploaders of the `*-224`
//!    datasets made their films, so a film and its squashed copy give the same input.
//!    [`Letterbox`] records where the image sits so heatmaps map back onto it.
//! 3. **Standardise.** `x = (v − mean) / std` with the manifest's mean and std.
//!
//! It returns the model tensor data and the 8-bit "what the model saw" image.

use serde::{Deserialize, Serialize};

use super::crop::{PixelBox, lung_box, lung_region};
use super::resize::resize;
use super::window::{WindowChoice, WindowPreset, apply_window, percentiles, to_u8};
use crate::decode::{Intensity, MedImage, Window};

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
    /// How a non-square image is fitted into the square input (absent in older manifests:
    /// letterbox).
    #[serde(default)]
    pub framing: Framing,
    /// The grey-level normalisation after windowing (absent in older manifests: none).
    #[serde(default)]
    pub tone: Tone,
    /// Blank everything outside the lungs (see the module's step 1; absent in older manifests:
    /// off).
    #[serde(default)]
    pub mask_to_lungs: bool,
}

/// How a non-square image is fitted into the square model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Aspect kept, black bars on the short side.
    #[default]
    Letterbox,
    /// Scaled to fill the square (aspect not kept).
    Stretch,
}

/// The grey-level normalisation applied after windowing (or the percentile stretch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// The windowed values as they are.
    #[default]
    Windowed,
    /// Histogram-equalised: each pixel becomes the mid-rank of its grey level.
    Equalized,
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
            framing: Framing::Letterbox,
            tone: Tone::Windowed,
            mask_to_lungs: false,
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

    /// The region in pixels of a `w × h` image: `(x0, y0, x1, y1)`, clamped to the image,
    /// end exclusive (empty when the region is).
    pub fn to_pixels(self, w: u32, h: u32) -> (u32, u32, u32, u32) {
        let px = |f: f32, n: u32| ((f.clamp(0.0, 1.0) * n as f32).round() as u32).min(n);
        let (x0, y0) = (px(self.x, w), px(self.y, h));
        (x0, y0, px(self.x + self.width, w).max(x0), px(self.y + self.height, h).max(y0))
    }
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
    let mut cropped = false;
    if cfg.crop_to_lungs
        && let Some(b) = lung_box(&unit, w, h)
    {
        // Window again on the crop: a percentile stretch must not count the field of view.
        let sub = crop_image(img, b);
        window = resolve_window(&sub, cfg, choice)?;
        unit = apply_window(&sub, window);
        source = Region { x: b.x0 as f32 / w as f32, y: b.y0 as f32 / h as f32, width: b.width() as f32 / w as f32, height: b.height() as f32 / h as f32 };
        (w, h) = (b.width(), b.height());
        cropped = true;
    }
    // Found on the windowed grey levels, before equalisation changes them. A crop's lungs are
    // enclosed by body wall on every side; a slice that came already cropped to its lungs (the
    // crop found no enclosed pair) has them touching its edges.
    let region = if cfg.mask_to_lungs { lung_region(&unit, w, h, w, h, cropped) } else { None };
    if cfg.tone == Tone::Equalized {
        equalize(&mut unit);
    }
    if let Some(region) = region {
        unit.iter_mut().zip(&region).for_each(|(v, &m)| *v *= m);
    }
    let (nw, nh) = match cfg.framing {
        Framing::Stretch => (size, size),
        Framing::Letterbox => {
            let scale = size as f64 / w.max(h) as f64;
            (((w as f64 * scale).round() as u32).clamp(1, size), ((h as f64 * scale).round() as u32).clamp(1, size))
        }
    };
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

/// Grey levels of a [0, 1] image, quantised to this many bins for the equalisation.
const EQUALIZE_BINS: usize = 1024;

/// Replace each value by the mid-rank of its bin among all pixels, in [0, 1]: the
/// equalisation is the same for every monotone increasing grey mapping of the image (up to the
/// bins), so exports with other windows or gammas give the same result.
fn equalize(unit: &mut [f32]) {
    let bin = |v: f32| ((v.clamp(0.0, 1.0) * (EQUALIZE_BINS - 1) as f32).round() as usize).min(EQUALIZE_BINS - 1);
    let mut hist = vec![0u64; EQUALIZE_BINS];
    for &v in unit.iter() {
        if let Some(c) = hist.get_mut(bin(v)) {
            *c += 1;
        }
    }
    let n = unit.len().max(1) as f64;
    let mut below = 0u64;
    let table: Vec<f32> = hist
        .iter()
        .map(|&c| {
            let mid = (below as f64 + c as f64 / 2.0) / n;
            below += c;
            mid as f32
        })
        .collect();
    for v in unit.iter_mut() {
        *v = table.get(bin(*v)).copied().unwrap_or(*v);
    }
}

/// The pixels of `img` inside `b` (which lies inside the image), with the image's other facts.
fn crop_image(img: &MedImage, b: PixelBox) -> MedImage {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Format, Photometric};

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
    fn letterbox_keeps_aspect_and_centres() {
        let m = img(100, 50, (0..5000).map(|i| (i % 100) as f32).collect(), Intensity::Raw, Photometric::Monochrome2);
        let p = preprocess(&m, &PreprocessConfig::new(64), WindowChoice::Auto).unwrap();
        assert_eq!(p.letterbox, Letterbox { x: 0, y: 16, width: 64, height: 32, source: Region::FULL });
        assert_eq!(p.seen.len(), 64 * 64);
        assert_eq!(p.seen[0], 0, "padding is black");
        assert!(p.seen[(32 * 64 + 63) as usize] > 240, "right edge of a ramp is bright");
    }

    #[test]
    fn stretch_fills_the_square() {
        let m = img(100, 50, (0..5000).map(|i| (i % 100) as f32).collect(), Intensity::Raw, Photometric::Monochrome2);
        let cfg = PreprocessConfig { framing: Framing::Stretch, ..PreprocessConfig::new(64) };
        let p = preprocess(&m, &cfg, WindowChoice::Auto).unwrap();
        assert_eq!(p.letterbox, Letterbox { x: 0, y: 0, width: 64, height: 64, source: Region::FULL });
        assert!(p.seen[63] > 240 && p.seen[63 * 64 + 63] > 240, "the ramp reaches every row's right edge");
        assert!(p.seen[0] < 10);
    }

    #[test]
    fn equalized_tone_ignores_a_monotone_grey_mapping() {
        // The same content through two exporters: linear, and a gamma with a lifted black.
        let base: Vec<f32> = (0..64 * 64).map(|i| (((i * 37) % 4096) as f32 / 4095.0).powi(2) * 255.0).collect();
        let other: Vec<f32> = base.iter().map(|v| 40.0 + 180.0 * (v / 255.0).powf(0.6)).collect();
        let cfg = PreprocessConfig { tone: Tone::Equalized, percentile_low: 0.0, percentile_high: 100.0, ..PreprocessConfig::new(32) };
        let a = preprocess(&img(64, 64, base, Intensity::Raw, Photometric::Monochrome2), &cfg, WindowChoice::Auto).unwrap();
        let b = preprocess(&img(64, 64, other, Intensity::Raw, Photometric::Monochrome2), &cfg, WindowChoice::Auto).unwrap();
        let worst = a.input.iter().zip(&b.input).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 0.05, "standardised inputs differ by {worst}");
        let plain = PreprocessConfig { tone: Tone::Windowed, ..cfg };
        let base: Vec<f32> = (0..64 * 64).map(|i| (((i * 37) % 4096) as f32 / 4095.0).powi(2) * 255.0).collect();
        let other: Vec<f32> = base.iter().map(|v| 40.0 + 180.0 * (v / 255.0).powf(0.6)).collect();
        let a = preprocess(&img(64, 64, base, Intensity::Raw, Photometric::Monochrome2), &plain, WindowChoice::Auto).unwrap();
        let b = preprocess(&img(64, 64, other, Intensity::Raw, Photometric::Monochrome2), &plain, WindowChoice::Auto).unwrap();
        let worst = a.input.iter().zip(&b.input).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst > 0.5, "without equalisation the gamma shows: {worst}");
    }

    #[test]
    fn the_lung_mask_blanks_the_body_wall_and_keeps_the_lungs() {
        // A full-field slice in Hounsfield units: air, a soft-tissue body, two lungs.
        let (w, h) = (200u32, 200u32);
        let px: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32 - 0.5, (i / w) as f32 / h as f32 - 0.5);
                let body = (x / 0.35).powi(2) + (y / 0.25).powi(2) < 1.0;
                let lung = [-0.15f32, 0.15].iter().any(|lx| ((x - lx) / 0.12).powi(2) + (y / 0.17).powi(2) < 1.0);
                if lung {
                    -850.0
                } else if body {
                    40.0
                } else {
                    -1000.0
                }
            })
            .collect();
        let slice = img(w, h, px, Intensity::Hounsfield, Photometric::Monochrome2);
        let plain = PreprocessConfig { crop_to_lungs: true, framing: Framing::Stretch, tone: Tone::Equalized, ..PreprocessConfig::new(64) };
        let masked = PreprocessConfig { mask_to_lungs: true, ..plain.clone() };
        let (a, b) = (preprocess(&slice, &plain, WindowChoice::Auto).unwrap(), preprocess(&slice, &masked, WindowChoice::Auto).unwrap());
        assert_eq!(a.letterbox, b.letterbox, "the mask does not move the crop");
        // The body wall beside each lung and above the mediastinum is bright unless masked;
        // the lungs' centres stay.
        for at in [32 * 64, 32 * 64 + 63, 64 + 32] {
            assert!(a.seen[at] > 200 && b.seen[at] == 0, "body wall at {at}: {} unmasked, {} masked", a.seen[at], b.seen[at]);
        }
        let (left, right) = (32 * 64 + 16, 32 * 64 + 48);
        assert!(b.seen[left] > 0 && b.seen[left] == a.seen[left] && b.seen[right] == a.seen[right], "the lungs are untouched");
    }
}
