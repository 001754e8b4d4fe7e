//! Decision: the one softmax, the one arg-max and the one operating-point rule, used by the
//! classifier, the gate, the evaluation reports and the page alike, so that a probability or
//! a decision means the same wherever it is shown.

use std::iter::Sum;
use std::ops::{Div, Sub};

use serde::Serialize;

use crate::model::{ModelEntry, OperatingPoint};

/// The floating-point types probabilities are computed in: `f32` at inference (what the
/// page shows), `f64` in the metrics. Both widen exactly to `f64` and take `f32` logits exactly.
pub trait Real: Copy + PartialOrd + Sum + Sub<Output = Self> + Div<Output = Self> + From<f32> + Into<f64> {
    fn exp(self) -> Self;
    fn is_finite(self) -> bool;
}

macro_rules! real {
    ($($t:ty),*) => {$(
        impl Real for $t {
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    )*};
}
real!(f32, f64);

/// Numerically stable softmax of `logits / t`, computed in `F`. Logits that sum to nothing
/// usable (non-finite) give the uniform distribution rather than NaNs.
pub fn softmax<F: Real>(logits: &[f32], t: F) -> Vec<F> {
    let m = F::from(logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let e: Vec<F> = logits.iter().map(|&l| ((F::from(l) - m) / t).exp()).collect();
    let s: F = e.iter().copied().sum();
    if s > F::from(0.0) && s.is_finite() {
        e.into_iter().map(|v| v / s).collect()
    } else {
        vec![F::from(1.0) / F::from(logits.len().max(1) as f32); logits.len()]
    }
}

/// Index of the largest value (the first of equals; 0 for an empty slice; a NaN never wins
/// over a number).
pub fn argmax<F: PartialOrd + Copy>(v: &[F]) -> usize {
    let is_nan = |x: F| x.partial_cmp(&x).is_none();
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if v.get(best).is_none_or(|&b| x > b || (is_nan(b) && !is_nan(x))) {
            best = i;
        }
    }
    best
}

impl OperatingPoint {
    /// The decision for one probability vector: the positive class when its probability
    /// reaches the threshold, otherwise the most probable of the other classes.
    pub fn decide<F: Real>(&self, probs: &[F], classes: &[String]) -> usize {
        match classes.iter().position(|c| *c == self.positive_class) {
            Some(p) if probs.get(p).is_some_and(|&q| Into::<f64>::into(q) >= self.threshold) => p,
            Some(p) => {
                let mut best: Option<usize> = None;
                for (i, &q) in probs.iter().enumerate() {
                    if i != p && best.and_then(|b| probs.get(b)).is_none_or(|&b| q > b) {
                        best = Some(i);
                    }
                }
                best.unwrap_or(0)
            }
            None => argmax(probs),
        }
    }
}

/// The decision at the model's stored operating point, in words for the page and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub label: String,
    pub index: usize,
    pub positive_class: String,
    pub threshold: f64,
    pub target_sensitivity: f64,
    pub rule: String,
}

impl Decision {
    /// The decision for `probabilities` at the operating point stored in `entry` (`None` without one).
    pub fn at_operating_point(entry: &ModelEntry, probabilities: &[f32]) -> Option<Decision> {
        let op = entry.operating_point.as_ref()?;
        let index = op.decide(probabilities, &entry.classes);
        let label = entry.classes.get(index).cloned().unwrap_or_default();
        let pos = &op.positive_class;
        let threshold =
            format!("the {pos} alert threshold {:.3}, chosen for {:.0} % sensitivity on validation data", op.threshold, op.target_sensitivity * 100.0);
        let rule = match entry.class_index(pos).and_then(|i| Some((i, *probabilities.get(i)?))) {
            Some((i, p)) if i == index => format!("P({pos}) {p:.3} is at or above {threshold}"),
            Some((_, p)) => format!("P({pos}) {p:.3} is below {threshold}, so the likelier other class: {label}"),
            None => format!("the most probable class ({pos} is not one of this model's classes)"),
        };
        Some(Decision { label, index, rule, positive_class: op.positive_class.clone(), threshold: op.threshold, target_sensitivity: op.target_sensitivity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(threshold: f64) -> OperatingPoint {
        OperatingPoint {
            positive_class: "covid".into(),
            threshold,
            target_sensitivity: 0.95,
            validation_sensitivity: 0.95,
            validation_specificity: 0.5,
            chosen_on: "test".into(),
        }
    }

    fn classes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p: Vec<f32> = softmax(&[1000.0, 1000.0, 999.0], 1.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[0] - p[1]).abs() < 1e-7 && p[2] < p[0]);
        // A temperature above 1 flattens, below 1 sharpens.
        let hot: Vec<f64> = softmax(&[2.0, 0.0], 2.0);
        let cold: Vec<f64> = softmax(&[2.0, 0.0], 0.5);
        assert!(hot[0] < cold[0]);
        assert!((hot[0] - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn softmax_of_unusable_logits_is_uniform() {
        let p: Vec<f32> = softmax(&[f32::NAN, 0.0], 1.0);
        assert_eq!(p, vec![0.5, 0.5]);
        let empty: Vec<f32> = softmax(&[], 1.0);
        assert!(empty.is_empty());
    }

    #[test]
    fn argmax_takes_the_first_of_equals_and_ignores_nan() {
        assert_eq!(argmax(&[0.2f32, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.1]), 1);
        assert_eq!(argmax::<f64>(&[]), 0);
    }

    #[test]
    fn operating_point_calls_the_positive_class_at_its_threshold() {
        let c = classes(&["normal", "pneumonia", "covid"]);
        let o = op(0.2);
        // covid at 0.2 (≥ threshold) wins although pneumonia is likelier.
        assert_eq!(o.decide(&[0.1f32, 0.7, 0.2], &c), 2);
        // Below the threshold: the likelier of the other classes.
        assert_eq!(o.decide(&[0.15f64, 0.7, 0.15], &c), 1);
        assert_eq!(o.decide(&[0.6f32, 0.3, 0.1], &c), 0);
        // A manifest whose positive class the model lacks falls back to arg-max.
        assert_eq!(o.decide(&[0.1f32, 0.9], &classes(&["a", "b"])), 1);
    }

    #[test]
    fn an_f32_probability_is_compared_exactly_with_the_f64_threshold() {
        let t = f64::from(0.3f32);
        assert_eq!(op(t).decide(&[0.7f32, 0.3], &classes(&["noncovid", "covid"])), 1);
        assert_eq!(op(t + 1e-12).decide(&[0.7f32, 0.3], &classes(&["noncovid", "covid"])), 0);
    }
}
