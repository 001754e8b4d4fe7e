//! The committed weights: a handful of real held-out images of each class (the first five in
//! manifest order of the shipped model's held-out fold) are classified as their label, and the
//! gate accepts them and routes them to the right model, at the stored operating point (chosen
//! for 95 % sensitivity of COVID). Where that operating point's stored validation specificity
//! is below 0.8, the other classes are judged by the model's likelier class instead: at the CT
//! model's (0.40) only 2 of 5 non-COVID slices are expected to stay non-COVID.

use super::common::{self, committed_manifest, weights_dir};
use ctxr::imaging::WindowChoice;
use ctxr::infer::{Classifier, Gatekeeper};
use ctxr::model::{Manifest, ModelId};

fn load(manifest: &Manifest, id: ModelId) -> Classifier {
    let entry = manifest.model(id).expect("the committed manifest has every model").clone();
    let bytes = std::fs::read(weights_dir().join(&entry.record)).expect("committed record");
    Classifier::load(entry, &bytes, ctxr::model::device::cpu()).expect("committed record matches its manifest")
}

#[test]
fn committed_weights_classify_held_out_images() {
    let Some(data) = common::shared_data("committed_weights_classify_held_out_images") else { return };
    let manifest = committed_manifest();
    let gate = Gatekeeper::new(load(&manifest, ModelId::Gate)).unwrap();
    for id in [ModelId::Ct, ModelId::Cxr] {
        let clf = load(&manifest, id);
        assert!(clf.entry.is_evaluated(), "{id}: committed weights must carry their evaluation");
        let op = clf.entry.operating_point.clone().expect("operating point stored");
        let cfg = ctxr_lab::recipe::recipe(id);
        let plan = ctxr_lab::recipe::plan(id, &data).unwrap();
        let folds = ctxr_lab::recipe::folds(&plan.pool, &cfg);
        for (ci, class) in clf.entry.classes.iter().enumerate() {
            let picks: Vec<_> = plan.pool.iter().zip(&folds).filter(|(s, f)| **f == 0 && s.label == *class).map(|(s, _)| s).take(5).collect();
            assert_eq!(picks.len(), 5, "{id}/{class}: five held-out images");
            let at_operating_point = *class == op.positive_class || op.validation_specificity >= 0.8;
            let mut right = 0;
            for s in &picks {
                let bytes = std::fs::read(&s.path).unwrap();
                let (img, p) = clf.prepare(&bytes, WindowChoice::Auto).unwrap();
                let pred = pollster::block_on(clf.predict(&p)).unwrap();
                let at_op = op.decide(&pred.probabilities, &clf.entry.classes);
                let likelier = ctxr::infer::decision::argmax(&pred.probabilities);
                let d = if at_operating_point { at_op } else { likelier };
                eprintln!(
                    "{id} {class:<10} {:<60} → {} at the operating point, {} by arg-max {:?}",
                    s.rel, clf.entry.classes[at_op], clf.entry.classes[likelier], pred.probabilities
                );
                right += usize::from(d == ci);
                let v = pollster::block_on(gate.judge(&img, false)).unwrap();
                assert!(v.accepted, "gate refused {}: {}", s.rel, v.reason);
                assert_eq!(v.modality, clf.entry.modality, "gate routes {}", s.rel);
            }
            let rule = if at_operating_point { "at the operating point" } else { "by arg-max" };
            assert!(right >= 4, "{id}/{class}: only {right} of 5 held-out images classified as {class} {rule}");
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
