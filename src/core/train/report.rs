//! Reports: turn a model's outputs on labelled images into the typed [`Report`] that the model
//! card, `ctxr eval` and the page's evaluation of a user's own images show (overall, per
//! source and per patient). One builder, so a number computed in the lab and one computed in
//! the browser are the same number.

use std::collections::BTreeMap;

use crate::infer::decision::{argmax, softmax};
use crate::model::OperatingPoint;
use crate::model::report::{AtOperatingPoint, ClassRow, PatientLevel, Report, SubtypeAuc};
use crate::train::metrics::{ClassMetrics, accuracy, auc, confusion, ece, per_class, roc, thin};

/// Model outputs on a labelled set.
pub struct Outputs<'a> {
    pub classes: &'a [String],
    pub logits: &'a [Vec<f32>],
    pub truth: &'a [usize],
    pub sources: &'a [String],
    /// Patient id per image (`None` where the source has none).
    pub patients: &'a [Option<String>],
}

/// A metric as stored: rounded to 6 decimals, `None` when undefined.
pub fn finite(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1e6).round() / 1e6)
}

fn row(c: &ClassMetrics, with_support: bool) -> ClassRow {
    ClassRow {
        class: c.class.clone(),
        support: with_support.then_some(c.support),
        sensitivity: finite(c.sensitivity),
        specificity: finite(c.specificity),
        precision: finite(c.precision),
        f1: finite(c.f1),
    }
}

/// Threshold-free and arg-max metrics (plus the operating point's, when given).
pub fn report(o: &Outputs, temperature: f64, op: Option<&OperatingPoint>) -> Report {
    let k = o.classes.len();
    let raw: Vec<Vec<f64>> = o.logits.iter().map(|l| softmax(l, 1.0)).collect();
    let cal: Vec<Vec<f64>> = o.logits.iter().map(|l| softmax(l, temperature)).collect();
    let pred: Vec<usize> = cal.iter().map(|p| argmax(p)).collect();
    let conf = confusion(o.truth, &pred, k);
    let mut roc_curves = BTreeMap::new();
    let mut aucs = Vec::new();
    for (c, name) in o.classes.iter().enumerate() {
        let scores: Vec<f64> = cal.iter().map(|p| p[c]).collect();
        let pos: Vec<bool> = o.truth.iter().map(|&t| t == c).collect();
        let a = auc(&scores, &pos);
        aucs.push(a);
        // A two-class report draws the positive class's curve only.
        if a.is_finite() && !(k == 2 && c == 0) {
            roc_curves.insert(name.clone(), thin(&roc(&scores, &pos), 101));
        }
    }
    let (auc2, positive_class, macro_auc, auc_per_class) = if k == 2 {
        (finite(aucs[1]), Some(o.classes[1].clone()), None, None)
    } else {
        let valid: Vec<f64> = aucs.iter().copied().filter(|a| a.is_finite()).collect();
        let macro_auc = if valid.is_empty() { None } else { finite(valid.iter().sum::<f64>() / valid.len() as f64) };
        (None, None, macro_auc, Some(o.classes.iter().zip(&aucs).map(|(c, a)| (c.clone(), finite(*a))).collect()))
    };
    let at_operating_point = op.map(|op| at_operating_point(&cal, o.truth, o.classes, op));
    Report {
        n: o.truth.len(),
        accuracy: finite(accuracy(o.truth, &pred)),
        classes: o.classes.to_vec(),
        per_class: per_class(&conf, o.classes).iter().map(|c| row(c, true)).collect(),
        confusion: conf,
        ece_raw: finite(ece(&raw, o.truth, 15)),
        ece_calibrated: finite(ece(&cal, o.truth, 15)),
        temperature: finite(temperature),
        class_counts: (0..k).map(|c| o.truth.iter().filter(|&&t| t == c).count()).collect(),
        auc: auc2,
        positive_class,
        macro_auc,
        auc_per_class,
        roc: Some(roc_curves),
        at_operating_point,
        per_source: None,
        patient_level: None,
        per_subtype: None,
        skipped_unknown_labels: None,
        failed_to_decode: None,
    }
}

/// The decisions of `op` (the stored operating point, or any threshold a user tries) on
/// calibrated probabilities, and their metrics.
pub fn at_operating_point(probs: &[Vec<f64>], truth: &[usize], classes: &[String], op: &OperatingPoint) -> AtOperatingPoint {
    let dec: Vec<usize> = probs.iter().map(|p| op.decide(p, classes)).collect();
    let conf = confusion(truth, &dec, classes.len());
    AtOperatingPoint {
        threshold: op.threshold,
        positive_class: op.positive_class.clone(),
        accuracy: finite(accuracy(truth, &dec)),
        per_class: per_class(&conf, classes).iter().map(|c| row(c, false)).collect(),
        confusion: conf,
    }
}

/// Metrics per source, and per patient (max and mean of slice probabilities) where ids exist.
pub fn full_report(o: &Outputs, temperature: f64, op: Option<&OperatingPoint>) -> Report {
    let mut v = report(o, temperature, op);
    let mut sources: Vec<&String> = o.sources.iter().collect();
    sources.sort();
    sources.dedup();
    let mut per_source = BTreeMap::new();
    for s in sources {
        let idx: Vec<usize> = (0..o.truth.len()).filter(|&i| o.sources[i] == *s).collect();
        let l: Vec<Vec<f32>> = idx.iter().map(|&i| o.logits[i].clone()).collect();
        let t: Vec<usize> = idx.iter().map(|&i| o.truth[i]).collect();
        let so: Vec<String> = idx.iter().map(|&i| o.sources[i].clone()).collect();
        let p: Vec<Option<String>> = idx.iter().map(|&i| o.patients[i].clone()).collect();
        let mut r = report(&Outputs { classes: o.classes, logits: &l, truth: &t, sources: &so, patients: &p }, temperature, op);
        r.roc = None;
        per_source.insert(s.clone(), r);
    }
    v.per_source = Some(per_source);
    if o.classes.len() == 2 {
        v.patient_level = patient_level(o, temperature);
    }
    v
}

/// Images a subtype, and the images it is ranked against, need for [`subtype_aucs`] to report
/// it: an AUC of a handful of images says nothing (ieee8023 has pneumonias of a dozen causes,
/// one to sixteen films each).
pub const MIN_SUBTYPE_IMAGES: usize = 10;

/// AUC of each subtype against its source's images of the other labels, for every label a
/// source splits into two or more subtypes (`subtypes[i]` is image i's, empty for none),
/// where both sides have at least [`MIN_SUBTYPE_IMAGES`]; `None` where there is none (as
/// [`Report::per_subtype`] stores it). Uncalibrated probabilities: a temperature does not
/// change a ranking.
pub fn subtype_aucs(o: &Outputs, subtypes: &[String]) -> Option<Vec<SubtypeAuc>> {
    let mut groups: BTreeMap<(&str, usize), BTreeMap<&str, Vec<usize>>> = BTreeMap::new();
    for (i, st) in subtypes.iter().enumerate().take(o.truth.len()).filter(|(_, st)| !st.is_empty()) {
        groups.entry((o.sources[i].as_str(), o.truth[i])).or_default().entry(st.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    for ((source, label), by) in groups.into_iter().filter(|(_, by)| by.len() >= 2) {
        let others: Vec<usize> = (0..o.truth.len()).filter(|&i| o.sources[i] == source && o.truth[i] != label).collect();
        if others.len() < MIN_SUBTYPE_IMAGES {
            continue;
        }
        for (subtype, rows) in by.into_iter().filter(|(_, rows)| rows.len() >= MIN_SUBTYPE_IMAGES) {
            let p = |i: usize| softmax(&o.logits[i], 1.0).get(label).copied().unwrap_or(0.0);
            let scores: Vec<f64> = rows.iter().chain(&others).map(|&i| p(i)).collect();
            let pos: Vec<bool> = rows.iter().map(|_| true).chain(others.iter().map(|_| false)).collect();
            out.push(SubtypeAuc {
                source: source.to_string(),
                label: o.classes.get(label).cloned().unwrap_or_default(),
                subtype: subtype.to_string(),
                n: rows.len(),
                against: others.len(),
                auc: finite(auc(&scores, &pos)),
            });
        }
    }
    (!out.is_empty()).then_some(out)
}

/// CT patient-level scores: max and mean of the positive-class probability over a patient's
/// slices (the slice max-pooling of the DeCoVNet 2-D variant). Only patients with ids.
fn patient_level(o: &Outputs, temperature: f64) -> Option<PatientLevel> {
    let mut by: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
    for i in 0..o.truth.len() {
        if let Some(p) = &o.patients[i] {
            let e = by.entry(p.as_str()).or_insert((Vec::new(), o.truth[i]));
            e.0.push(softmax(&o.logits[i], temperature)[1]);
            e.1 = e.1.max(o.truth[i]);
        }
    }
    if by.is_empty() {
        return None;
    }
    let pos: Vec<bool> = by.values().map(|(_, t)| *t == 1).collect();
    let maxs: Vec<f64> = by.values().map(|(s, _)| s.iter().copied().fold(0.0, f64::max)).collect();
    let means: Vec<f64> = by.values().map(|(s, _)| s.iter().sum::<f64>() / s.len() as f64).collect();
    let at_half = |scores: &[f64]| finite(scores.iter().zip(&pos).filter(|(s, p)| (**s >= 0.5) == **p).count() as f64 / pos.len() as f64);
    Some(PatientLevel {
        patients: by.len(),
        patients_with_several_slices: by.values().filter(|(s, _)| s.len() > 1).count(),
        auc_max: finite(auc(&maxs, &pos)),
        auc_mean: finite(auc(&means, &pos)),
        accuracy_max_at_half: at_half(&maxs),
        accuracy_mean_at_half: at_half(&means),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_class_report_has_an_auc_and_a_multi_class_one_a_macro_auc() {
        let classes2 = vec!["noncovid".to_string(), "covid".to_string()];
        let logits = vec![vec![2.0, 0.0], vec![0.0, 2.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        let truth = vec![0, 1, 0, 1];
        let sources = vec!["a".to_string(); 4];
        let patients = vec![None; 4];
        let r = report(&Outputs { classes: &classes2, logits: &logits, truth: &truth, sources: &sources, patients: &patients }, 1.0, None);
        assert_eq!((r.auc, r.macro_auc, r.positive_class.as_deref()), (Some(1.0), None, Some("covid")));
        assert_eq!(r.confusion, vec![vec![2, 0], vec![0, 2]]);
        assert_eq!(r.roc.as_ref().map(|m| m.keys().cloned().collect::<Vec<_>>()), Some(vec!["covid".to_string()]));
        let classes3 = vec!["normal".to_string(), "pneumonia".to_string(), "covid".to_string()];
        let logits3 = vec![vec![2.0, 0.0, 0.0], vec![0.0, 2.0, 0.0], vec![0.0, 0.0, 2.0]];
        let r3 = report(&Outputs { classes: &classes3, logits: &logits3, truth: &[0, 1, 2], sources: &sources[..3], patients: &patients[..3] }, 1.0, None);
        assert_eq!((r3.auc, r3.macro_auc, r3.headline_auc()), (None, Some(1.0), Some(1.0)));
    }

    #[test]
    fn a_label_split_into_subtypes_gets_one_auc_per_subtype_against_the_other_labels() {
        let classes = vec!["noncovid".to_string(), "covid".to_string()];
        let (mut logits, mut truth, mut sources, mut subtypes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut add = |source: &str, subtype: &str, label: usize, score: f32, n: usize| {
            for i in 0..n {
                logits.push(vec![0.0, score + i as f32 * 0.01]);
                truth.push(label);
                sources.push(source.to_string());
                subtypes.push(subtype.to_string());
            }
        };
        // Source m: negatives around 0; grade A ranked above all of them, grade B below all,
        // grade C (too few to rank) and source u (one subtype per label: nothing to split)
        // left out, as is source v (too few negatives).
        add("m", "CT-0", 0, 0.0, 12);
        add("m", "A", 1, 5.0, 10);
        add("m", "B", 1, -5.0, 11);
        add("m", "C", 1, 5.0, 9);
        add("u", "x", 0, 0.0, 20);
        add("u", "y", 1, 1.0, 20);
        add("v", "n", 0, 0.0, 9);
        add("v", "p", 1, 1.0, 10);
        add("v", "q", 1, 1.0, 10);
        let patients = vec![None; truth.len()];
        let o = Outputs { classes: &classes, logits: &logits, truth: &truth, sources: &sources, patients: &patients };
        let rows = subtype_aucs(&o, &subtypes).expect("two subtypes to report");
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].subtype.as_str(), rows[0].label.as_str(), rows[0].n, rows[0].against, rows[0].auc), ("A", "covid", 10, 12, Some(1.0)));
        assert_eq!((rows[1].subtype.as_str(), rows[1].n, rows[1].auc), ("B", 11, Some(0.0)));
        // Nothing to split: no table at all.
        assert_eq!(subtype_aucs(&o, &vec![String::new(); truth.len()]), None);
    }
}
