//! Recipes and plans: which recipe each model is trained with, and which images of the shared
//! data train, cross-validate and externally test it (see the model card for why), with the
//! credits each model's manifest entry carries.

use std::collections::BTreeMap;
use std::path::Path;

use ctxr::imaging::{Framing, Tone};
use ctxr::model::report::SourceCounts;
use ctxr::model::{AugmentConfig, DataPlan, Modality, ModelConfig, ModelId, Sampling, TrainConfig};

use crate::LabError;
use crate::data::{Sample, grouped_folds, read_manifest};
use crate::stable_hash;

/// The recipe each model is trained with.
pub fn recipe(id: ModelId) -> TrainConfig {
    let (classes, epochs): (Vec<&str>, usize) = match id {
        ModelId::Ct => (vec!["noncovid", "covid"], 20),
        ModelId::Cxr => (vec!["normal", "pneumonia", "covid"], 12),
        ModelId::Gate => (vec!["ct", "cxr", "other"], 8),
    };
    let mut arch = ModelConfig::new(classes.len());
    // CT reads 192² (chosen by leave-one-source-out: mean AUC 0.726 vs 0.704 at 128², MosMed
    // 0.741 vs 0.653; see the model card); X-rays stay at 128².
    let mut input_size = if id == ModelId::Ct { 192 } else { 128 };
    if id == ModelId::Gate {
        arch.stem_width = 8;
        arch.stage_widths = vec![8, 16, 32, 64];
        input_size = 64;
    }
    // Films and slices fill the square (as the `*-224` uploaders squashed theirs), so framing
    // never differs by source; see the model card's invariance check. CT grey levels are
    // equalised, so the exporter's window or gamma cannot tell sources apart.
    let (framing, tone) = match id {
        ModelId::Gate => (Framing::Letterbox, Tone::Windowed),
        ModelId::Ct => (Framing::Stretch, Tone::Equalized),
        ModelId::Cxr => (Framing::Stretch, Tone::Windowed),
    };
    let augment = match id {
        // The gate must not care how a chest is framed: zoom out as well as in, and draw the
        // scanner's reconstruction circle that full-field CT exports show.
        ModelId::Gate => AugmentConfig { scale_max: 1.6, fov_prob: 0.3, shift: 0.1, ..AugmentConfig::default() },
        // Milder ranges than the seed papers' (which underfit this 0.7 M-parameter network);
        // no bars (the framing makes none), aspect jitter instead of squeezing.
        ModelId::Ct | ModelId::Cxr => AugmentConfig {
            squeeze_prob: 0.0,
            aspect_max: 1.25,
            rotation_deg: 15.0,
            scale_min: 0.8,
            contrast_min: 0.8,
            contrast_max: 1.25,
            ..AugmentConfig::default()
        },
    };
    let sampling = match id {
        ModelId::Gate => Sampling::EveryImage,
        ModelId::Ct => Sampling::BalancedWithinSource { images: 1600, max_boost: 3.0 },
        ModelId::Cxr => Sampling::BalancedWithinSource { images: 4000, max_boost: 3.0 },
    };
    TrainConfig {
        model: id,
        classes: classes.into_iter().map(String::from).collect(),
        input_size,
        epochs,
        batch: 16,
        lr: 1e-3,
        weight_decay: 1e-4,
        seed: 20261201,
        folds: 5,
        augment,
        architecture: arch,
        class_weighted_loss: id != ModelId::Gate,
        data: DataPlan::AllSources,
        sampling,
        framing,
        tone,
        mask_to_lungs: false,
        source_adversary: 0.0,
    }
}

/// The unit a source is balanced in: sources exported by the same pipeline count as one, so a
/// one-label source cannot be told from its sibling by its look (medseg and covid19-ct-seg are
/// both Inf-Net's lung-box crops; figure1 and ieee8023 are both figures from case reports).
pub fn balance_unit(source: &str) -> &str {
    match source {
        "medseg" => "covid19-ct-seg",
        "figure1" => "ieee8023",
        s => s,
    }
}

/// The balance unit of each of `samples` (the sources a source adversary tells apart).
pub fn balance_units(samples: &[Sample]) -> Vec<&str> {
    samples.iter().map(|s| balance_unit(&s.source)).collect()
}

/// Per-row sampling weights for [`Sampling::BalancedWithinSource`] over `rows` of `samples`
/// (rows without a known label weigh 0): each balance unit gets a share of the draws
/// proportional to the square root of its size (so the largest source does not drown the
/// others), split equally among the labels it has; an image weighs at most `max_boost` times
/// the average. Weights are relative (they sum to the number of rows).
pub fn balanced_weights(samples: &[Sample], labels: &[Option<usize>], rows: &[usize], max_boost: f64) -> Vec<f64> {
    let mut cell: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    for &i in rows {
        if let Some(l) = labels[i] {
            *cell.entry((balance_unit(&samples[i].source), l)).or_default() += 1;
        }
    }
    let mut unit_size: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unit_labels: BTreeMap<&str, usize> = BTreeMap::new();
    for (&(u, _), &n) in &cell {
        *unit_size.entry(u).or_default() += n;
        *unit_labels.entry(u).or_default() += 1;
    }
    let n: usize = unit_size.values().sum();
    let root_sum: f64 = unit_size.values().map(|&c| (c as f64).sqrt()).sum();
    let mut w = vec![0.0; samples.len()];
    for &i in rows {
        let Some(l) = labels[i] else { continue };
        let u = balance_unit(&samples[i].source);
        let mass = n as f64 * (unit_size[u] as f64).sqrt() / root_sum.max(1e-12);
        w[i] = (mass / unit_labels[u] as f64 / cell[&(u, l)] as f64).min(max_boost);
    }
    w
}

/// The images a model is trained, cross-validated and externally tested on.
pub struct Plan {
    /// Training sources (cross-validated by patient-grouped folds).
    pub pool: Vec<Sample>,
    /// External sets, never used for training or model selection.
    pub external: Vec<Sample>,
}

/// Kermany patients held out as an external, patient-disjoint pneumonia/normal set (1 in 10).
pub fn kermany_holdout(s: &Sample) -> bool {
    s.source == "kermany-224" && stable_hash(&s.group, 99).is_multiple_of(10)
}

/// The manifest of one modality's shared data.
fn read(data_dir: &Path, m: Modality) -> Result<Vec<Sample>, LabError> {
    Ok(read_manifest(&data_dir.join(m.name()).join("manifest.csv"))?)
}

/// Sources that are never trained on: one-label sets kept to test what the models call
/// images from pipelines they never saw (see the model card).
pub const EXTERNAL_SOURCES: [&str; 3] = ["tcga-ct", "hannover", "openist"];

/// The sources each model's leave-one-source-out evaluation tests on: the training sources
/// that have both (CT) or two (X-ray) of the model's labels.
pub fn loso_sources(model: ModelId) -> &'static [&'static str] {
    match model {
        ModelId::Ct => &["ucsd-covid-ct", "sarscov2-ct", "mosmed", "covid19-ct-seg"],
        ModelId::Cxr => &["kermany-224", "radiography-224", "nih-cxr14"],
        ModelId::Gate => &[],
    }
}

/// Which rows train and which test, per model and data plan (see the model card for why).
/// [`DataPlan::AllSources`]: every source with both labels trains, plus the one-label sources
/// whose pipeline has both (medseg, figure1); `tcga-ct`, `hannover`, `openist` and one Kermany
/// patient in ten are external. [`DataPlan::SeedSources`]: the first models' training pools;
/// everything else is external to them.
pub fn plan(model: ModelId, data: DataPlan, data_dir: &Path) -> Result<Plan, LabError> {
    let seed_pool = |s: &Sample| match model {
        ModelId::Ct => ["ucsd-covid-ct", "sarscov2-ct"].contains(&s.source.as_str()),
        _ => ["kermany-224", "radiography-224", "figure1"].contains(&s.source.as_str()) && !kermany_holdout(s),
    };
    match model {
        ModelId::Ct | ModelId::Cxr => {
            let m = model.modality().unwrap_or(Modality::Ct);
            let rows = read(data_dir, m)?;
            // Whatever does not train is external: for the seed plan that includes every
            // source added to the shared data since (never seen by those models).
            let (external, pool): (Vec<_>, Vec<_>) = match data {
                DataPlan::AllSources => rows.into_iter().partition(|s| EXTERNAL_SOURCES.contains(&s.source.as_str()) || kermany_holdout(s)),
                DataPlan::SeedSources => rows.into_iter().partition(|s| !seed_pool(s)),
            };
            Ok(Plan { pool, external })
        }
        ModelId::Gate => {
            // CT slices vs chest radiographs, from the training pools of both models only;
            // the label is the modality.
            let (mut pool, mut external) = (Vec::new(), Vec::new());
            for m in Modality::ALL {
                let p = plan(m.model(), data, data_dir)?;
                let relabel = |mut s: Sample| {
                    s.label = m.name().into();
                    s
                };
                pool.extend(p.pool.into_iter().map(relabel));
                external.extend(p.external.into_iter().map(relabel));
            }
            Ok(Plan { pool, external })
        }
    }
}

/// Labels as class indices (`None` for labels the model does not know).
pub fn label_indices(samples: &[Sample], classes: &[String]) -> Vec<Option<usize>> {
    samples.iter().map(|s| classes.iter().position(|c| *c == s.label)).collect()
}

/// Folds of the pool (deterministic from the seed).
pub fn folds(pool: &[Sample], cfg: &TrainConfig) -> Vec<usize> {
    grouped_folds(pool, cfg.folds, cfg.seed)
}

/// Images per source and label.
pub fn count_by(samples: &[Sample]) -> SourceCounts {
    let mut m: SourceCounts = BTreeMap::new();
    for s in samples {
        *m.entry(s.source.clone()).or_default().entry(s.label.clone()).or_default() += 1;
    }
    m
}

/// Dataset credits and licences for a model's manifest entry.
pub fn credits(model: ModelId) -> Vec<String> {
    let ct = [
        "UCSD-AI4H COVID-CT (Zhao et al. 2020, arXiv:2003.13865), github.com/UCSD-AI4H/COVID-CT — research use; cite the paper",
        "SARS-CoV-2 CT-scan dataset (Soares et al. 2020, medRxiv 10.1101/2020.04.24.20078584) — CC BY-NC-SA 4.0",
        "MosMedData COVID19_1110 (Morozov et al. 2020, medRxiv 10.1101/2020.05.20.20100362), half A — CC BY-NC-ND 3.0",
        "COVID-19-CT-Seg (Ma et al. 2021, Med Phys, doi 10.1002/mp.14676; coronacases.org and Radiopaedia cases, CC BY-NC-SA 3.0) as exported by Inf-Net (Fan et al. 2020) — non-commercial research use",
        "MedSeg COVID-19 CT segmentation set (SIRM cases), as exported by Inf-Net — research use; credit MedSeg and SIRM",
        "TCGA lung-cancer CT on TCIA (Clark et al. 2013), CC BY 3.0 — external check only (never trained on)",
    ];
    let cxr = [
        "Kermany et al. 2018 (Cell), pediatric chest X-rays, Mendeley Data — CC BY 4.0",
        "COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021), Kaggle — cite the papers; normals from RSNA",
        "Figure 1 COVID-19 Chest X-ray Dataset Initiative (COVIDx) — research use only",
        "NIH ChestX-ray14 (Wang et al. 2017, NIH Clinical Center), films picked by Ozturk et al. 2020 — unrestricted use; cite Wang et al.",
        "COVID-19 Image Data Collection (Cohen et al. 2020, arXiv:2003.11597), non-COVID infections and normals — per-image licences (mostly CC BY-NC-SA 4.0)",
        "Hannover Medical School COVID-19 Image Repository (doi 10.25835/0090041) — CC BY 3.0; external test only",
        "OpenIST chest X-ray normals (educational source) — research/testing only; external test only",
    ];
    match model {
        ModelId::Ct => ct.iter().map(|s| s.to_string()).collect(),
        ModelId::Cxr => cxr.iter().map(|s| s.to_string()).collect(),
        ModelId::Gate => ct.iter().chain(cxr.iter()).map(|s| s.to_string()).collect(),
    }
}

/// The natural photographs among `odd-inputs` (checks for the gate, never training data).
pub const NATURAL_PHOTOS: [&str; 9] = [
    "image-rs/tests/images/jpg/iptc.jpg",
    "image-rs/tests/images/jpg/portrait_2.jpg",
    "image-rs/tests/images/jpg/progressive/3.jpg",
    "image-rs/tests/images/jpg/progressive/cat.jpg",
    "image-rs/tests/images/png/iptc.png",
    "image-rs/tests/images/tiff/testsuite/mandrill.tiff",
    "image-rs/tests/images/tiff/testsuite/planar.tiff",
    "image-rs/tests/images/tiff/testsuite/rgb-3c-16b.tiff",
    "image-rs/tests/images/webp/extended_images/advertises_rgba_but_frames_are_rgb.webp",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(source: &str, label: &str, i: usize) -> Sample {
        Sample {
            rel: format!("{source}/{label}/{i}.png"),
            path: format!("{source}/{label}/{i}.png").into(),
            label: label.into(),
            source: source.into(),
            patient_id: None,
            subtype: String::new(),
            orig_name: String::new(),
            group: format!("{source}:{i}"),
        }
    }

    #[test]
    fn balanced_weights_give_each_label_of_a_source_equal_weight() {
        // Source a: 300 covid, 100 noncovid; b: 50 covid, 50 noncovid; medseg (balanced with
        // covid19-ct-seg): 40 covid; covid19-ct-seg: 60 covid, 60 noncovid.
        let mut s = Vec::new();
        for (src, label, n) in [
            ("a", "covid", 300),
            ("a", "noncovid", 100),
            ("b", "covid", 50),
            ("b", "noncovid", 50),
            ("medseg", "covid", 40),
            ("covid19-ct-seg", "covid", 60),
            ("covid19-ct-seg", "noncovid", 60),
        ] {
            s.extend((0..n).map(|i| sample(src, label, i)));
        }
        let classes = vec!["noncovid".to_string(), "covid".to_string()];
        let labels = label_indices(&s, &classes);
        let rows: Vec<usize> = (0..s.len()).collect();
        let w = balanced_weights(&s, &labels, &rows, 10.0);
        let mass =
            |unit: &str, label: &str| -> f64 { s.iter().zip(&w).filter(|(x, _)| balance_unit(&x.source) == unit && x.label == label).map(|(_, w)| w).sum() };
        for unit in ["a", "b", "covid19-ct-seg"] {
            let (c, n) = (mass(unit, "covid"), mass(unit, "noncovid"));
            assert!((c - n).abs() < 1e-9 * c, "{unit}: covid {c} vs noncovid {n}");
        }
        // Units get draws by the square root of their size: a (400) twice b (100).
        let unit = |u: &str| mass(u, "covid") + mass(u, "noncovid");
        assert!((unit("a") / unit("b") - 2.0).abs() < 1e-9);
        // The boost cap binds: no image weighs more than it allows.
        let capped = balanced_weights(&s, &labels, &rows, 1.5);
        assert!(capped.iter().all(|&x| x <= 1.5));
        // Rows outside `rows` weigh nothing.
        let half: Vec<usize> = (0..s.len()).step_by(2).collect();
        let hw = balanced_weights(&s, &labels, &half, 10.0);
        assert!(hw.iter().enumerate().all(|(i, &x)| (i % 2 == 0) == (x > 0.0)));
    }
}
