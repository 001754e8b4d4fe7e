//! The committed weights on real held-out images, through the full decode → preprocess →
//! model path at the stored operating point: every image of the shipped model's held-out fold,
//! per source and class, is decided as the manifest says it was (the stored per-source rates
//! are reproduced exactly), the COVID class is found in every source at the rate the
//! operating point was chosen for, and the gate accepts the first images of each cell and
//! routes them to the right model.

use std::collections::BTreeMap;

use super::common::{self, committed_manifest, weights_dir};
use ctxr::imaging::{Preprocessed, WindowChoice};
use ctxr::infer::{Classifier, Gatekeeper};
use ctxr::model::report::Evaluation;
use ctxr::model::{Manifest, ModelId};

fn load(manifest: &Manifest, id: ModelId) -> Classifier {
    let entry = manifest.model(id).expect("the committed manifest has every model").clone();
    let bytes = std::fs::read(weights_dir().join(&entry.record)).expect("committed record");
    Classifier::load(entry, &bytes, ctxr::model::device::cpu()).expect("committed record matches its manifest")
}

/// The lowest COVID sensitivity at the operating point accepted in any source's held-out
/// images (the point was chosen for 0.95 over all sources).
const MIN_COVID_SENSITIVITY: f64 = 0.75;

#[test]
fn committed_weights_classify_held_out_images() {
    let Some(data) = common::shared_data("committed_weights_classify_held_out_images") else { return };
    let manifest = committed_manifest();
    let gate = Gatekeeper::new(load(&manifest, ModelId::Gate)).unwrap();
    for id in [ModelId::Ct, ModelId::Cxr] {
        let clf = load(&manifest, id);
        let op = clf.entry.operating_point.clone().expect("operating point stored");
        let Some(Evaluation::Model(ev)) = &clf.entry.evaluation else { panic!("{id}: committed weights must carry their evaluation") };
        let sets = ev.sets.as_ref().expect("the committed manifest's details hold every set's metrics");
        let stored = sets.internal_heldout.per_source.clone().expect("per-source held-out metrics stored");
        // The split the committed model was trained with (its recipe in the manifest).
        let cfg = clf.entry.training.as_ref().map(|t| t.config.clone()).expect("the committed manifest stores each model's recipe");
        let plan = ctxr_lab::recipe::plan(id, cfg.data, &data).unwrap();
        let folds = ctxr_lab::recipe::folds(&plan.pool, &cfg);
        let classes = &clf.entry.classes;
        // (source, class) → (images, decided as that class at the operating point)
        let mut cells: BTreeMap<(String, usize), (usize, usize)> = BTreeMap::new();
        for (s, _) in plan.pool.iter().zip(&folds).filter(|(s, f)| **f == 0 && classes.contains(&s.label)) {
            let ci = clf.entry.class_index(&s.label).unwrap();
            let bytes = std::fs::read(&s.path).unwrap();
            let (img, p): (_, Preprocessed) = clf.prepare(&bytes, WindowChoice::Auto).unwrap();
            let pred = pollster::block_on(clf.predict(&p)).unwrap();
            // In f64, as the stored report decides.
            let probs = ctxr::infer::decision::softmax(&pred.logits, f64::from(clf.entry.temperature()));
            let at_op = op.decide(&probs, classes);
            let cell = cells.entry((s.source.clone(), ci)).or_default();
            if cell.0 < 3 {
                let v = pollster::block_on(gate.judge(&img, false)).unwrap();
                assert!(v.accepted, "gate refused {}: {}", s.rel, v.reason);
                assert_eq!(v.modality, clf.entry.modality, "gate routes {}", s.rel);
            }
            cell.0 += 1;
            cell.1 += usize::from(at_op == ci);
        }
        assert!(!cells.is_empty(), "{id}: no held-out images");
        for ((source, ci), (n, right)) in &cells {
            let class = &classes[*ci];
            let rate = *right as f64 / *n as f64;
            let want = stored
                .get(source)
                .and_then(|r| r.at_operating_point.as_ref())
                .and_then(|a| a.per_class.get(*ci))
                .and_then(|c| c.sensitivity)
                .unwrap_or_else(|| panic!("{id}: no stored rate for {source}/{class}"));
            eprintln!("{id} {source:<16} {class:<10} {right:>4} of {n:>4} at the operating point ({rate:.3}; stored {want:.3})");
            assert!((rate - want).abs() < 1e-6, "{id}/{source}/{class}: {rate} at the operating point, but the manifest says {want}");
            if *class == op.positive_class {
                assert!(rate >= MIN_COVID_SENSITIVITY, "{id}/{source}: COVID found in only {right} of {n} held-out images");
            }
        }
    }
}

#[test]
fn gate_refuses_natural_photos() {
    let Some(data) = common::shared_data("gate_refuses_natural_photos") else { return };
    let gate = Gatekeeper::new(load(&committed_manifest(), ModelId::Gate)).unwrap();
    let mut refused = 0;
    for rel in ctxr_lab::recipe::NATURAL_PHOTOS {
        let img = ctxr::decode::decode(&std::fs::read(data.join("odd-inputs").join(rel)).unwrap(), &Default::default()).unwrap();
        let v = pollster::block_on(gate.judge(&img, false)).unwrap();
        eprintln!("{rel}: accepted {} — {}", v.accepted, v.reason);
        refused += usize::from(!v.accepted);
    }
    assert!(refused * 100 >= 95 * ctxr_lab::recipe::NATURAL_PHOTOS.len(), "gate refused only {refused} natural photos");
    // DICOM routing: a non-chest "OT" file is refused by its Modality.
    let ot = ctxr::decode::decode(&std::fs::read(data.join("cxr/decoder-samples/sample_OT_not_cxr.dcm")).unwrap(), &Default::default()).unwrap();
    let v = pollster::block_on(gate.judge(&ot, false)).unwrap();
    assert!(!v.accepted && v.reason.contains("OT"), "{}", v.reason);
}
