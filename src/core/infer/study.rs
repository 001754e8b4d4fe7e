//! Study: score a whole CT volume from its slices. The CT model reads one lung-level slice;
//! a scan is 100–600 slices, most of them above or below the lungs, where the model has never
//! looked. So the study (1) measures each slice's lung area with the lung crop's own measure,
//! (2) classifies only the lung-level slices, in batches, and (3) scores the study from their
//! P(COVID-19) by two rules: the maximum over slices, as DeCoVNet (seed 002) pools a volume,
//! and the mean of the top k, which one mis-read slice cannot carry alone.
//!
//! What the score is not: a slice model pooled over a scan is not a study-level model; it has
//! not been validated on whole studies (the slice sources hold a few slices per patient).

use serde::Serialize;

use super::classifier::{Classifier, ClassifyError};
use crate::decode::Volume;
use crate::decode::series::{Series, SeriesFacts};
use crate::imaging::crop::lung_fraction;
use crate::imaging::{WindowChoice, apply_window, resolve_window};
use crate::model::{BackendKind, Modality};

/// Slices whose lung share is below this fraction of the study's largest are not lung-level
/// (apices, bases, neck, abdomen); relative, so that the field of view does not matter.
pub const LUNG_LEVEL_OF_PEAK: f32 = 0.25;
/// Nor are slices with less than this share of the image in lung, whatever the peak.
pub const LUNG_LEVEL_MIN: f32 = 0.02;
/// The top-k mean's k (fewer when fewer slices are lung-level).
pub const TOP_K: usize = 5;

/// Slices per forward pass when a study is scored on `backend`. Measured by the browser test
/// (192² study, 24 lung-level slices, lung measure included): WebGPU on SwiftShader gains 3–4×
/// from batching (1.8 slices/s at 1, 5.7–6.3 at 16, 5.8–7.3 at 32), since each batch costs one
/// dispatch per layer and one read-back. On the CPU the fused pass runs a batch's images one
/// after the other, so the forward pass alone gains nothing (`./build.sh bench`: 179 / 173 /
/// 173 CT images/s at batch 1 / 8 / 32), but a study step's own cost (the lung measure, one
/// call into the worker) is spread: the browser test scores 81 / 116 / 123 / 124 slices/s at
/// batch 1 / 4 / 16 / 32 (release build, 2026-12-06). On two threads (the threaded build) a
/// batch gives each thread whole images: 82 / 121 / 126 / 135 slices/s against 70 / 93 / 97 /
/// 96 on one thread in the same run (CI's lean build, 2026-12-07). A real GPU is expected to
/// gain more from large batches; 32 slices of 192² are 4.7 MB of input.
pub fn batch_for(backend: BackendKind) -> usize {
    match backend {
        BackendKind::WebGpu => 32,
        BackendKind::Cpu => 16,
    }
}

/// The most images one forward pass takes (a study's batch, a benchmark's): 64 slices of 192²
/// are 9.4 MB of input, and no backend measured gains past 32.
pub const MAX_BATCH: usize = 64;

/// A DICOM series with fewer slices than this is not a study (a radiograph and its lateral, a
/// key image or two): its files are read as single images.
pub const MIN_STUDY_SLICES: u32 = 3;

/// A volume opened for viewing and scoring: a NIfTI file or one series of a DICOM folder.
#[derive(Debug, Clone, Serialize)]
pub struct OpenStudy {
    pub name: String,
    /// What the folder said about the series (absent for a NIfTI file).
    pub series: Option<SeriesFacts>,
    /// The volume's facts (its voxels are not serialised).
    pub volume: Volume,
    /// Lowest and highest value, for the viewer's window range.
    pub value_range: [f32; 2],
}

impl OpenStudy {
    pub fn new(name: String, series: Option<SeriesFacts>, volume: Volume) -> Self {
        let (lo, hi) = volume.value_range();
        OpenStudy { name, series, volume, value_range: [lo, hi] }
    }

    /// One series of a folder named `folder`; `numbered` adds the series number (or UID) to
    /// the name when the folder holds several.
    pub fn from_series(folder: &str, series: Series, numbered: bool) -> Self {
        let name = match (numbered, series.series_number, series.series_instance_uid.as_deref()) {
            (false, _, _) => folder.to_string(),
            (true, Some(n), _) => format!("{folder} (series {n})"),
            (true, None, uid) => format!("{folder} (series {})", uid.unwrap_or("?")),
        };
        let (facts, volume) = series.into_parts();
        OpenStudy::new(name, Some(facts), volume)
    }
}

/// How the study score pools slice probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyRule {
    /// The largest P(COVID-19) over the lung-level slices (DeCoVNet's pooling).
    MaxSlice,
    /// The mean of the [`TOP_K`] largest.
    TopKMean,
}

/// One slice of a study, in anatomical order (superior first).
#[derive(Debug, Clone, Serialize)]
pub struct SliceScore {
    pub index: u32,
    /// World z of the slice (millimetres, superior larger).
    pub z_mm: f32,
    /// Share of the slice that is enclosed lung.
    pub lung_fraction: f32,
    pub lung_level: bool,
    /// P(COVID-19) when the slice was classified (lung-level slices only).
    pub p_covid: Option<f32>,
}

/// A scored study.
#[derive(Debug, Clone, Serialize)]
pub struct StudyScore {
    /// The score reported as the study's: [`StudyScore::rule`] applied to the slices; `None`
    /// when no slice is lung-level.
    pub study_score: Option<f32>,
    pub rule: StudyRule,
    pub max_slice: Option<f32>,
    pub top_k_mean: Option<f32>,
    pub k: usize,
    /// First and last lung-level slice (indices), when any.
    pub lung_range: Option<[u32; 2]>,
    pub classified: u32,
    pub slices: Vec<SliceScore>,
}

/// Why a study could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("a volume is read by the CT model, not the {0} model")]
    NotCt(&'static str),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
}

/// Which slices are lung-level, from each slice's lung share.
pub fn lung_levels(fractions: &[f32]) -> Vec<bool> {
    let peak = fractions.iter().copied().fold(0.0f32, f32::max);
    let bar = (peak * LUNG_LEVEL_OF_PEAK).max(LUNG_LEVEL_MIN);
    fractions.iter().map(|&f| f >= bar).collect()
}

/// The two pooled scores of slice probabilities: (max, mean of the top k).
pub fn pool(probabilities: &[f32]) -> Option<(f32, f32)> {
    let mut p: Vec<f32> = probabilities.iter().copied().filter(|v| v.is_finite()).collect();
    if p.is_empty() {
        return None;
    }
    p.sort_unstable_by(|a, b| b.total_cmp(a));
    let top = p.get(..TOP_K.min(p.len())).unwrap_or_default();
    Some((p.first().copied().unwrap_or(0.0), top.iter().sum::<f32>() / top.len().max(1) as f32))
}

/// Slices whose lung share one [`StudyScorer::step`] measures: small enough that a front end
/// gets control back (to show another slice) within a few tens of milliseconds.
pub const MEASURE_STEP: u32 = 16;

/// What a scoring step did, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Measuring each slice's lung share (`done` of `total` slices).
    Measuring,
    /// Classifying the lung-level slices (`done` of `total`).
    Classifying,
    /// Every lung-level slice is classified: [`StudyScorer::finish`] gives the score.
    Finished,
}

/// Progress after a step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// A study scored in small steps (see [`score_study`] for what it computes), so that a front
/// end can do other work between them: the page's worker shows slices while a study scores.
pub struct StudyScorer {
    batch: usize,
    positive: usize,
    fractions: Vec<f32>,
    /// Lung-level slices, known once every slice is measured.
    chosen: Option<Vec<u32>>,
    classified: usize,
    p_covid: Vec<Option<f32>>,
}

impl StudyScorer {
    /// A scorer of `volume` with the CT classifier `clf`, `batch` slices per forward pass.
    pub fn new(clf: &Classifier, volume: &Volume, batch: usize) -> Result<Self, StudyError> {
        match clf.modality() {
            Some(Modality::Ct) => {}
            Some(other) => return Err(StudyError::NotCt(other.name())),
            None => return Err(StudyError::NotCt("gate")),
        }
        Ok(StudyScorer {
            batch: batch.max(1),
            positive: clf.entry.class_index("covid").unwrap_or(0),
            fractions: Vec::with_capacity(volume.slices as usize),
            chosen: None,
            classified: 0,
            p_covid: vec![None; volume.slices as usize],
        })
    }

    /// Measure the next [`MEASURE_STEP`] slices, or classify the next batch of lung-level
    /// slices. `volume` must be the one the scorer was made for.
    pub async fn step(&mut self, clf: &Classifier, volume: &Volume) -> Result<Progress, StudyError> {
        let Some(chosen) = &self.chosen else {
            let from = self.fractions.len() as u32;
            for k in from..(from + MEASURE_STEP).min(volume.slices) {
                let f = match volume.axial(k) {
                    Some(img) => {
                        let w = resolve_window(&img, &clf.entry.preprocess, WindowChoice::Auto).map_err(ClassifyError::from)?;
                        lung_fraction(&apply_window(&img, w), img.width, img.height)
                    }
                    None => 0.0,
                };
                self.fractions.push(f);
            }
            let measured = self.fractions.len();
            if measured >= volume.slices as usize {
                let levels = lung_levels(&self.fractions);
                self.chosen = Some((0..volume.slices).filter(|&k| levels.get(k as usize).copied().unwrap_or(false)).collect());
            }
            return Ok(Progress { stage: Stage::Measuring, done: measured, total: volume.slices as usize });
        };
        let total = chosen.len();
        let group = chosen.get(self.classified..(self.classified + self.batch).min(total)).unwrap_or_default();
        if group.is_empty() {
            return Ok(Progress { stage: Stage::Finished, done: total, total });
        }
        // Lung-level slices are cut from the volume a second time here rather than kept from
        // the measuring pass: which slices qualify is known only after every slice is
        // measured, and keeping them as `f32` would cost the memory the `i16` volume saves.
        let mut prepared = Vec::with_capacity(group.len());
        for &k in group {
            if let Some(img) = volume.axial(k) {
                prepared.push((k, clf.preprocess(&img, WindowChoice::Auto)?));
            }
        }
        let refs: Vec<_> = prepared.iter().map(|(_, p)| p).collect();
        let preds = clf.predict_batch(&refs).await?;
        for ((k, _), pred) in prepared.iter().zip(preds) {
            if let Some(slot) = self.p_covid.get_mut(*k as usize) {
                *slot = pred.probabilities.get(self.positive).copied();
            }
        }
        self.classified += group.len();
        let stage = if self.classified >= total { Stage::Finished } else { Stage::Classifying };
        Ok(Progress { stage, done: self.classified, total })
    }

    /// The score, once a step said [`Stage::Finished`] (earlier, the slices not classified
    /// yet count as not classified).
    pub fn finish(&self, volume: &Volume) -> StudyScore {
        let levels = lung_levels(&self.fractions);
        let chosen = self.chosen.clone().unwrap_or_default();
        let probabilities: Vec<f32> = self.p_covid.iter().flatten().copied().collect();
        let pooled = pool(&probabilities);
        let rule = StudyRule::MaxSlice;
        let slices = (0..volume.slices)
            .map(|k| {
                let i = k as usize;
                SliceScore {
                    index: k,
                    z_mm: volume.slice_z_mm.get(i).copied().unwrap_or(f32::NAN),
                    lung_fraction: self.fractions.get(i).copied().unwrap_or(0.0),
                    lung_level: levels.get(i).copied().unwrap_or(false),
                    p_covid: self.p_covid.get(i).copied().flatten(),
                }
            })
            .collect();
        StudyScore {
            study_score: pooled.map(|(max, top)| match rule {
                StudyRule::MaxSlice => max,
                StudyRule::TopKMean => top,
            }),
            rule,
            max_slice: pooled.map(|p| p.0),
            top_k_mean: pooled.map(|p| p.1),
            k: TOP_K.min(probabilities.len()),
            lung_range: chosen.first().zip(chosen.last()).map(|(&a, &b)| [a, b]),
            classified: probabilities.len() as u32,
            slices,
        }
    }
}

/// Score `volume` with the CT classifier `clf`, `batch` slices per forward pass; `progress`
/// hears each step.
pub async fn score_study(clf: &Classifier, volume: &Volume, batch: usize, mut progress: impl FnMut(Progress)) -> Result<StudyScore, StudyError> {
    let mut scorer = StudyScorer::new(clf, volume, batch)?;
    loop {
        let p = scorer.step(clf, volume).await?;
        progress(p);
        if p.stage == Stage::Finished {
            return Ok(scorer.finish(volume));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lung_level_is_relative_to_the_peak_with_a_floor() {
        assert_eq!(lung_levels(&[0.0, 0.01, 0.05, 0.2, 0.3, 0.06, 0.0]), vec![false, false, false, true, true, false, false]);
        // A small field of view: the peak is small, the floor still excludes empty slices.
        assert_eq!(lung_levels(&[0.015, 0.03, 0.04]), vec![false, true, true]);
        assert_eq!(lung_levels(&[0.0, 0.0]), vec![false, false]);
    }

    #[test]
    fn pooling_takes_the_max_and_the_top_k_mean() {
        let (max, top) = pool(&[0.1, 0.9, 0.2, 0.8, 0.3, 0.7, f32::NAN]).unwrap();
        assert_eq!(max, 0.9);
        assert!((top - (0.9 + 0.8 + 0.7 + 0.3 + 0.2) / 5.0).abs() < 1e-6);
        assert_eq!(pool(&[0.4, 0.6]), Some((0.6, 0.5)));
        assert_eq!(pool(&[]), None);
    }
}
