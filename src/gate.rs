//! Gate: decide whether an image is a chest CT slice, a chest X-ray, or neither, and say why.
//!
//! 1. A DICOM file's own Modality routes it (CT → CT model; DX/CR/DR → X-ray model); other
//!    modalities (MR, US, OT, …) and non-chest body parts are refused by name.
//! 2. Otherwise a small modality CNN (CT slice vs chest radiograph) decides, and a distance to
//!    the training data on its penultimate features (Mahalanobis, class means and a shared
//!    shrunk covariance fitted on training images only) refuses what looks like neither:
//!    photographs, drawings, documents. Strongly coloured images are refused before that.

use serde::{Deserialize, Serialize};

use crate::decode::MedImage;
use crate::weights::Modality;

/// Mahalanobis model of the gate CNN's penultimate features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateParams {
    pub feature_dim: usize,
    /// One mean per gate class (ct, cxr), `feature_dim` each.
    pub means: Vec<Vec<f32>>,
    /// Inverse of the shared covariance, row-major `feature_dim²`.
    pub precision: Vec<f32>,
    /// Accept when the smallest squared distance is at most this.
    pub threshold: f32,
    /// The quantile of training distances the threshold sits at, and its margin factor.
    pub threshold_quantile: f32,
    pub threshold_margin: f32,
    /// Refuse images whose colourfulness (Hasler–Süsstrunk) exceeds this.
    pub max_colourfulness: f32,
}

/// What the gate says about one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub accepted: bool,
    pub modality: Option<Modality>,
    /// How the decision was made: "dicom", "network", "user".
    pub by: String,
    /// A sentence for the person who dropped the file.
    pub reason: String,
    /// P(ct), P(cxr), P(neither) from the gate network, when it ran.
    pub probabilities: Option<Vec<f32>>,
    /// Squared Mahalanobis distance and its limit, when the network ran.
    pub distance: Option<f32>,
    pub threshold: Option<f32>,
}

/// Rules that need no network: DICOM Modality / Body Part, colour.
pub fn by_metadata(img: &MedImage, max_colourfulness: f32) -> Option<Verdict> {
    let refuse = |reason: String| Verdict { accepted: false, modality: None, by: "dicom".into(), reason, probabilities: None, distance: None, threshold: None };
    if let Some(bp) = img.body_part.as_deref() {
        let b = bp.to_ascii_uppercase();
        let chest = ["CHEST", "LUNG", "THORAX", "TORSO", "CHEST_ABDOMEN", "CHESTABDOMEN", "CHEST_TO_PELVIS", "WHOLEBODY", "WHOLE_BODY", "TRUNK", "BODY"];
        if !chest.iter().any(|c| b.contains(c)) && !b.is_empty() {
            return Some(refuse(format!("the file says the body part is {bp}; this tool reads chest CT and chest X-rays only")));
        }
    }
    match img.modality.as_deref() {
        Some("CT") => Some(Verdict { accepted: true, modality: Some(Modality::Ct), by: "dicom".into(), reason: "DICOM Modality CT".into(), probabilities: None, distance: None, threshold: None }),
        Some(m @ ("DX" | "CR" | "DR" | "RG")) => Some(Verdict {
            accepted: true,
            modality: Some(Modality::Cxr),
            by: "dicom".into(),
            reason: format!("DICOM Modality {m} (radiograph)"),
            probabilities: None,
            distance: None,
            threshold: None,
        }),
        Some(m) => Some(refuse(format!("the DICOM file is modality {m} ({}), not a CT or a radiograph", modality_name(m)))),
        None if img.colourfulness > max_colourfulness => Some(Verdict {
            by: "colour".into(),
            ..refuse(format!("this is a colour picture (colourfulness {:.0}); CT slices and X-rays are greyscale", img.colourfulness))
        }),
        None => None,
    }
}

fn modality_name(m: &str) -> &'static str {
    match m {
        "MR" => "magnetic resonance",
        "US" => "ultrasound",
        "OT" => "other",
        "PT" => "PET",
        "NM" => "nuclear medicine",
        "MG" => "mammography",
        "XA" => "angiography",
        "SC" => "secondary capture",
        "SR" => "structured report",
        "OP" | "OPT" => "ophthalmic",
        "ES" | "XC" => "photograph",
        "SM" => "microscopy",
        _ => "not chest imaging",
    }
}

impl GateParams {
    /// Smallest squared Mahalanobis distance of `f` to the class means.
    pub fn distance(&self, f: &[f32]) -> f32 {
        let d = self.feature_dim;
        if f.len() != d || self.precision.len() != d * d {
            return f32::INFINITY;
        }
        let mut best = f32::INFINITY;
        let mut diff = vec![0f32; d];
        for m in &self.means {
            // A short mean is padded with zeros.
            let mean = m.iter().copied().chain(std::iter::repeat(0.0));
            for ((slot, &x), mu) in diff.iter_mut().zip(f).zip(mean) {
                *slot = x - mu;
            }
            let mut s = 0f64;
            // `d.max(1)`: with d = 0 the precision is empty and there are no rows.
            for (row, &di) in self.precision.chunks_exact(d.max(1)).zip(&diff) {
                let t: f64 = row.iter().zip(&diff).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
                s += t * di as f64;
            }
            best = best.min(s as f32);
        }
        best
    }

    /// Verdict from the gate network's features and probabilities (ct, cxr, neither).
    pub fn judge(&self, features: &[f32], probs: &[f32]) -> Verdict {
        let dist = self.distance(features);
        let (p_ct, p_cxr) = (probs.first().copied().unwrap_or(0.0), probs.get(1).copied().unwrap_or(0.0));
        let p_other = probs.get(2).copied().unwrap_or(0.0);
        let modality = if p_ct >= p_cxr { Modality::Ct } else { Modality::Cxr };
        let accepted = dist <= self.threshold && p_other < 0.5;
        let reason = if p_other >= 0.5 {
            format!("this does not look like a chest CT slice or a chest X-ray (the gate network is {:.0} % sure it is neither). If it is one, choose the model by hand", 100.0 * p_other)
        } else if accepted {
            format!("looks like a {} ({:.0} % sure), within the range of the training images", if modality == Modality::Ct { "chest CT slice" } else { "chest X-ray" }, 100.0 * p_ct.max(p_cxr))
        } else {
            format!(
                "this does not look like a chest CT slice or a chest X-ray: it is far from every training image (distance {:.0}, limit {:.0}). If it is one, choose the model by hand",
                dist, self.threshold
            )
        };
        Verdict { accepted, modality: Some(modality), by: "network".into(), reason, probabilities: Some(probs.to_vec()), distance: Some(dist), threshold: Some(self.threshold) }
    }
}

/// Number of values [`image_stats`] returns.
pub const N_STATS: usize = 8;

/// Simple statistics of the 8-bit model input that chest images share and photos rarely do:
/// left–right mirror correlation, mean, spread, dark and bright fractions, border-minus-centre
/// contrast, edge energy and its horizontal/vertical balance. Appended to the network features.
pub fn image_stats(seen: &[u8], size: usize) -> Vec<f32> {
    let n = size * size;
    let Some(seen) = seen.get(..n).filter(|_| size > 0) else {
        return vec![0.0; N_STATS];
    };
    let v = |p: u8| p as f32 / 255.0;
    let (mut sum, mut sum2, mut dark, mut bright) = (0f32, 0f32, 0f32, 0f32);
    for &p in seen {
        let p = v(p);
        sum += p;
        sum2 += p * p;
        dark += f32::from(p < 0.04);
        bright += f32::from(p > 0.96);
    }
    let mean = sum / n as f32;
    let var = (sum2 / n as f32 - mean * mean).max(1e-8);
    let mut cov = 0f32;
    let (mut gx, mut gy) = (0f32, 0f32);
    let ring = (size / 8).max(1);
    let (mut border, mut nb, mut centre, mut nc) = (0f32, 0f32, 0f32, 0f32);
    let mut rows = seen.chunks_exact(size).enumerate().peekable();
    while let Some((y, row)) = rows.next() {
        let below = rows.peek().map(|&(_, r)| r);
        // Each pixel with its mirror image across the vertical midline.
        for (x, (&p, &mirror)) in row.iter().zip(row.iter().rev()).enumerate() {
            let p = v(p);
            cov += (p - mean) * (v(mirror) - mean);
            if let Some(&right) = row.get(x + 1) {
                gx += (v(right) - p).abs();
            }
            if let Some(&down) = below.and_then(|r| r.get(x)) {
                gy += (v(down) - p).abs();
            }
            if x < ring || y < ring || x >= size - ring || y >= size - ring {
                border += p;
                nb += 1.0;
            } else if x >= size / 4 && x < size * 3 / 4 && y >= size / 4 && y < size * 3 / 4 {
                centre += p;
                nc += 1.0;
            }
        }
    }
    let mirror = cov / n as f32 / var;
    let edges = (gx + gy) / n as f32;
    vec![
        mirror,
        mean,
        var.sqrt(),
        dark / n as f32,
        bright / n as f32,
        centre / nc.max(1.0) - border / nb.max(1.0),
        edges,
        (gx - gy) / (gx + gy).max(1e-6),
    ]
}

/// Fit class means and a shared covariance (with shrinkage towards its diagonal), return
/// the precision matrix. `feats` is row-major `n × d`.
pub fn fit_mahalanobis(feats: &[f32], labels: &[usize], d: usize, classes: usize, shrinkage: f64) -> (Vec<Vec<f32>>, Vec<f32>) {
    let n = labels.len();
    // One feature row per label; a label ≥ `classes` or a missing row is skipped.
    // `d.max(1)`: with d = 0 every row is empty and the zips below do nothing.
    let samples = || feats.chunks_exact(d.max(1)).zip(labels);
    let mut means = vec![vec![0f64; d]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &c) in samples() {
        if let (Some(mean), Some(count)) = (means.get_mut(c), counts.get_mut(c)) {
            *count += 1;
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
    }
    for (mean, &count) in means.iter_mut().zip(&counts) {
        for v in mean {
            *v /= count.max(1) as f64;
        }
    }
    // Upper triangle (b ≥ a) of the pooled scatter matrix.
    let mut cov = vec![0f64; d * d];
    let mut centred = Vec::with_capacity(d);
    for (row, &c) in samples() {
        let Some(mean) = means.get(c) else { continue };
        centred.clear();
        centred.extend(row.iter().zip(mean).map(|(&x, &m)| x as f64 - m));
        for (a, (cov_row, &da)) in cov.chunks_exact_mut(d.max(1)).zip(&centred).enumerate() {
            for (slot, &db) in cov_row.iter_mut().zip(&centred).skip(a) {
                *slot += da * db;
            }
        }
    }
    let denom = (n.saturating_sub(classes)).max(1) as f64;
    for v in &mut cov {
        *v /= denom;
    }
    mirror_upper(&mut cov, d);
    // The diagonal of a d × d row-major matrix is every (d + 1)-th element.
    let avg_var = cov.iter().step_by(d + 1).sum::<f64>() / d as f64;
    let floor = 1e-6 * avg_var.max(1e-12);
    for (a, cov_row) in cov.chunks_exact_mut(d.max(1)).enumerate() {
        for (b, v) in cov_row.iter_mut().enumerate() {
            let target = if a == b { v.max(floor) } else { 0.0 };
            *v = (1.0 - shrinkage) * *v + shrinkage * target;
            if a == b {
                *v += floor;
            }
        }
    }
    let prec = invert(&cov, d);
    (means.into_iter().map(|m| m.into_iter().map(|v| v as f32).collect()).collect(), prec.into_iter().map(|v| v as f32).collect())
}

/// Copy the upper triangle of a row-major `d × d` matrix onto its lower triangle.
fn mirror_upper(m: &mut [f64], d: usize) {
    for a in 0..d {
        for b in a + 1..d {
            if let Some(&v) = m.get(a * d + b)
                && let Some(lower) = m.get_mut(b * d + a)
            {
                *lower = v;
            }
        }
    }
}

/// Swap rows `i < j` of a row-major matrix with `d` columns.
fn swap_rows(m: &mut [f64], d: usize, i: usize, j: usize) {
    if let Some((top, bottom)) = m.split_at_mut_checked(j * d)
        && let Some(ri) = top.get_mut(i * d..(i + 1) * d)
    {
        for (x, y) in ri.iter_mut().zip(bottom.iter_mut().take(d)) {
            std::mem::swap(x, y);
        }
    }
}

/// Gauss–Jordan inverse of a symmetric positive-definite matrix.
fn invert(m: &[f64], d: usize) -> Vec<f64> {
    let mut a = m.to_vec();
    let mut inv = vec![0f64; d * d];
    for v in inv.iter_mut().step_by(d + 1) {
        *v = 1.0;
    }
    let at = |m: &[f64], r: usize, c: usize| m.get(r * d + c).copied().unwrap_or(0.0);
    for col in 0..d {
        let piv = (col..d).max_by(|&x, &y| at(&a, x, col).abs().total_cmp(&at(&a, y, col).abs())).unwrap_or(col);
        if piv != col {
            swap_rows(&mut a, d, col, piv);
            swap_rows(&mut inv, d, col, piv);
        }
        let p = at(&a, col, col);
        if p.abs() < 1e-300 {
            continue;
        }
        // Normalise the pivot row, then subtract it from every other row (d ≥ 1 here).
        let pivot_row = |m: &[f64]| -> Vec<f64> { m.get(col * d..(col + 1) * d).unwrap_or_default().iter().map(|v| v / p).collect() };
        let (pivot_a, pivot_inv) = (pivot_row(&a), pivot_row(&inv));
        for (r, (ra, ri)) in a.chunks_exact_mut(d).zip(inv.chunks_exact_mut(d)).enumerate() {
            if r == col {
                ra.iter_mut().zip(&pivot_a).for_each(|(x, &v)| *x = v);
                ri.iter_mut().zip(&pivot_inv).for_each(|(x, &v)| *x = v);
                continue;
            }
            let f = ra.get(col).copied().unwrap_or(0.0);
            if f != 0.0 {
                for (x, &v) in ra.iter_mut().zip(&pivot_a) {
                    *x -= f * v;
                }
                for (x, &v) in ri.iter_mut().zip(&pivot_inv) {
                    *x -= f * v;
                }
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mahalanobis_of_known_gaussian() {
        // Two features, unit variance, class means (0,0) and (10,0).
        let mut f = Vec::new();
        let mut l = Vec::new();
        let mut s = 3u64;
        let mut g = || {
            let mut acc = 0.0;
            for _ in 0..12 {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                acc += (s >> 11) as f64 / (1u64 << 53) as f64;
            }
            (acc - 6.0) as f32
        };
        for i in 0..4000 {
            let c = i % 2;
            f.push(g() + if c == 1 { 10.0 } else { 0.0 });
            f.push(g());
            l.push(c);
        }
        let (means, precision) = fit_mahalanobis(&f, &l, 2, 2, 0.0);
        let p = GateParams { feature_dim: 2, means, precision, threshold: 9.0, threshold_quantile: 0.99, threshold_margin: 1.0, max_colourfulness: 30.0 };
        assert!((p.distance(&[0.0, 2.0]) - 4.0).abs() < 0.4, "{}", p.distance(&[0.0, 2.0]));
        assert!((p.distance(&[10.0, 0.0])).abs() < 0.1);
        assert!(!p.judge(&[5.0, 5.0], &[0.5, 0.5]).accepted);
    }
}

/// The gate network with its distance model.
pub struct Gatekeeper {
    pub classifier: crate::classifier::Classifier,
    pub params: GateParams,
}

impl Gatekeeper {
    /// Build from the manifest's "gate" entry (its `gate` field holds [`GateParams`]).
    pub fn new(classifier: crate::classifier::Classifier) -> Result<Self, crate::weights::WeightsError> {
        let params = classifier
            .entry
            .gate
            .clone()
            .and_then(|v| serde_json::from_value::<GateParams>(v).ok())
            .ok_or_else(|| crate::weights::WeightsError::Manifest("the gate entry has no distance model".into()))?;
        Ok(Gatekeeper { classifier, params })
    }

    /// Judge a decoded image: DICOM/colour rules first (unless `network_only`), then the network.
    pub async fn judge(&self, img: &MedImage, network_only: bool) -> Result<Verdict, crate::classifier::ClassifyError> {
        if !network_only && let Some(v) = by_metadata(img, self.params.max_colourfulness) {
            return Ok(v);
        }
        let p = self.classifier.preprocess(img, crate::preprocess::WindowChoice::Auto)?;
        let (mut f, l) = self.classifier.features(&[&p]).await?;
        f.extend(image_stats(&p.seen, p.size as usize));
        let probs = crate::classifier::softmax(&l, 1.0);
        Ok(self.params.judge(&f, &probs))
    }
}
