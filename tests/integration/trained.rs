//! The committed weights: a handful of real held-out images of each class (the first five in
//! manifest order of the shipped model's held-out fold) are classified as their label, and the
//! gate accepts them and routes them to the right model, at the stored operating point (chosen
//! for 95 % sensitivity of COVID). Where that operating point's stored validation specificity
//! is below 0.8, the other classes are judged by the model's likelier class instead: at the CT
//! model's (0.40) only 2 of 5 non-COVID slices are expected to stay non-COVID.

use super::common;
use ctxr::classifier::Classifier;
use ctxr::evaluate::OperatingPoint;
use ctxr::preprocess::WindowChoice;
use ctxr::weights::Manifest;

fn weights_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights")
}

fn load(manifest: &Manifest, id: &str) -> Option<Classifier> {
    let entry = manifest.model(id).ok()?.clone();
    let bytes = std::fs::read(weights_dir().join(&entry.record)).ok()?;
    Some(Classifier::load(entry, &bytes, ctxr::device::cpu()).expect("committed record matches its manifest"))
}

#[test]
fn committed_weights_classify_held_out_images() {
    let Some(data) = common::shared_data("committed_weights_classify_held_out_images") else { return };
    let Ok(text) = std::fs::read_to_string(weights_dir().join("manifest.json")) else {
        eprintln!("SKIPPED committed_weights_classify_held_out_images: no weights/manifest.json");
        return;
    };
    let manifest = Manifest::parse(&text).unwrap();
    let gate = load(&manifest, "gate").map(|c| ctxr::gate::Gatekeeper::new(c).unwrap());
    let mut checked = 0;
    for id in ["ct", "cxr"] {
        let Some(clf) = load(&manifest, id) else {
            eprintln!("no '{id}' model in the manifest");
            continue;
        };
        assert!(clf.entry.is_evaluated(), "{id}: committed weights must carry their evaluation");
        let op: OperatingPoint = serde_json::from_value(clf.entry.operating_point.clone().expect("operating point stored")).unwrap();
        let cfg = ctxr::train::TrainConfig::for_model(id).unwrap();
        let plan = ctxr::train::plan(id, &data).unwrap();
        let folds = ctxr::train::folds(&plan.pool, &cfg);
        for (ci, class) in clf.entry.classes.iter().enumerate() {
            let picks: Vec<_> = plan.pool.iter().zip(&folds).filter(|(s, f)| **f == 0 && s.label == *class).map(|(s, _)| s).take(5).collect();
            assert_eq!(picks.len(), 5, "{id}/{class}: five held-out images");
            let at_operating_point = *class == op.positive_class || op.validation_specificity >= 0.8;
            let mut right = 0;
            for s in &picks {
                let bytes = std::fs::read(&s.path).unwrap();
                let (img, p) = clf.prepare(&bytes, WindowChoice::Auto).unwrap();
                let pred = pollster::block_on(clf.predict(&p)).unwrap();
                let probs: Vec<f64> = pred.probabilities.iter().map(|&v| v as f64).collect();
                let at_op = op.decide(&probs, &clf.entry.classes);
                let likelier = ctxr::classifier::argmax(&pred.probabilities);
                let d = if at_operating_point { at_op } else { likelier };
                eprintln!("{id} {class:<10} {:<60} → {} at the operating point, {} by arg-max {:?}", s.rel, clf.entry.classes[at_op], clf.entry.classes[likelier], pred.probabilities);
                right += usize::from(d == ci);
                if let Some(g) = &gate {
                    let v = pollster::block_on(g.judge(&img, false)).unwrap();
                    assert!(v.accepted, "gate refused {}: {}", s.rel, v.reason);
                    assert_eq!(v.modality, clf.entry.modality, "gate routes {}", s.rel);
                }
                checked += 1;
            }
            let rule = if at_operating_point { "at the operating point" } else { "by arg-max" };
            assert!(right >= 4, "{id}/{class}: only {right} of 5 held-out images classified as {class} {rule}");
        }
    }
    let classifiers = manifest.models.iter().filter(|m| m.id == "ct" || m.id == "cxr").count();
    assert!(checked > 0 || classifiers == 0);
}

#[test]
fn gate_refuses_natural_photos() {
    let Some(data) = common::shared_data("gate_refuses_natural_photos") else { return };
    let Ok(text) = std::fs::read_to_string(weights_dir().join("manifest.json")) else { return };
    let manifest = Manifest::parse(&text).unwrap();
    let Some(gate) = load(&manifest, "gate").map(|c| ctxr::gate::Gatekeeper::new(c).unwrap()) else {
        eprintln!("SKIPPED gate_refuses_natural_photos: no gate in the manifest");
        return;
    };
    let mut refused = 0;
    for rel in ctxr::train::NATURAL_PHOTOS {
        let img = ctxr::decode::decode(&std::fs::read(data.join("odd-inputs").join(rel)).unwrap(), &Default::default()).unwrap();
        let v = pollster::block_on(gate.judge(&img, false)).unwrap();
        eprintln!("{rel}: accepted {} — {}", v.accepted, v.reason);
        refused += usize::from(!v.accepted);
    }
    assert!(refused * 100 >= 95 * ctxr::train::NATURAL_PHOTOS.len(), "gate refused only {refused} natural photos");
    // DICOM routing: a non-chest "OT" file is refused by its Modality.
    let ot = ctxr::decode::decode(&std::fs::read(data.join("cxr/decoder-samples/sample_OT_not_cxr.dcm")).unwrap(), &Default::default()).unwrap();
    let v = pollster::block_on(gate.judge(&ot, false)).unwrap();
    assert!(!v.accepted && v.reason.contains("OT"), "{}", v.reason);
}
