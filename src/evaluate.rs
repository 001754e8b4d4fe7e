//! Evaluate: turn model outputs on labelled images into the report the model card and the
//! page show — overall, per source and per patient — and the extras fitted on validation
//! data (temperature, operating point).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::metrics::{accuracy, auc, confusion, ece, fit_temperature, per_class, roc, softmax_t, thin, threshold_for_sensitivity};

/// The stored decision rule: call the positive class when its probability reaches the threshold,
/// otherwise the most probable of the other classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub positive_class: String,
    pub threshold: f64,
    pub target_sensitivity: f64,
    /// Measured on the validation data the threshold was chosen on.
    pub validation_sensitivity: f64,
    pub validation_specificity: f64,
    pub chosen_on: String,
}

impl OperatingPoint {
    /// Choose the threshold for `target` sensitivity of `positive` on validation probabilities.
    pub fn fit(probs: &[Vec<f64>], truth: &[usize], classes: &[String], positive: usize, target: f64, chosen_on: &str) -> Option<Self> {
        let scores: Vec<f64> = probs.iter().map(|p| p[positive]).collect();
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

    /// The decision for one probability vector.
    pub fn decide(&self, probs: &[f64], classes: &[String]) -> usize {
        let pos = classes.iter().position(|c| *c == self.positive_class);
        match pos {
            Some(p) if probs.get(p).copied().unwrap_or(0.0) >= self.threshold => p,
            Some(p) => (0..probs.len()).filter(|&i| i != p).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap_or(0),
            None => (0..probs.len()).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap_or(0),
        }
    }
}

/// Model outputs on a labelled set.
pub struct Outputs<'a> {
    pub classes: &'a [String],
    pub logits: &'a [Vec<f32>],
    pub truth: &'a [usize],
    pub sources: &'a [String],
    /// Patient id per image (`None` where the source has none).
    pub patients: &'a [Option<String>],
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!((v * 1e6).round() / 1e6) } else { Value::Null }
}

/// Threshold-free and arg-max metrics (plus the operating point's, when given).
pub fn report(o: &Outputs, temperature: f64, op: Option<&OperatingPoint>) -> Value {
    let k = o.classes.len();
    let n = o.truth.len();
    let raw: Vec<Vec<f64>> = o.logits.iter().map(|l| softmax_t(l, 1.0)).collect();
    let cal: Vec<Vec<f64>> = o.logits.iter().map(|l| softmax_t(l, temperature)).collect();
    let pred: Vec<usize> = cal.iter().map(|p| (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0)).collect();
    let conf = confusion(o.truth, &pred, k);
    let mut v = json!({
        "n": n,
        "accuracy": finite(accuracy(o.truth, &pred)),
        "classes": o.classes,
        "confusion": conf,
        "per_class": per_class(&conf, o.classes).iter().map(|c| json!({
            "class": c.class, "support": c.support, "sensitivity": finite(c.sensitivity),
            "specificity": finite(c.specificity), "precision": finite(c.precision), "f1": finite(c.f1),
        })).collect::<Vec<_>>(),
        "ece_raw": finite(ece(&raw, o.truth, 15)),
        "ece_calibrated": finite(ece(&cal, o.truth, 15)),
        "temperature": finite(temperature),
        "class_counts": (0..k).map(|c| o.truth.iter().filter(|&&t| t == c).count()).collect::<Vec<_>>(),
    });
    let mut roc_curves = serde_json::Map::new();
    let mut aucs = Vec::new();
    for c in 0..k {
        let scores: Vec<f64> = cal.iter().map(|p| p[c]).collect();
        let pos: Vec<bool> = o.truth.iter().map(|&t| t == c).collect();
        let a = auc(&scores, &pos);
        aucs.push(a);
        if a.is_finite() {
            roc_curves.insert(o.classes[c].clone(), json!(thin(&roc(&scores, &pos), 101)));
        }
    }
    if k == 2 {
        v["auc"] = finite(aucs[1]);
        v["positive_class"] = json!(o.classes[1]);
        roc_curves.remove(&o.classes[0]);
    } else {
        let valid: Vec<f64> = aucs.iter().copied().filter(|a| a.is_finite()).collect();
        v["macro_auc"] = if valid.is_empty() { Value::Null } else { finite(valid.iter().sum::<f64>() / valid.len() as f64) };
        v["auc_per_class"] = json!(o.classes.iter().zip(&aucs).map(|(c, a)| (c.clone(), finite(*a))).collect::<BTreeMap<_, _>>());
    }
    v["roc"] = Value::Object(roc_curves);
    if let Some(op) = op {
        let dec: Vec<usize> = cal.iter().map(|p| op.decide(p, o.classes)).collect();
        let conf = confusion(o.truth, &dec, k);
        v["at_operating_point"] = json!({
            "threshold": op.threshold,
            "positive_class": op.positive_class,
            "accuracy": finite(accuracy(o.truth, &dec)),
            "confusion": conf,
            "per_class": per_class(&conf, o.classes).iter().map(|c| json!({
                "class": c.class, "sensitivity": finite(c.sensitivity), "specificity": finite(c.specificity),
                "precision": finite(c.precision), "f1": finite(c.f1)})).collect::<Vec<_>>(),
        });
    }
    v
}

/// Metrics per source, and per patient (max and mean of slice probabilities) where ids exist.
pub fn full_report(o: &Outputs, temperature: f64, op: Option<&OperatingPoint>) -> Value {
    let mut v = report(o, temperature, op);
    let mut sources: Vec<&String> = o.sources.iter().collect();
    sources.sort();
    sources.dedup();
    let mut per_source = serde_json::Map::new();
    for s in sources {
        let idx: Vec<usize> = (0..o.truth.len()).filter(|&i| o.sources[i] == *s).collect();
        let l: Vec<Vec<f32>> = idx.iter().map(|&i| o.logits[i].clone()).collect();
        let t: Vec<usize> = idx.iter().map(|&i| o.truth[i]).collect();
        let so: Vec<String> = idx.iter().map(|&i| o.sources[i].clone()).collect();
        let p: Vec<Option<String>> = idx.iter().map(|&i| o.patients[i].clone()).collect();
        let r = report(&Outputs { classes: o.classes, logits: &l, truth: &t, sources: &so, patients: &p }, temperature, op);
        per_source.insert(s.clone(), strip_curves(r));
    }
    v["per_source"] = Value::Object(per_source);
    if o.classes.len() == 2 {
        v["patient_level"] = patient_level(o, temperature);
    }
    v
}

fn strip_curves(mut r: Value) -> Value {
    if let Some(m) = r.as_object_mut() {
        m.remove("roc");
    }
    r
}

/// CT patient-level scores: max and mean of the positive-class probability over a patient's
/// slices (the slice max-pooling of the DeCoVNet 2-D variant). Only patients with ids.
fn patient_level(o: &Outputs, temperature: f64) -> Value {
    let mut by: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
    for i in 0..o.truth.len() {
        if let Some(p) = &o.patients[i] {
            let e = by.entry(p.as_str()).or_insert((Vec::new(), o.truth[i]));
            e.0.push(softmax_t(&o.logits[i], temperature)[1]);
            e.1 = e.1.max(o.truth[i]);
        }
    }
    if by.is_empty() {
        return Value::Null;
    }
    let pos: Vec<bool> = by.values().map(|(_, t)| *t == 1).collect();
    let maxs: Vec<f64> = by.values().map(|(s, _)| s.iter().copied().fold(0.0, f64::max)).collect();
    let means: Vec<f64> = by.values().map(|(s, _)| s.iter().sum::<f64>() / s.len() as f64).collect();
    let multi = by.values().filter(|(s, _)| s.len() > 1).count();
    json!({
        "patients": by.len(),
        "patients_with_several_slices": multi,
        "auc_max": finite(auc(&maxs, &pos)),
        "auc_mean": finite(auc(&means, &pos)),
        "accuracy_max_at_0.5": finite(maxs.iter().zip(&pos).filter(|(s, p)| (**s >= 0.5) == **p).count() as f64 / pos.len() as f64),
        "accuracy_mean_at_0.5": finite(means.iter().zip(&pos).filter(|(s, p)| (**s >= 0.5) == **p).count() as f64 / pos.len() as f64),
    })
}

/// Fit a temperature on one half of `o`'s patients and measure ECE on the other half, both
/// ways, so the calibrated ECE never sees the data its temperature was fitted on.
pub fn cross_fitted_ece(o: &Outputs, groups: &[String]) -> (f64, f64) {
    let half: Vec<bool> = groups.iter().map(|g| crate::stable_hash(g, 0) % 2 == 0).collect();
    let mut eces = Vec::new();
    let mut raws = Vec::new();
    for side in [true, false] {
        let fit: Vec<usize> = (0..o.truth.len()).filter(|&i| half[i] == side).collect();
        let test: Vec<usize> = (0..o.truth.len()).filter(|&i| half[i] != side).collect();
        if fit.is_empty() || test.is_empty() {
            continue;
        }
        let fl: Vec<Vec<f32>> = fit.iter().map(|&i| o.logits[i].clone()).collect();
        let ft: Vec<usize> = fit.iter().map(|&i| o.truth[i]).collect();
        let t = fit_temperature(&fl, &ft);
        let tp: Vec<Vec<f64>> = test.iter().map(|&i| softmax_t(&o.logits[i], t)).collect();
        let rp: Vec<Vec<f64>> = test.iter().map(|&i| softmax_t(&o.logits[i], 1.0)).collect();
        let tt: Vec<usize> = test.iter().map(|&i| o.truth[i]).collect();
        eces.push(ece(&tp, &tt, 15));
        raws.push(ece(&rp, &tt, 15));
    }
    let m = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    (m(&raws), m(&eces))
}
