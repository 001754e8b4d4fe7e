//! Adapted: what the manifest says about a model adapted on a user's own images — how it was
//! adapted ([`AdaptConfig`]), on what, and what cross-validation on that set measured
//! ([`Provenance`]). Plain serde types, so that the page and the CLI read an adapted model's
//! entry without the training code (the core's `train::adapt` does the adapting).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::report::Interval;

/// Which layers adaptation trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The linear head only: the fewest parameters, the least overfitting on a small set.
    Head,
    /// The last stage and the head.
    Last,
    /// Every layer.
    All,
}

impl Part {
    /// The deepest stage (0-based) that stays frozen, for a model of `stages` stages.
    pub fn frozen_through(self, stages: usize) -> Option<usize> {
        match self {
            Part::Head => stages.checked_sub(1),
            Part::Last => stages.checked_sub(2),
            Part::All => None,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Head => "head",
            Part::Last => "last",
            Part::All => "all",
        })
    }
}

impl FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "head" => Ok(Part::Head),
            "last" => Ok(Part::Last),
            "all" => Ok(Part::All),
            _ => Err(format!("'{s}': train one of head, last (the last stage and the head), all")),
        }
    }
}

/// How an adaptation runs. [`AdaptConfig::new`] gives the defaults for each [`Part`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptConfig {
    pub part: Part,
    /// Epochs at most; early stopping usually ends sooner.
    pub max_epochs: usize,
    /// Epochs without a better held-out AUC before stopping.
    pub patience: usize,
    pub batch: usize,
    /// Peak learning rate (one epoch of warm-up, then cosine decay over `max_epochs`).
    pub lr: f64,
    /// Cross-validation folds on the user's set.
    pub folds: usize,
    /// One patient in this many of a training part is held out for early stopping and for
    /// refitting the temperature and operating point.
    pub hold_one_in: usize,
    /// Sensitivity of the positive class the refitted operating point aims for (as shipped).
    pub target_sensitivity: f64,
    pub seed: u64,
}

impl AdaptConfig {
    pub fn new(part: Part) -> Self {
        let (lr, max_epochs, patience) = match part {
            Part::Head => (1e-3, 30, 5),
            Part::Last => (5e-4, 24, 8),
            Part::All => (1e-4, 15, 3),
        };
        AdaptConfig { part, max_epochs, patience, batch: 32, lr, folds: 5, hold_one_in: 5, target_sensitivity: 0.95, seed: 20261206 }
    }
}

/// What one epoch of one fit measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// The training loss (class-weighted as the recipe's) on the held-out patients.
    pub held_loss: f64,
    /// AUC on the held-out patients: what early stopping watches.
    pub held_auc: Option<f64>,
}

/// One cross-validation fold of an adaptation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRecord {
    pub fold: usize,
    pub train_images: usize,
    pub held_images: usize,
    pub test_images: usize,
    /// The epoch whose model was kept (0: no epoch beat the base model on the held-out part).
    pub best_epoch: usize,
    pub epochs: Vec<EpochRecord>,
    pub auc_before: Option<f64>,
    pub auc_after: Option<f64>,
}

/// The cross-validated gain of adapting, on the user's set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidated {
    pub folds: usize,
    /// The base model: the mean over folds of its AUC on each fold.
    pub auc_before: Option<f64>,
    pub auc_before_ci: Option<Interval>,
    /// The fold models: the mean over folds of each fold model's AUC on its own fold, which it
    /// never trained on (pooling the scores of five differently calibrated models would mix
    /// their scales).
    pub auc_after: Option<f64>,
    pub auc_after_ci: Option<Interval>,
    /// Paired bootstrap of after − before: the same patients in each resample.
    pub difference_ci: Option<Interval>,
    pub per_fold: Vec<FoldRecord>,
}

impl CrossValidated {
    /// The verdict on the gain, in words: the CLI prints it and the page shows it, from this
    /// one rule. Separate intervals that do not overlap say most; the paired interval of the
    /// difference (the same patients in each resample) is the test of a gain.
    pub fn verdict(&self) -> &'static str {
        match (&self.auc_before_ci, &self.auc_after_ci, &self.difference_ci) {
            (Some(b), Some(a), _) if a.lo > b.hi => "the adapted model is better: its interval lies above the base model's",
            (_, _, Some(d)) if d.lo > 0.0 => "the adapted model is better by the paired interval, though the two separate intervals overlap",
            (_, _, Some(d)) if d.hi < 0.0 => "the adapted model is WORSE on this set: keep the base model",
            (_, _, Some(_)) => "no gain shown: the interval of the difference includes zero",
            (_, _, None) => "too few images of a class to judge the difference",
        }
    }
}

/// What an adapted model's manifest entry says about how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// SHA-256 of the base model's record and its title.
    pub base_sha256: String,
    pub base_title: String,
    pub config: AdaptConfig,
    /// Usable images per class, and whether every image named its patient.
    pub counts: Vec<usize>,
    pub grouped: bool,
    pub cross_validation: CrossValidated,
    /// The final fit on the whole set.
    pub final_fit: FoldRecord,
    pub warning: String,
}

/// What every adapted model says about itself.
pub const WARNING: &str = "adapted locally on the user's own images — not validated: the cross-validated AUC on that set is the only evidence, small sets overfit, and its interval shows how little a small set can tell";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::Resampled;

    fn ci(lo: f64, hi: f64) -> Option<Interval> {
        Some(Interval { lo, hi, level: 0.95, resamples: 1000, unit: Resampled::Patients })
    }

    /// One rule for the CLI and the page: separate intervals apart, then the paired interval.
    #[test]
    fn the_verdict_reads_the_separate_then_the_paired_interval() {
        let cv = |b, a, d| CrossValidated {
            folds: 5,
            auc_before: Some(0.7),
            auc_before_ci: b,
            auc_after: Some(0.8),
            auc_after_ci: a,
            difference_ci: d,
            per_fold: Vec::new(),
        };
        assert!(cv(ci(0.6, 0.7), ci(0.75, 0.85), ci(0.05, 0.15)).verdict().contains("lies above"));
        assert!(cv(ci(0.6, 0.8), ci(0.7, 0.9), ci(0.01, 0.1)).verdict().contains("paired interval"));
        assert!(cv(ci(0.6, 0.8), ci(0.5, 0.7), ci(-0.2, -0.01)).verdict().contains("WORSE"));
        assert!(cv(ci(0.6, 0.8), ci(0.6, 0.8), ci(-0.02, 0.02)).verdict().contains("includes zero"));
        assert!(cv(None, None, None).verdict().contains("too few"));
    }
}
