//! Metrics the seed papers report, computed here (never copied): accuracy, per-class
//! sensitivity / specificity / precision / F1, confusion matrix, ROC curve and AUC
//! (one-vs-rest and macro for several classes), expected calibration error, temperature
//! scaling fitted by likelihood, and thresholds chosen for a target sensitivity.

use serde::{Deserialize, Serialize};

use crate::infer::decision::{argmax, softmax};
use crate::model::OperatingPoint;
pub use crate::model::report::RocPoint;

/// Confusion matrix `m[truth][predicted]`.
pub fn confusion(truth: &[usize], pred: &[usize], k: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(pred) {
        if t < k && p < k {
            m[t][p] += 1;
        }
    }
    m
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub support: u64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub precision: f64,
    pub f1: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { f64::NAN } else { a as f64 / b as f64 }
}

/// One-vs-rest metrics per class from a confusion matrix.
pub fn per_class(m: &[Vec<u64>], classes: &[String]) -> Vec<ClassMetrics> {
    let k = m.len();
    let total: u64 = m.iter().flatten().sum();
    (0..k)
        .map(|c| {
            let tp = m[c][c];
            let fn_: u64 = m[c].iter().sum::<u64>() - tp;
            let fp: u64 = (0..k).map(|r| m[r][c]).sum::<u64>() - tp;
            let tn = total - tp - fn_ - fp;
            let sens = ratio(tp, tp + fn_);
            let prec = ratio(tp, tp + fp);
            let f1 = if sens.is_nan() || prec.is_nan() || sens + prec == 0.0 { f64::NAN } else { 2.0 * sens * prec / (sens + prec) };
            ClassMetrics {
                class: classes.get(c).cloned().unwrap_or_default(),
                support: tp + fn_,
                sensitivity: sens,
                specificity: ratio(tn, tn + fp),
                precision: prec,
                f1,
            }
        })
        .collect()
}

pub fn accuracy(truth: &[usize], pred: &[usize]) -> f64 {
    ratio(truth.iter().zip(pred).filter(|(a, b)| a == b).count() as u64, truth.len() as u64)
}

/// ROC curve: thresholds at every distinct score, from +∞ (nothing positive) down.
pub fn roc(scores: &[f64], positive: &[bool]) -> Vec<RocPoint> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let p = positive.iter().filter(|&&x| x).count() as f64;
    let n = positive.len() as f64 - p;
    let mut out = vec![RocPoint { fpr: 0.0, tpr: 0.0, threshold: f64::INFINITY }];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if positive[idx[i]] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        out.push(RocPoint { fpr: if n > 0.0 { fp / n } else { f64::NAN }, tpr: if p > 0.0 { tp / p } else { f64::NAN }, threshold: s });
    }
    out
}

/// Area under the ROC curve (trapezoids; ties count half). NaN without both classes.
pub fn auc(scores: &[f64], positive: &[bool]) -> f64 {
    let pts = roc(scores, positive);
    if pts.iter().any(|p| p.fpr.is_nan() || p.tpr.is_nan()) {
        return f64::NAN;
    }
    pts.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum()
}

/// At most `n` points of a curve, always keeping the ends (for storing in a manifest).
pub fn thin(points: &[RocPoint], n: usize) -> Vec<RocPoint> {
    if points.len() <= n || n < 2 {
        return points.to_vec();
    }
    let mut out: Vec<RocPoint> = (0..n).map(|i| points[i * (points.len() - 1) / (n - 1)]).collect();
    for p in &mut out {
        if !p.threshold.is_finite() {
            p.threshold = 1.0e9;
        }
    }
    out
}

/// Mean negative log-likelihood of `truth` under softmax(logits / t).
pub fn nll(logits: &[Vec<f32>], truth: &[usize], t: f64) -> f64 {
    let mut s = 0.0;
    for (l, &y) in logits.iter().zip(truth) {
        let p = softmax(l, t);
        s -= p.get(y).copied().unwrap_or(0.0).max(1e-12).ln();
    }
    s / logits.len().max(1) as f64
}

/// Temperature T minimising validation NLL (golden-section search on log T in [0.05, 20]).
pub fn fit_temperature(logits: &[Vec<f32>], truth: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |lt: f64| nll(logits, truth, lt.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    for _ in 0..80 {
        if f(c) < f(d) {
            b = d;
        } else {
            a = c;
        }
        c = b - g * (b - a);
        d = a + g * (b - a);
    }
    ((a + b) / 2.0).exp()
}

/// Expected calibration error of the top-label confidence over `bins` equal-width bins.
pub fn ece(probs: &[Vec<f64>], truth: &[usize], bins: usize) -> f64 {
    let mut conf = vec![0.0; bins];
    let mut acc = vec![0.0; bins];
    let mut cnt = vec![0usize; bins];
    for (p, &y) in probs.iter().zip(truth) {
        let arg = argmax(p);
        let c = p.get(arg).copied().unwrap_or(0.0);
        let b = ((c * bins as f64) as usize).min(bins - 1);
        conf[b] += c;
        acc[b] += if arg == y { 1.0 } else { 0.0 };
        cnt[b] += 1;
    }
    let n = probs.len().max(1) as f64;
    (0..bins).filter(|&b| cnt[b] > 0).map(|b| (cnt[b] as f64 / n) * ((acc[b] - conf[b]) / cnt[b] as f64).abs()).sum()
}

/// The highest threshold whose sensitivity on (`scores`, `positive`) reaches `target`.
pub fn threshold_for_sensitivity(scores: &[f64], positive: &[bool], target: f64) -> Option<f64> {
    let mut pos: Vec<f64> = scores.iter().zip(positive).filter(|(_, p)| **p).map(|(s, _)| *s).collect();
    if pos.is_empty() {
        return None;
    }
    pos.sort_by(|a, b| b.total_cmp(a));
    let need = ((target * pos.len() as f64).ceil() as usize).clamp(1, pos.len());
    Some(pos[need - 1])
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt() } else { 0.0 };
    (m, sd)
}

impl OperatingPoint {
    /// Choose the threshold for `target` sensitivity of `positive` on validation probabilities.
    pub fn fit(probs: &[Vec<f64>], truth: &[usize], classes: &[String], positive: usize, target: f64, chosen_on: &str) -> Option<Self> {
        let scores: Vec<f64> = probs.iter().map(|p| p.get(positive).copied().unwrap_or(0.0)).collect();
        let pos: Vec<bool> = truth.iter().map(|&t| t == positive).collect();
        let t = threshold_for_sensitivity(&scores, &pos, target)?;
        let (mut tp, mut fn_, mut tn, mut fp) = (0, 0, 0, 0);
        for (s, p) in scores.iter().zip(&pos) {
            match (*s >= t, *p) {
                (true, true) => tp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
                (true, false) => fp += 1,
            }
        }
        Some(OperatingPoint {
            positive_class: classes.get(positive)?.clone(),
            threshold: t,
            target_sensitivity: target,
            validation_sensitivity: tp as f64 / (tp + fn_).max(1) as f64,
            validation_specificity: tn as f64 / (tn + fp).max(1) as f64,
            chosen_on: chosen_on.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(auc(&[0.9, 0.8, 0.3, 0.1], &[true, true, false, false]), 1.0);
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[true, true, false, false]), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]), 0.5);
        // Mann–Whitney: one of four positive–negative pairs misordered → 0.75.
        assert!((auc(&[0.9, 0.4, 0.5, 0.1], &[true, true, false, false]) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn per_class_from_confusion() {
        let classes: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let m = confusion(&[0, 0, 0, 1, 1], &[0, 0, 1, 1, 0], 2);
        assert_eq!(m, vec![vec![2, 1], vec![1, 1]]);
        let pc = per_class(&m, &classes);
        assert!((pc[0].sensitivity - 2.0 / 3.0).abs() < 1e-12);
        assert!((pc[0].specificity - 0.5).abs() < 1e-12);
        assert!((pc[0].precision - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn temperature_recovers_overconfidence() {
        // Logits scaled ×3 from well-calibrated ones: the fitted T should be near 3.
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        let mut s = 1u64;
        for _ in 0..4000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let z = ((s >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0;
            let p1 = 1.0 / (1.0 + (-z).exp());
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            truth.push(usize::from(u < p1));
            logits.push(vec![0.0, (3.0 * z) as f32]);
        }
        let t = fit_temperature(&logits, &truth);
        assert!((t - 3.0).abs() < 0.4, "{t}");
        let probs: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l, t)).collect();
        assert!(ece(&probs, &truth, 15) < 0.05);
    }

    #[test]
    fn sensitivity_threshold() {
        let t = threshold_for_sensitivity(&[0.9, 0.8, 0.7, 0.6, 0.1], &[true, true, true, true, false], 0.75).unwrap();
        assert_eq!(t, 0.7);
    }
}
