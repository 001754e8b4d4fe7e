//! Recipes and plans: which recipe each model is trained with, and which images of the shared
//! data train, cross-validate and externally test it (see the model card for why), with the
//! credits each model's manifest entry carries.

use std::collections::BTreeMap;
use std::path::Path;

use ctxr::model::report::SourceCounts;
use ctxr::model::{AugmentConfig, Modality, ModelConfig, ModelId, TrainConfig};

use crate::LabError;
use crate::data::{Sample, grouped_folds, read_manifest};
use crate::stable_hash;

/// The recipe each model is trained with.
pub fn recipe(id: ModelId) -> TrainConfig {
    let (classes, epochs): (Vec<&str>, usize) = match id {
        ModelId::Ct => (vec!["noncovid", "covid"], 40),
        ModelId::Cxr => (vec!["normal", "pneumonia", "covid"], 12),
        ModelId::Gate => (vec!["ct", "cxr", "other"], 8),
    };
    let mut arch = ModelConfig::new(classes.len());
    let mut input_size = 128;
    if id == ModelId::Gate {
        arch.stem_width = 8;
        arch.stage_widths = vec![8, 16, 32, 64];
        input_size = 64;
    }
    let augment = match id {
        // The gate must not care how a chest is framed: zoom out as well as in, and draw the
        // scanner's reconstruction circle that full-field CT exports show.
        ModelId::Gate => AugmentConfig { scale_max: 1.6, fov_prob: 0.3, shift: 0.1, ..AugmentConfig::default() },
        ModelId::Ct | ModelId::Cxr => {
            // The first recipes (CT 16 epochs, CXR 5, the seed papers' full ranges) underfit
            // this 0.7 M-parameter network: milder ranges and more epochs let it fit.
            let mild = AugmentConfig {
                squeeze_prob: 0.3,
                squeeze_min: 0.75,
                rotation_deg: 15.0,
                scale_min: 0.8,
                contrast_min: 0.8,
                contrast_max: 1.25,
                ..AugmentConfig::default()
            };
            if id == ModelId::Ct {
                // The CT training slices were all saved in a narrow lung window (black lungs,
                // white soft tissue); other hospitals export wider windows.
                AugmentConfig { gamma_max: 2.0, export_prob: 0.5, ..mild }
            } else {
                mild
            }
        }
    };
    TrainConfig {
        model: id,
        classes: classes.into_iter().map(String::from).collect(),
        input_size,
        epochs,
        batch: 16,
        lr: 1e-3,
        weight_decay: 1e-4,
        seed: 20261122,
        folds: 5,
        augment,
        architecture: arch,
        class_weighted_loss: id != ModelId::Gate,
    }
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

/// Which rows train and which test, per model (see the model card for why).
pub fn plan(model: ModelId, data_dir: &Path) -> Result<Plan, LabError> {
    match model {
        ModelId::Ct => {
            let (external, pool): (Vec<_>, Vec<_>) = read(data_dir, Modality::Ct)?.into_iter().partition(|s| s.source == "mosmed");
            Ok(Plan { pool, external })
        }
        ModelId::Cxr => {
            let (external, pool): (Vec<_>, Vec<_>) =
                read(data_dir, Modality::Cxr)?.into_iter().partition(|s| s.source == "hannover" || s.source == "openist" || kermany_holdout(s));
            Ok(Plan { pool, external })
        }
        ModelId::Gate => {
            // CT slices vs chest radiographs, from the training pools of both models only;
            // the label is the modality.
            let (mut pool, mut external) = (Vec::new(), Vec::new());
            for m in Modality::ALL {
                let p = plan(m.model(), data_dir)?;
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
        "MosMedData COVID19_1110 (Morozov et al. 2020, medRxiv 10.1101/2020.05.20.20100362) — CC BY-NC-ND 3.0; external test only",
    ];
    let cxr = [
        "Kermany et al. 2018 (Cell), pediatric chest X-rays, Mendeley Data — CC BY 4.0",
        "COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021), Kaggle — cite the papers; normals from RSNA",
        "Figure 1 COVID-19 Chest X-ray Dataset Initiative (COVIDx) — research use only",
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
