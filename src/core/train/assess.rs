//! Assessment: how a model does on a user's own labelled images. It is the model card's
//! [`Report`] plus what a small local set needs: a 95 % confidence interval for the AUC by
//! bootstrap (over patients when the set names them, so that slices of one patient do not count
//! as independent evidence), a reliability table, the decisions at any threshold the user
//! tries, and the worst-classified files to open. The page and `ctxr eval --data` call the same
//! functions, so the browser's numbers and the CLI's are the same numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::infer::decision::{argmax, softmax};
use crate::model::report::{AtOperatingPoint, Report};
pub use crate::model::report::{Interval, Resampled};
use crate::model::{ModelEntry, ModelId, OperatingPoint};
use crate::train::labelled::{LabelledSet, SetAside};
use crate::train::metrics::auc;
use crate::train::report::{Outputs, at_operating_point, finite, report};

/// Bootstrap resamples behind the AUC's confidence interval.
pub const RESAMPLES: usize = 1000;
/// Bins of the reliability table (equal width in the top-label confidence).
pub const RELIABILITY_BINS: usize = 10;
/// Files listed as the worst classified.
pub const WORST: usize = 20;

/// One bin of the reliability table: how often the model was right when it was this sure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    /// Mean top-label probability of the bin's images (`None` for an empty bin).
    pub confidence: Option<f64>,
    /// Share of them whose top label is the truth.
    pub accuracy: Option<f64>,
}

/// One of the worst-classified files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Miss {
    /// Index into the assessed items.
    pub index: usize,
    pub truth: usize,
    /// The model's (calibrated) probability of the true class.
    pub p_truth: f64,
    /// The decision at the stored operating point (arg-max without one).
    pub decided: usize,
}

/// A model's assessment on one labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub report: Report,
    /// 95 % interval of the headline AUC (the positive class's for two classes, the macro AUC
    /// otherwise); `None` when the set has too few of a class for any resample to have one.
    pub auc_ci: Option<Interval>,
    pub reliability: Vec<ReliabilityBin>,
    /// Lowest probability of the true class first.
    pub worst: Vec<Miss>,
}

/// The headline AUC of calibrated probabilities: the positive (second) class's for two
/// classes, the mean over classes that have both outcomes otherwise (as [`report`] does).
pub fn headline_auc(probs: &[Vec<f64>], truth: &[usize], classes: usize) -> f64 {
    let one = |c: usize| {
        let s: Vec<f64> = probs.iter().map(|p| p.get(c).copied().unwrap_or(0.0)).collect();
        let pos: Vec<bool> = truth.iter().map(|&t| t == c).collect();
        auc(&s, &pos)
    };
    if classes == 2 {
        return one(1);
    }
    let valid: Vec<f64> = (0..classes).map(one).filter(|a| a.is_finite()).collect();
    if valid.is_empty() { f64::NAN } else { valid.iter().sum::<f64>() / valid.len() as f64 }
}

/// A small, seedable generator (SplitMix64), so that the interval is the same in the browser
/// and natively.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }
}

/// Resampling clusters: whole groups when every item names one, else single items.
fn clusters(n: usize, groups: &[Option<String>]) -> (Vec<Vec<usize>>, Resampled) {
    let grouped = n > 0 && groups.len() == n && groups.iter().all(Option::is_some);
    if !grouped {
        return ((0..n).map(|i| vec![i]).collect(), Resampled::Images);
    }
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by.entry(g.as_deref().unwrap_or_default()).or_default().push(i);
    }
    (by.into_values().collect(), Resampled::Patients)
}

/// Percentile bootstrap interval of `stat` (computed on the items of a resample, repeats
/// included), resampling whole groups (every item names one) or single items. Resamples where
/// `stat` is not finite (one class drawn only) are dropped; fewer than half left gives no
/// interval. A statistic of two models on the same items (a difference) is paired: both see
/// the same patients in each resample.
pub fn bootstrap(n: usize, groups: &[Option<String>], resamples: usize, seed: u64, mut stat: impl FnMut(&[usize]) -> f64) -> Option<Interval> {
    let (clusters, unit) = clusters(n, groups);
    if clusters.len() < 2 {
        return None;
    }
    let mut rng = SplitMix(seed);
    let mut values = Vec::with_capacity(resamples);
    let mut items = Vec::with_capacity(n);
    for _ in 0..resamples {
        items.clear();
        for _ in 0..clusters.len() {
            items.extend_from_slice(&clusters[rng.below(clusters.len())]);
        }
        let v = stat(&items);
        if v.is_finite() {
            values.push(v);
        }
    }
    if values.is_empty() || values.len() < resamples / 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Some(Interval { lo: at(0.025), hi: at(0.975), level: 0.95, resamples: values.len(), unit })
}

/// Percentile bootstrap interval of the headline AUC, resampling whole groups (`groups[i]`
/// for every item) or single items when any item has no group.
pub fn auc_interval(probs: &[Vec<f64>], truth: &[usize], classes: usize, groups: &[Option<String>], resamples: usize, seed: u64) -> Option<Interval> {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    bootstrap(truth.len(), groups, resamples, seed, |items| {
        p.clear();
        t.clear();
        for &i in items {
            p.push(probs[i].clone());
            t.push(truth[i]);
        }
        headline_auc(&p, &t, classes)
    })
}

/// The mean over folds of the headline AUC on each fold's items among `items` (repeats
/// included): the cross-validated AUC when fold `f`'s items were scored by fold `f`'s model
/// (pooling the scores of differently calibrated models would mix their scales). Folds whose
/// items lack a class are left out; none left gives NaN.
pub fn fold_mean_auc(probs: &[Vec<f64>], truth: &[usize], classes: usize, fold_of: &[usize], folds: usize, items: &[usize]) -> f64 {
    let mut aucs = Vec::with_capacity(folds);
    for f in 0..folds {
        let (p, t): (Vec<Vec<f64>>, Vec<usize>) = items.iter().filter(|&&i| fold_of[i] == f).map(|&i| (probs[i].clone(), truth[i])).unzip();
        let a = headline_auc(&p, &t, classes);
        if a.is_finite() {
            aucs.push(a);
        }
    }
    if aucs.is_empty() { f64::NAN } else { aucs.iter().sum::<f64>() / aucs.len() as f64 }
}

/// The reliability table of the top-label confidence in `bins` equal-width bins.
pub fn reliability(probs: &[Vec<f64>], truth: &[usize], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut sum = vec![(0usize, 0.0f64, 0usize); bins];
    for (p, &y) in probs.iter().zip(truth) {
        let top = argmax(p);
        let c = p.get(top).copied().unwrap_or(0.0);
        let b = ((c * bins as f64) as usize).min(bins - 1);
        sum[b].0 += 1;
        sum[b].1 += c;
        sum[b].2 += usize::from(top == y);
    }
    sum.iter()
        .enumerate()
        .map(|(b, &(n, conf, right))| ReliabilityBin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            n,
            confidence: (n > 0).then(|| conf / n as f64).and_then(finite),
            accuracy: (n > 0).then(|| right as f64 / n as f64).and_then(finite),
        })
        .collect()
}

/// The decisions at a threshold the user chose: the counts, and each image's decided class
/// (so that an export lists the decisions the counts are made of).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtThreshold {
    #[serde(flatten)]
    pub at: AtOperatingPoint,
    pub decided: Vec<usize>,
}

/// The decisions at `threshold` on the positive class of `op` (the page's threshold slider).
pub fn at_threshold(probs: &[Vec<f64>], truth: &[usize], classes: &[String], op: &OperatingPoint, threshold: f64) -> AtThreshold {
    let moved = OperatingPoint { threshold, ..op.clone() };
    let decided = probs.iter().map(|p| moved.decide(p, classes)).collect();
    AtThreshold { at: at_operating_point(probs, truth, classes, &moved), decided }
}

/// A model measured on a user's labelled set, as the page shows it: the assessment with
/// each usable file's label and probabilities (for the threshold, the export and the files
/// to open), the files set aside, and what the images take in memory.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub model: ModelId,
    pub title: String,
    pub classes: Vec<String>,
    /// The usable files, in the order of `truth`, `probabilities` and the assessment's indices.
    pub files: Vec<String>,
    pub truth: Vec<usize>,
    pub probabilities: Vec<Vec<f64>>,
    pub counts: Vec<usize>,
    pub grouped: bool,
    pub set_aside: Vec<SetAside>,
    pub assessment: Assessment,
    /// The stored operating point the threshold starts from (none: no threshold to move).
    pub operating_point: Option<OperatingPoint>,
    /// Bytes the images take as the model's 8-bit input (what an adaptation keeps).
    pub image_bytes: usize,
}

impl Measurement {
    /// Measure the model of `entry` from its `logits` on the usable files of `set`, in order.
    pub fn new(entry: &ModelEntry, set: &LabelledSet, logits: &[Vec<f32>], image_bytes: usize) -> Self {
        let truth: Vec<usize> = set.items.iter().map(|i| i.label).collect();
        let groups: Vec<Option<String>> = set.items.iter().map(|i| i.group.clone()).collect();
        let t = f64::from(entry.temperature());
        let op = entry.operating_point.clone();
        Measurement {
            model: entry.id,
            title: entry.title.clone(),
            classes: entry.classes.clone(),
            files: set.items.iter().map(|i| i.path.clone()).collect(),
            probabilities: logits.iter().map(|l| softmax(l, t)).collect(),
            counts: set.counts(),
            grouped: set.grouped(),
            set_aside: set.set_aside.clone(),
            assessment: assess(&entry.classes, logits, &truth, &groups, t, op.as_ref()),
            operating_point: op,
            truth,
            image_bytes,
        }
    }

    /// The decisions at `threshold`, or `None` for a model without an operating point.
    pub fn at(&self, threshold: f64) -> Option<AtThreshold> {
        let op = self.operating_point.as_ref()?;
        Some(at_threshold(&self.probabilities, &self.truth, &self.classes, op, threshold.clamp(0.0, 1.0)))
    }
}

/// Assess a model from its logits on a labelled set: `truth[i]` indexes `classes`,
/// `groups[i]` names the patient where known. Probabilities use the model's `temperature`,
/// decisions its operating point `op`, as on the page.
pub fn assess(
    classes: &[String],
    logits: &[Vec<f32>],
    truth: &[usize],
    groups: &[Option<String>],
    temperature: f64,
    op: Option<&OperatingPoint>,
) -> Assessment {
    let sources = vec![String::new(); truth.len()];
    let o = Outputs { classes, logits, truth, sources: &sources, patients: groups };
    let report = report(&o, temperature, op);
    let probs: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l, temperature)).collect();
    let auc_ci = auc_interval(&probs, truth, classes.len(), groups, RESAMPLES, 20261206);
    let mut worst: Vec<Miss> = probs
        .iter()
        .zip(truth)
        .enumerate()
        .map(|(index, (p, &t))| Miss {
            index,
            truth: t,
            p_truth: p.get(t).copied().unwrap_or(0.0),
            decided: op.map(|op| op.decide(p, classes)).unwrap_or_else(|| argmax(p)),
        })
        .collect();
    worst.sort_by(|a, b| a.p_truth.total_cmp(&b.p_truth).then(a.index.cmp(&b.index)));
    worst.truncate(WORST);
    Assessment { report, auc_ci, reliability: reliability(&probs, truth, RELIABILITY_BINS), worst }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["noncovid".into(), "covid".into()]
    }

    /// Logits of a model whose P(covid) rises with `i` on a set where covid gets likelier too.
    fn noisy_set(n: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = SplitMix(7);
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        for _ in 0..n {
            let y = rng.below(2);
            let z = (y as f32 - 0.5) * 1.5 + (rng.below(1000) as f32 / 1000.0 - 0.5) * 3.0;
            logits.push(vec![0.0, z]);
            truth.push(y);
        }
        (logits, truth)
    }

    #[test]
    fn the_interval_holds_the_auc_and_narrows_with_more_images() {
        let (l, t) = noisy_set(400);
        let a = assess(&classes(), &l, &t, &vec![None; 400], 1.0, None);
        let auc = a.report.auc.unwrap();
        let ci = a.auc_ci.clone().unwrap();
        assert!(ci.lo < auc && auc < ci.hi, "{ci:?} vs {auc}");
        assert_eq!(ci.unit, Resampled::Images);
        assert!(ci.resamples == RESAMPLES);
        let small = assess(&classes(), &l[..60], &t[..60], &vec![None; 60], 1.0, None).auc_ci.unwrap();
        assert!(small.hi - small.lo > ci.hi - ci.lo, "60 images {small:?} vs 400 {ci:?}");
        // The same inputs give the same interval (a fixed seed: the page and the CLI agree).
        assert_eq!(assess(&classes(), &l, &t, &vec![None; 400], 1.0, None).auc_ci, Some(ci));
    }

    #[test]
    fn resampling_patients_widens_the_interval_when_slices_repeat() {
        // 40 patients, 10 identical slices each: as images it looks like 400 independent cases.
        let (l, t) = noisy_set(40);
        let l10: Vec<Vec<f32>> = l.iter().flat_map(|x| std::iter::repeat_n(x.clone(), 10)).collect();
        let t10: Vec<usize> = t.iter().flat_map(|&x| std::iter::repeat_n(x, 10)).collect();
        let g10: Vec<Option<String>> = (0..400).map(|i| Some(format!("p{}", i / 10))).collect();
        let as_images = auc_interval(&l10.iter().map(|x| softmax(x, 1.0)).collect::<Vec<_>>(), &t10, 2, &vec![None; 400], 500, 1).unwrap();
        let as_patients = auc_interval(&l10.iter().map(|x| softmax(x, 1.0)).collect::<Vec<_>>(), &t10, 2, &g10, 500, 1).unwrap();
        assert_eq!(as_patients.unit, Resampled::Patients);
        // No resamples, no interval (and no panic).
        assert_eq!(auc_interval(&l10.iter().map(|x| softmax(x, 1.0)).collect::<Vec<_>>(), &t10, 2, &g10, 0, 1), None);
        assert!(as_patients.hi - as_patients.lo > 2.0 * (as_images.hi - as_images.lo), "{as_patients:?} vs {as_images:?}");
    }

    #[test]
    fn the_paired_difference_sees_a_small_gain_that_separate_intervals_hide() {
        // The same scores, with a little extra signal added for every positive afterwards;
        // three folds.
        let (l, t) = noisy_set(300);
        let before: Vec<Vec<f64>> = l.iter().map(|x| softmax(x, 1.0)).collect();
        let after: Vec<Vec<f64>> = l.iter().zip(&t).map(|(x, &y)| softmax(&[x[0], x[1] + 0.4 * y as f32], 1.0)).collect();
        let folds: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let g = vec![None; 300];
        let all: Vec<usize> = (0..300).collect();
        let m = |p: &[Vec<f64>], it: &[usize]| fold_mean_auc(p, &t, 2, &folds, 3, it);
        let per_fold: f64 = (0..3)
            .map(|f| {
                let (p, tt): (Vec<Vec<f64>>, Vec<usize>) = (0..300).filter(|i| i % 3 == f).map(|i| (before[i].clone(), t[i])).unzip();
                headline_auc(&p, &tt, 2)
            })
            .sum::<f64>()
            / 3.0;
        assert!((m(&before, &all) - per_fold).abs() < 1e-12);
        let ib = bootstrap(300, &g, 500, 3, |it| m(&before, it)).unwrap();
        let ia = bootstrap(300, &g, 500, 3, |it| m(&after, it)).unwrap();
        assert!(ia.lo < ib.hi, "the separate intervals overlap: {ib:?} {ia:?}");
        let d = bootstrap(300, &g, 500, 3, |it| m(&after, it) - m(&before, it)).unwrap();
        assert!(d.lo > 0.0, "the paired interval excludes no gain: {d:?}");
        let none = bootstrap(300, &g, 500, 3, |it| m(&before, it) - m(&before, it)).unwrap();
        assert_eq!((none.lo, none.hi), (0.0, 0.0));
    }

    #[test]
    fn one_class_has_no_interval_and_the_worst_come_first() {
        let l = vec![vec![0.0, 2.0], vec![0.0, -3.0], vec![0.0, 0.5]];
        let a = assess(&classes(), &l, &[1, 1, 1], &[None, None, None], 1.0, None);
        assert_eq!(a.auc_ci, None);
        assert_eq!(a.report.auc, None);
        let order: Vec<usize> = a.worst.iter().map(|m| m.index).collect();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(a.worst[0].decided, 0);
    }

    #[test]
    fn reliability_bins_count_every_image_and_match_the_ece() {
        let (l, t) = noisy_set(300);
        let probs: Vec<Vec<f64>> = l.iter().map(|x| softmax(x, 1.0)).collect();
        let bins = reliability(&probs, &t, 15);
        assert_eq!(bins.iter().map(|b| b.n).sum::<usize>(), 300);
        let ece: f64 = bins.iter().filter(|b| b.n > 0).map(|b| b.n as f64 / 300.0 * (b.accuracy.unwrap() - b.confidence.unwrap()).abs()).sum();
        assert!((ece - crate::train::metrics::ece(&probs, &t, 15)).abs() < 1e-5);
    }

    #[test]
    fn a_moved_threshold_trades_sensitivity_for_specificity() {
        let (l, t) = noisy_set(300);
        let probs: Vec<Vec<f64>> = l.iter().map(|x| softmax(x, 1.0)).collect();
        let op = OperatingPoint {
            positive_class: "covid".into(),
            threshold: 0.5,
            target_sensitivity: 0.95,
            validation_sensitivity: 0.95,
            validation_specificity: 0.5,
            chosen_on: "test".into(),
        };
        let low = at_threshold(&probs, &t, &classes(), &op, 0.2);
        let high = at_threshold(&probs, &t, &classes(), &op, 0.8);
        let sens = |a: &AtThreshold| a.at.per_class[1].sensitivity.unwrap();
        let spec = |a: &AtThreshold| a.at.per_class[1].specificity.unwrap();
        assert!(sens(&low) > sens(&high) && spec(&low) < spec(&high));
        assert_eq!(low.at.threshold, 0.2);
        assert_eq!(at_threshold(&probs, &t, &classes(), &op, 0.5).at, at_operating_point(&probs, &t, &classes(), &op));
        // Each image's decision agrees with the counts.
        let covid_decided = low.decided.iter().filter(|&&d| d == 1).count() as u64;
        assert_eq!(covid_decided, low.at.confusion.iter().map(|row| row[1]).sum::<u64>());
    }
}
