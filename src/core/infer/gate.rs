//! Gate: decide whether an image is a chest CT slice, a chest X-ray, or neither, and say why.
//!
//! 1. A DICOM file's own Modality routes it (CT → CT model; DX/CR/DR → X-ray model); other
//!    modalities (MR, US, OT, …) and non-chest body parts are refused by name.
//! 2. Otherwise a small modality CNN (CT slice vs chest radiograph) decides, and a distance to
//!    the training data on its penultimate features (Mahalanobis, class means and a shared
//!    shrunk covariance fitted on training images only) refuses what looks like neither:
//!    photographs, drawings, documents. Strongly coloured images are refused before that.

use super::classifier::{Classifier, ClassifyError};
use super::decision::softmax;
use super::route::{Verdict, VerdictSource, by_metadata};
use crate::decode::MedImage;
use crate::imaging::WindowChoice;
use crate::model::{GateParams, Modality, WeightsError};

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

    /// Verdict from the gate network's features and probabilities (ct, cxr, neither). An
    /// image it would accept with a confidence below `ask_below` is not accepted but marked
    /// `unsure` (the front end asks which model should read it). Reasons say what the gate
    /// found, not what to do about it: the front end offers the choice.
    pub fn judge(&self, features: &[f32], probs: &[f32]) -> Verdict {
        let dist = self.distance(features);
        let (p_ct, p_cxr) = (probs.first().copied().unwrap_or(0.0), probs.get(1).copied().unwrap_or(0.0));
        let p_other = probs.get(2).copied().unwrap_or(0.0);
        let modality = if p_ct >= p_cxr { Modality::Ct } else { Modality::Cxr };
        let confidence = p_ct.max(p_cxr);
        let plausible = dist <= self.threshold && p_other < 0.5;
        let unsure = plausible && confidence < self.ask_below;
        let accepted = plausible && !unsure;
        let what = if modality == Modality::Ct { "chest CT slice" } else { "chest X-ray" };
        let reason = if p_other >= 0.5 {
            format!("this does not look like a chest CT slice or a chest X-ray (the gate network is {:.0} % sure it is neither)", 100.0 * p_other)
        } else if unsure {
            format!(
                "the input gate is not sure what this is: most like a {what}, but only {:.0} % sure (it accepts from {:.0} %)",
                100.0 * confidence,
                100.0 * self.ask_below
            )
        } else if accepted {
            format!("looks like a {what} ({:.0} % sure), within the range of the training images", 100.0 * confidence)
        } else {
            format!(
                "this does not look like a chest CT slice or a chest X-ray: it is far from every training image (distance {:.0}, limit {:.0})",
                dist, self.threshold
            )
        };
        Verdict {
            accepted,
            modality: Some(modality),
            by: VerdictSource::Network,
            reason,
            probabilities: Some(probs.to_vec()),
            distance: Some(dist),
            threshold: Some(self.threshold),
            unsure,
        }
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
    vec![mirror, mean, var.sqrt(), dark / n as f32, bright / n as f32, centre / nc.max(1.0) - border / nb.max(1.0), edges, (gx - gy) / (gx + gy).max(1e-6)]
}

/// The gate network with its distance model.
pub struct Gatekeeper {
    pub classifier: Classifier,
    pub params: GateParams,
}

impl Gatekeeper {
    /// Build from the manifest's gate entry (its `gate` field holds [`GateParams`]).
    pub fn new(classifier: Classifier) -> Result<Self, WeightsError> {
        let params = classifier.entry.gate.clone().ok_or(WeightsError::NoDistanceModel)?;
        Ok(Gatekeeper { classifier, params })
    }

    /// Judge a decoded image: DICOM/colour rules first (unless `network_only`), then the network.
    pub async fn judge(&self, img: &MedImage, network_only: bool) -> Result<Verdict, ClassifyError> {
        if !network_only && let Some(v) = by_metadata(img, self.params.max_colourfulness) {
            return Ok(v);
        }
        let p = self.classifier.preprocess(img, WindowChoice::Auto)?;
        let (mut f, l) = self.classifier.features(&[&p]).await?;
        f.extend(image_stats(&p.seen, p.size as usize));
        let probs = softmax(&l, 1.0f32);
        Ok(self.params.judge(&f, &probs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One feature, both class means at 0, unit precision: the distance of feature x is x².
    fn params(ask_below: f32) -> GateParams {
        GateParams {
            feature_dim: 1,
            means: vec![vec![0.0], vec![0.0]],
            precision: vec![1.0],
            threshold: 4.0,
            threshold_quantile: 0.99,
            threshold_margin: 1.0,
            max_colourfulness: 50.0,
            ask_below,
        }
    }

    #[test]
    fn below_the_bar_the_gate_asks_instead_of_accepting() {
        let g = params(0.9);
        let sure = g.judge(&[1.0], &[0.95, 0.04, 0.01]);
        assert!(sure.accepted && !sure.unsure && sure.modality == Some(Modality::Ct), "{sure:?}");
        let unsure = g.judge(&[1.0], &[0.39, 0.38, 0.23]);
        assert!(!unsure.accepted && unsure.unsure && unsure.reason.contains("not sure") && unsure.reason.contains("39 %"), "{unsure:?}");
        // Far from the training images, or sure it is neither: refused, never asked about.
        let far = g.judge(&[3.0], &[0.5, 0.4, 0.1]);
        assert!(!far.accepted && !far.unsure, "{far:?}");
        let neither = g.judge(&[1.0], &[0.2, 0.2, 0.6]);
        assert!(!neither.accepted && !neither.unsure, "{neither:?}");
        // A bar of 0 (older manifests) never asks.
        let old = params(0.0).judge(&[1.0], &[0.39, 0.38, 0.23]);
        assert!(old.accepted && !old.unsure, "{old:?}");
    }
}
