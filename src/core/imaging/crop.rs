//! Lung crop: find the two lungs in a windowed CT slice and return the box around them, so
//! that a full-field scan (body, table, air, the scanner's circular field of view) and a
//! slice that a paper or a dataset already cropped to the chest reach the model framed alike.
//!
//! The CT training sources are mostly tight crops of the thorax while MosMed (and any slice
//! a user exports from a viewer) shows the whole field of view; the first CT models learnt
//! that framing and scored worse than chance on MosMed. The method is deliberately simple and
//! deterministic, on a copy of at most 128 px per side:
//!
//! 1. Otsu's threshold over the grey levels above near-black (the area outside the field of
//!    view and letterbox padding are ignored), splitting air/lung from soft tissue/bone.
//! 2. Dark pixels, opened with a 3×3 structuring element to drop vessels' gaps and noise.
//! 3. Dark regions connected to the image border are outside air; the remaining enclosed
//!    dark regions are the lungs (and airways).
//! 4. Their bounding box, widened by 8 % per side, is accepted only when it is large (≥ 8 % of
//!    the image) and spans the centre column (two lungs, not one); otherwise `None` and the
//!    whole image is used.
//!
//! [`lung_mask`] returns the same dark regions as a mask (with the holes inside them, where
//! lesions brighter than lung lie, filled), so the evaluation can say whether a heatmap's peak
//! lies on the lungs. [`lung_region`] closes and widens that mask into soft weights, so the
//! preprocessing can blank everything but the lungs (body wall, table, field of view) when a
//! recipe asks for it.

/// A box in pixel coordinates of the image it was found in (`x1`, `y1` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl PixelBox {
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
}

/// Side of the working copy.
const WORK: u32 = 128;
/// Grey levels (of 256) treated as "outside the picture" and left out of the threshold.
const NEAR_BLACK: usize = 24;

/// The lungs' box in `unit` (`w × h` values in [0, 1], row-major), or `None` when no pair
/// of enclosed lungs is found.
pub fn lung_box(unit: &[f32], w: u32, h: u32) -> Option<PixelBox> {
    if w < 16 || h < 16 || unit.len() != (w as usize) * (h as usize) {
        return None;
    }
    let (small, sw, sh, scale) = working_copy(unit, w, h);
    let (sw, sh) = (sw as usize, sh as usize);
    let grey: Vec<u8> = small.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();

    let mut hist = [0u64; 256];
    for &g in &grey {
        if let Some(c) = hist.get_mut(g as usize) {
            *c += 1;
        }
    }
    hist.iter_mut().take(NEAR_BLACK).for_each(|c| *c = 0);
    let t = otsu(&hist)?;

    let dark: Vec<bool> = grey.iter().map(|&g| g <= t).collect();
    let dark = dilate(&erode(&dark, sw, sh), sw, sh);

    // The border-connected dark pixels are outside air; what stays dark is enclosed.
    let outside = flood_from_border(&dark, sw, sh);

    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for (i, (&d, &o)) in dark.iter().zip(&outside).enumerate() {
        if d && !o {
            let (x, y) = (i % sw, i / sw);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    if (((x1 - x0) * (y1 - y0)) as f64) < 0.08 * (sw * sh) as f64 {
        return None;
    }
    if !(x0 as f64 <= 0.45 * sw as f64 && x1 as f64 >= 0.55 * sw as f64) {
        return None;
    }
    let (mx, my) = ((x1 - x0) as f64 * 0.08, (y1 - y0) as f64 * 0.08);
    let to_full = |v: f64, n: u32| -> u32 { ((v / scale).round().max(0.0) as u32).min(n) };
    let b = PixelBox { x0: to_full(x0 as f64 - mx, w), y0: to_full(y0 as f64 - my, h), x1: to_full(x1 as f64 + mx, w), y1: to_full(y1 as f64 + my, h) };
    (b.x1 > b.x0 + 8 && b.y1 > b.y0 + 8).then_some(b)
}

/// `unit` shrunk to at most [`WORK`] px per side: (values, width, height, scale).
fn working_copy(unit: &[f32], w: u32, h: u32) -> (Vec<f32>, u32, u32, f64) {
    let scale = (WORK as f64 / w.max(h) as f64).min(1.0);
    let sw = ((w as f64 * scale).round() as u32).max(1);
    let sh = ((h as f64 * scale).round() as u32).max(1);
    (super::resize::resize(unit, w, h, sw, sh), sw, sh, scale)
}

/// The share of `unit` (`w × h` values in [0, 1], a windowed slice) covered by enclosed lung,
/// measured like [`lung_box`] on a copy of at most 128 px per side: near 0 above the apices
/// and below the bases, largest at mid-lung. A study uses it to pick the slices the model
/// was trained on (lung-level slices) out of a whole scan.
pub fn lung_fraction(unit: &[f32], w: u32, h: u32) -> f32 {
    if w < 16 || h < 16 || unit.len() != (w as usize) * (h as usize) {
        return 0.0;
    }
    let (small, sw, sh, _) = working_copy(unit, w, h);
    match lung_mask(&small, sw as usize, sh as usize, true) {
        Some(m) => m.iter().filter(|&&l| l).count() as f32 / m.len().max(1) as f32,
        None => 0.0,
    }
}

/// Closing radius of [`lung_region`] in working-copy pixels: a bite this deep into the lung's
/// outline (a consolidation against the chest wall, brighter than lung, is not dark and not
/// enclosed by lung) is filled back in.
const REGION_CLOSE: usize = 5;
/// Margin added around [`lung_region`] in working-copy pixels, so the pleura and the
/// subpleural band, where COVID-19 lesions typically lie, stay visible.
const REGION_MARGIN: usize = 2;

/// The lungs of `unit` (`w × h` values in [0, 1], a windowed slice, not equalised) as weights
/// in [0, 1] on an `out_w × out_h` grid, for masking the model's input: [`lung_mask`] (with
/// `enclosed_only` as there) on a copy of at most 128 px per side, closed by [`REGION_CLOSE`]
/// px, widened by [`REGION_MARGIN`] px and resized (so its edge is soft). `None` when no lung
/// is found or it covers under 10 % of the image (then nothing should be masked).
pub fn lung_region(unit: &[f32], w: u32, h: u32, out_w: u32, out_h: u32, enclosed_only: bool) -> Option<Vec<f32>> {
    if w < 16 || h < 16 || out_w == 0 || out_h == 0 || unit.len() != (w as usize) * (h as usize) {
        return None;
    }
    let (small, sw, sh, _) = working_copy(unit, w, h);
    let (sw, sh) = (sw as usize, sh as usize);
    let mut m = lung_mask(&small, sw, sh, enclosed_only)?;
    for _ in 0..REGION_CLOSE {
        m = dilate(&m, sw, sh);
    }
    for _ in 0..REGION_CLOSE.saturating_sub(REGION_MARGIN) {
        m = erode(&m, sw, sh);
    }
    if (m.iter().filter(|&&l| l).count() as f64) < 0.1 * m.len() as f64 {
        return None;
    }
    let weights: Vec<f32> = m.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    Some(super::resize::resize(&weights, sw as u32, sh as u32, out_w, out_h))
}

/// The lungs of `unit` (`w × h` values in [0, 1], a windowed image, not equalised): the dark
/// pixels by Otsu's threshold (near-black ignored), opened with a 3×3 element, with the holes
/// inside them filled. With `enclosed_only` dark regions touching the border (air around the
/// body, the film's edge) are left out, as for a full slice or a radiograph; without it they
/// count, as for a slice already cropped to its lungs, whose edges cut through them. `None`
/// when there is no threshold or no lung.
pub fn lung_mask(unit: &[f32], w: usize, h: usize, enclosed_only: bool) -> Option<Vec<bool>> {
    if w < 8 || h < 8 || unit.len() != w * h {
        return None;
    }
    let grey: Vec<u8> = unit.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    let mut hist = [0u64; 256];
    for &g in &grey {
        if let Some(c) = hist.get_mut(g as usize) {
            *c += 1;
        }
    }
    hist.iter_mut().take(NEAR_BLACK).for_each(|c| *c = 0);
    let t = otsu(&hist)?;
    let dark: Vec<bool> = grey.iter().map(|&g| g <= t).collect();
    let mut lungs = dilate(&erode(&dark, w, h), w, h);
    if enclosed_only {
        let outside = flood_from_border(&lungs, w, h);
        lungs.iter_mut().zip(&outside).for_each(|(l, &o)| *l = *l && !o);
    }
    // Holes: what is not lung and cannot be reached from the border without crossing lung.
    let not_lung: Vec<bool> = lungs.iter().map(|&l| !l).collect();
    let reachable = flood_from_border(&not_lung, w, h);
    let filled: Vec<bool> = lungs.iter().zip(&reachable).map(|(&l, &r)| l || !r).collect();
    filled.iter().any(|&v| v).then_some(filled)
}

/// The pixels of `m` connected (4-neighbourhood, through set pixels) to the image border.
fn flood_from_border(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut seen = vec![false; w * h];
    let mut stack: Vec<usize> = (0..w).flat_map(|x| [x, (h - 1) * w + x]).chain((0..h).flat_map(|y| [y * w, y * w + w - 1])).collect();
    while let Some(i) = stack.pop() {
        let Some(s) = seen.get_mut(i) else { continue };
        if *s || !m.get(i).copied().unwrap_or(false) {
            continue;
        }
        *s = true;
        let (x, y) = (i % w, i / w);
        if x > 0 {
            stack.push(i - 1);
        }
        if x + 1 < w {
            stack.push(i + 1);
        }
        if y > 0 {
            stack.push(i - w);
        }
        if y + 1 < h {
            stack.push(i + w);
        }
    }
    seen
}

/// Otsu's threshold: the grey level that maximises the between-class variance.
fn otsu(hist: &[u64; 256]) -> Option<u8> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let sum: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut wb, mut sb, mut best, mut t) = (0u64, 0f64, -1f64, None);
    for (i, &c) in hist.iter().enumerate() {
        wb += c;
        if wb == 0 {
            continue;
        }
        let wf = total - wb;
        if wf == 0 {
            break;
        }
        sb += i as f64 * c as f64;
        let (mb, mf) = (sb / wb as f64, (sum - sb) / wf as f64);
        let between = wb as f64 * wf as f64 * (mb - mf) * (mb - mf);
        if between > best {
            best = between;
            t = u8::try_from(i).ok();
        }
    }
    t
}

/// 3×3 morphology: a pixel is set when all (`all`) or any (`!all`) of its in-image
/// neighbours are set.
fn morph(m: &[bool], w: usize, h: usize, all: bool) -> Vec<bool> {
    let mut out = vec![false; m.len()];
    let cells = (0..h).flat_map(|y| (0..w).map(move |x| (x, y)));
    for ((x, y), o) in cells.zip(&mut out) {
        let mut acc = all;
        for yy in y.saturating_sub(1)..(y + 2).min(h) {
            for xx in x.saturating_sub(1)..(x + 2).min(w) {
                let v = m.get(yy * w + xx).copied().unwrap_or(false);
                acc = if all { acc && v } else { acc || v };
            }
        }
        *o = acc;
    }
    out
}

fn erode(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    morph(m, w, h, true)
}

fn dilate(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    morph(m, w, h, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic full-field slice: black outside a circle, grey air, a bright body ellipse
    /// with two dark lungs.
    fn phantom(w: u32, h: u32) -> Vec<f32> {
        let mut px = vec![0f32; (w * h) as usize];
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 - cx, y as f32 - cy);
                let r = (fx * fx + fy * fy).sqrt();
                let mut v = if r < w as f32 * 0.48 { 0.35 } else { 0.0 };
                let body = (fx / (w as f32 * 0.3)).powi(2) + (fy / (h as f32 * 0.22)).powi(2) < 1.0;
                if body {
                    v = 0.8;
                    for lx in [-0.13f32, 0.13] {
                        let l = ((fx - lx * w as f32) / (w as f32 * 0.1)).powi(2) + (fy / (h as f32 * 0.15)).powi(2);
                        if l < 1.0 {
                            v = 0.3;
                        }
                    }
                }
                px[(y * w + x) as usize] = v;
            }
        }
        px
    }

    #[test]
    fn finds_both_lungs_in_a_full_field_slice() {
        let (w, h) = (300, 300);
        let b = lung_box(&phantom(w, h), w, h).expect("lungs found");
        // Lungs span x ∈ [0.27, 0.73]·w, y ∈ [0.35, 0.65]·h, plus an 8 % margin.
        assert!((70..=85).contains(&b.x0) && (215..=230).contains(&b.x1), "{b:?}");
        assert!((95..=110).contains(&b.y0) && (190..=205).contains(&b.y1), "{b:?}");
    }

    #[test]
    fn the_mask_covers_both_lungs_and_the_lesions_inside_them() {
        let (w, h) = (120usize, 120usize);
        let mut px = phantom(w as u32, h as u32);
        // A bright "consolidation" in the middle of the right lung.
        let (cx, cy) = (w / 2 - (0.13 * w as f32) as usize, h / 2);
        for y in cy - 3..cy + 3 {
            for x in cx - 3..cx + 3 {
                px[y * w + x] = 0.8;
            }
        }
        let m = lung_mask(&px, w, h, true).expect("lungs found");
        assert!(m[cy * w + cx], "the lesion inside the lung is part of the lung");
        assert!(m[h / 2 * w + w / 2 + (0.13 * w as f32) as usize], "left lung");
        assert!(!m[h / 2 * w + w / 2], "mediastinum");
        assert!(!m[2 * w + w / 2], "air outside the body");
        assert_eq!(lung_mask(&vec![0.5; 64 * 64], 64, 64, true), None);
    }

    #[test]
    fn the_region_keeps_the_lungs_and_a_lesion_against_the_chest_wall_and_drops_the_rest() {
        let (w, h) = (128u32, 128u32);
        let mut px = phantom(w, h);
        // A bright consolidation at the outer edge of the right lung, against the chest wall.
        let x_edge = (0.27 * w as f32) as usize;
        let cy = h as usize / 2;
        for y in cy - 4..cy + 4 {
            for x in x_edge..x_edge + 5 {
                px[y * w as usize + x] = 0.8;
            }
        }
        let r = lung_region(&px, w, h, 64, 64, true).expect("lungs found");
        assert_eq!(r.len(), 64 * 64);
        let at = |x: f32, y: f32| r[(y * 64.0) as usize * 64 + (x * 64.0) as usize];
        assert!(at(0.29, 0.5) > 0.9, "the lesion against the chest wall is kept: {}", at(0.29, 0.5));
        assert!(at(0.35, 0.45) > 0.9 && at(0.65, 0.45) > 0.9, "both lungs");
        assert!(at(0.5, 0.05) < 0.01 && at(0.1, 0.5) < 0.01, "air outside the body and the body wall");
        assert_eq!(lung_region(&vec![0.5; 64 * 64], 64, 64, 32, 32, true), None);
        // Cropped to the lungs by whoever exported it: the lungs touch the edges, and count
        // when the caller says that dark regions at the edges may be lung.
        let (x0, y0, cw, ch) = ((0.3 * w as f32) as usize, (0.4 * h as f32) as usize, (0.4 * w as f32) as usize, (0.2 * h as f32) as usize);
        let crop: Vec<f32> = (0..cw * ch).map(|i| px[(y0 + i / cw) * w as usize + x0 + i % cw]).collect();
        assert_eq!(lung_region(&crop, cw as u32, ch as u32, 64, 64, true), None);
        let r = lung_region(&crop, cw as u32, ch as u32, 64, 64, false).expect("lungs at the edges found");
        assert!(r[32 * 64 + 8] > 0.9 && r[32 * 64 + 56] > 0.9, "both lungs of the tight crop");
    }

    #[test]
    fn no_crop_without_enclosed_lungs() {
        assert_eq!(lung_box(&vec![0.5; 64 * 64], 64, 64), None);
        let ramp: Vec<f32> = (0..64 * 64).map(|i| (i % 64) as f32 / 63.0).collect();
        assert_eq!(lung_box(&ramp, 64, 64), None);
        assert_eq!(lung_box(&[0.0; 10], 5, 2), None);
    }
}
