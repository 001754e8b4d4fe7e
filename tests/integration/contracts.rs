//! The page's JSON contracts (`www/types.js`) against what the Rust types write: the committed
//! manifest with every report in it, and an analysis, a gate verdict, a decision and a heatmap
//! from the engine's path. Every field Rust writes must be declared in the typedef, and every
//! required field of the typedef must be written.

use std::collections::{BTreeMap, BTreeSet};

use ctxr::decode::{Plane, decode_volume};
use ctxr::explain::Colormap;
use ctxr::imaging::WindowChoice;
use ctxr::infer::Request;
use ctxr::infer::study::OpenStudy;
use serde_json::Value;

use super::common::{committed_manifest, committed_models, repo_root};

/// Typedef name → (required properties, optional properties), from the JSDoc blocks.
fn typedefs() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let text = std::fs::read_to_string(repo_root().join("www/types.js")).expect("www/types.js");
    let mut out = BTreeMap::new();
    for block in text.split("/**").skip(1) {
        let block = block.split("*/").next().unwrap_or_default();
        let Some(name) = block.lines().find_map(|l| l.trim().strip_prefix("* @typedef {object} ")) else { continue };
        let (mut required, mut optional) = (BTreeSet::new(), BTreeSet::new());
        for line in block.lines() {
            let Some(rest) = line.trim().strip_prefix("* @property ") else { continue };
            // `{type} name` or `{type} [name]`; the type may hold spaces and braces.
            let mut depth = 0;
            let after = rest
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0 && c == '}').then(|| &rest[i + 1..])
                })
                .unwrap_or_default();
            let field = after.split_whitespace().next().unwrap_or_default();
            match field.strip_prefix('[').and_then(|f| f.strip_suffix(']')) {
                Some(f) => optional.insert(f.to_string()),
                None => required.insert(field.to_string()),
            };
        }
        out.insert(name.trim().to_string(), (required, optional));
    }
    out
}

fn check(defs: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>, name: &str, v: &Value, problems: &mut Vec<String>) {
    let (required, optional) = defs.get(name).unwrap_or_else(|| panic!("no typedef {name} in www/types.js"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{name} is not an object: {v}"));
    for k in obj.keys() {
        if !required.contains(k) && !optional.contains(k) {
            problems.push(format!("{name}.{k} is written by Rust but not declared in www/types.js"));
        }
    }
    for k in required {
        if !obj.contains_key(k) {
            problems.push(format!("{name}.{k} is declared required in www/types.js but Rust did not write it"));
        }
    }
}

fn check_report(defs: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>, r: &Value, problems: &mut Vec<String>) {
    check(defs, "Report", r, problems);
    for row in r["per_class"].as_array().into_iter().flatten() {
        check(defs, "ClassRow", row, problems);
    }
    for curve in r["roc"].as_object().into_iter().flat_map(|m| m.values()) {
        for p in curve.as_array().into_iter().flatten() {
            check(defs, "RocPoint", p, problems);
        }
    }
    for s in r["per_source"].as_object().into_iter().flat_map(|m| m.values()) {
        check_report(defs, s, problems);
    }
    for row in r["per_subtype"].as_array().into_iter().flatten() {
        check(defs, "SubtypeAuc", row, problems);
    }
}

#[test]
fn the_manifest_matches_the_page_typedefs() {
    let defs = typedefs();
    let m = serde_json::to_value(committed_manifest()).expect("manifest as JSON");
    let mut problems = Vec::new();
    check(&defs, "Manifest", &m, &mut problems);
    let mut reports = 0;
    for e in m["models"].as_array().expect("models") {
        check(&defs, "ModelEntry", e, &mut problems);
        if !e["operating_point"].is_null() {
            check(&defs, "OperatingPoint", &e["operating_point"], &mut problems);
        }
        let t = &e["training"];
        check(&defs, "TrainingSummary", t, &mut problems);
        if !t["cross_validation"].is_null() {
            check(&defs, "CrossValidation", &t["cross_validation"], &mut problems);
            check_report(&defs, &t["cross_validation"]["pooled_out_of_fold"], &mut problems);
            reports += 1;
        }
        if !t["leave_one_source_out"].is_null() {
            check(&defs, "LeaveOneSourceOut", &t["leave_one_source_out"], &mut problems);
            for r in t["leave_one_source_out"]["runs"].as_array().into_iter().flatten() {
                check(&defs, "SourceHeldOut", r, &mut problems);
                check_report(&defs, &r["report"], &mut problems);
            }
        }
        let ev = &e["evaluation"];
        if e["id"] == "gate" {
            check(&defs, "GateEvaluation", ev, &mut problems);
        } else {
            check(&defs, "ModelEvaluation", ev, &mut problems);
            for set in ["internal_heldout", "external"] {
                check_report(&defs, &ev["sets"][set], &mut problems);
                reports += 1;
            }
            if !ev["audit"].is_null() {
                check(&defs, "Audit", &ev["audit"], &mut problems);
                for c in ev["audit"]["shortcuts"].as_array().into_iter().flatten() {
                    check(&defs, "ShortcutCheck", c, &mut problems);
                }
                for c in ev["audit"]["invariance"].as_array().into_iter().flatten() {
                    check(&defs, "InvarianceCheck", c, &mut problems);
                }
                for c in ev["audit"]["attention"].as_array().into_iter().flatten() {
                    check(&defs, "AttentionCheck", c, &mut problems);
                }
            }
        }
    }
    assert_eq!(reports, 6, "two classifiers × (cross-validation + two sets)");
    // The details files as the page fetches them.
    let mut details = 0;
    for file in m["models"].as_array().into_iter().flatten().filter_map(|e| e["details"].as_str()) {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(super::common::weights_dir().join(file)).expect("details file")).expect("json");
        check(&defs, "Details", &d, &mut problems);
        details += 1;
    }
    assert_eq!(details, 2, "the two classifiers' details files");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An 8-bit PNG of a CT-like phantom (two dark lungs in a body).
fn phantom_png() -> Vec<u8> {
    let img = image::GrayImage::from_fn(96, 96, |x, y| {
        let inside = |cx: f32, rx: f32, ry: f32| ((x as f32 - cx) / rx).powi(2) + ((y as f32 - 48.0) / ry).powi(2) <= 1.0;
        image::Luma([if inside(32.0, 12.0, 20.0) || inside(64.0, 12.0, 20.0) {
            25
        } else if inside(48.0, 42.0, 32.0) {
            180
        } else {
            0
        }])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("png");
    out
}

#[test]
fn the_engine_results_match_the_page_typedefs() {
    let defs = typedefs();
    let m = committed_models();
    let (a, cur) = pollster::block_on(m.analyze(&phantom_png(), &Request::default())).expect("the phantom is analysed");
    let v = serde_json::to_value(&a).expect("analysis as JSON");
    let mut problems = Vec::new();
    check(&defs, "Analysis", &v, &mut problems);
    check(&defs, "ImageFacts", &v["image"], &mut problems);
    check(&defs, "Timings", &v["timings"], &mut problems);
    check(&defs, "Window", &v["window"], &mut problems);
    check(&defs, "Verdict", &v["gate"], &mut problems);
    if !a.refused {
        check(&defs, "Prediction", &v["prediction"], &mut problems);
        check(&defs, "Decision", &v["decision"], &mut problems);
        let h = pollster::block_on(m.explain(&cur, 0, 1, Colormap::Viridis)).expect("a heatmap");
        check(&defs, "Heatmap", &serde_json::to_value(&h).expect("heatmap as JSON"), &mut problems);
    }
    // A forced model: no gate, a prediction and a decision.
    let req = Request { model: ctxr::infer::analysis::ModelChoice::Ct, ..Request::default() };
    let (forced, cur) = pollster::block_on(m.analyze(&phantom_png(), &req)).expect("forced CT");
    let fv = serde_json::to_value(&forced).expect("analysis as JSON");
    check(&defs, "Analysis", &fv, &mut problems);
    check(&defs, "Prediction", &fv["prediction"], &mut problems);
    check(&defs, "Decision", &fv["decision"], &mut problems);
    let h = pollster::block_on(m.explain(&cur, 1, 4, Colormap::Cividis)).expect("a heatmap");
    check(&defs, "Heatmap", &serde_json::to_value(&h).expect("heatmap as JSON"), &mut problems);
    // The display-only window and the teaching one-off.
    let window = WindowChoice::Custom { center: 40.0, width: 400.0 };
    let d = m.redisplay(&cur, window).expect("another display window");
    check(&defs, "Display", &serde_json::to_value(&d).expect("display as JSON"), &mut problems);
    let t = pollster::block_on(m.try_window(&cur, window)).expect("a window trial");
    let tv = serde_json::to_value(&t).expect("trial as JSON");
    check(&defs, "WindowTrial", &tv, &mut problems);
    check(&defs, "Prediction", &tv["prediction"], &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_study_results_match_the_page_typedefs() {
    let defs = typedefs();
    let m = committed_models();
    let bytes = std::fs::read(repo_root().join("tests/nifti/las-int16-inter.nii.gz")).expect("a reference volume");
    let volume = decode_volume(&bytes, &Default::default()).expect("the reference volume decodes");
    let study = OpenStudy::new("las-int16-inter.nii.gz".into(), None, volume);
    let mut problems = Vec::new();
    let sv = serde_json::to_value(&study).expect("study as JSON");
    check(&defs, "OpenStudy", &sv, &mut problems);
    check(&defs, "VolumeFacts", &sv["volume"], &mut problems);
    let score = pollster::block_on(m.score_study(&study.volume, 4, |_| {})).expect("the study is scored");
    let scv = serde_json::to_value(&score).expect("score as JSON");
    check(&defs, "StudyScore", &scv, &mut problems);
    for s in scv["slices"].as_array().expect("slices") {
        check(&defs, "SliceScore", s, &mut problems);
    }
    for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
        let v = m.view_volume(&study.volume, plane, 1, WindowChoice::Auto).expect("a view");
        check(&defs, "VolumeView", &serde_json::to_value(&v).expect("view as JSON"), &mut problems);
    }
    let (a, cur) = pollster::block_on(m.analyze_slice(&study.volume, 5)).expect("a slice read alone");
    check(&defs, "Analysis", &serde_json::to_value(&a).expect("analysis as JSON"), &mut problems);
    let h = pollster::block_on(m.explain(&cur, 1, 4, Colormap::Viridis)).expect("its heatmap");
    assert_eq!((h.width, h.height), (a.display_width, a.display_height), "the heatmap covers the slice as displayed");
    // A DICOM series' facts and a file set aside.
    let mut b = ctxr::decode::series::SeriesBuilder::new(1 << 30);
    let hu = vec![-1000i16; 16 * 16];
    for k in 0..3 {
        let slice = ctxr_lab::corpus::ct_series_slice(&ctxr_lab::corpus::SeriesSlice {
            study_uid: "1.2.3",
            series_uid: "1.2.3.4",
            series_number: 4,
            instance: k + 1,
            position: [0.0, 0.0, -2.5 * f64::from(k)],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            spacing: [0.7, 0.7],
            thickness: 2.5,
            image_type: "ORIGINAL\\PRIMARY\\AXIAL",
            width: 16,
            height: 16,
            hu: &hu,
        });
        b.add_file(&format!("IM{k}"), &slice, &Default::default());
    }
    b.add_file("notes.txt", b"text", &Default::default());
    let set = b.finish();
    let (facts, _) = set.series.into_iter().next().expect("one series").into_parts();
    check(&defs, "SeriesFacts", &serde_json::to_value(&facts).expect("facts as JSON"), &mut problems);
    for a in &set.set_aside {
        check(&defs, "SetAside", &serde_json::to_value(a).expect("set aside as JSON"), &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A user's labelled set measured, the threshold moved, an adapted model's provenance and the
/// adaptation's progress: what the page's "your labelled images" panel reads.
#[test]
fn the_labelled_set_results_match_the_page_typedefs() {
    use ctxr::model::ModelId;
    use ctxr::train::adapt::{AdaptConfig, CrossValidated, EpochRecord, FoldRecord, Part, Progress, Provenance, WARNING};
    use ctxr::train::assess::Measurement;
    use ctxr::train::labelled::LabelledSet;

    let defs = typedefs();
    let entry = committed_manifest().model(ModelId::Ct).expect("a CT entry").clone();
    let csv = "file,label,group\na.png,covid,p1\nb.png,noncovid,p2\nc.png,covid,p3\nd.png,noncovid,p4\ne.png,covid,p5\nf.png,pneumonia,p6\ng.png,covid,p7\na.png,covid,p1\n";
    let set = LabelledSet::from_csv(csv, "", &entry.classes, |p| p != "g.png").expect("the CSV reads");
    let logits: Vec<Vec<f32>> = (0..set.items.len()).map(|i| vec![0.0, i as f32 - 2.0]).collect();
    let m = Measurement::new(&entry, &set, &logits, 5 * 192 * 192);
    let v = serde_json::to_value(&m).expect("measurement as JSON");
    let mut problems = Vec::new();
    check(&defs, "Measurement", &v, &mut problems);
    check(&defs, "Assessment", &v["assessment"], &mut problems);
    check_report(&defs, &v["assessment"]["report"], &mut problems);
    check(&defs, "Interval", &v["assessment"]["auc_ci"], &mut problems);
    for b in v["assessment"]["reliability"].as_array().expect("bins") {
        check(&defs, "ReliabilityBin", b, &mut problems);
    }
    for w in v["assessment"]["worst"].as_array().expect("worst") {
        check(&defs, "Miss", w, &mut problems);
    }
    let aside = v["set_aside"].as_array().expect("set aside");
    assert_eq!(aside.len(), 3, "an unknown label, a missing file, a repeated row: {aside:?}");
    for a in aside {
        check(&defs, "LabelAside", a, &mut problems);
    }
    for f in &set.items {
        check(&defs, "LabelledFile", &serde_json::to_value(f).expect("file as JSON"), &mut problems);
    }
    let at = m.at(0.3).expect("the CT model has an operating point");
    check(&defs, "AtThreshold", &serde_json::to_value(&at).expect("threshold as JSON"), &mut problems);

    let epoch = EpochRecord { epoch: 1, train_loss: 0.5, train_accuracy: 0.8, held_loss: 0.6, held_auc: Some(0.7) };
    let fold = FoldRecord {
        fold: 0,
        train_images: 3,
        held_images: 1,
        test_images: 1,
        best_epoch: 1,
        epochs: vec![epoch.clone()],
        auc_before: Some(0.6),
        auc_after: Some(0.7),
    };
    let p = Provenance {
        base_sha256: entry.sha256.clone(),
        base_title: entry.title.clone(),
        config: AdaptConfig::new(Part::Last),
        counts: vec![2, 3],
        grouped: true,
        cross_validation: CrossValidated {
            folds: 5,
            auc_before: Some(0.6),
            auc_before_ci: m.assessment.auc_ci.clone(),
            auc_after: Some(0.7),
            auc_after_ci: m.assessment.auc_ci.clone(),
            difference_ci: m.assessment.auc_ci.clone(),
            per_fold: vec![fold.clone()],
        },
        final_fit: fold,
        warning: WARNING.into(),
    };
    let pv = serde_json::to_value(&p).expect("provenance as JSON");
    check(&defs, "Provenance", &pv, &mut problems);
    check(&defs, "AdaptConfig", &pv["config"], &mut problems);
    check(&defs, "CrossValidated", &pv["cross_validation"], &mut problems);
    check(&defs, "FoldRecord", &pv["final_fit"], &mut problems);
    check(&defs, "EpochRecord", &pv["final_fit"]["epochs"][0], &mut problems);
    for progress in [
        Progress::Scored { done: 1, of: 5 },
        Progress::Step { fit: 0, epoch: 1, loss: 0.5, steps_run: 1, steps_left: 9 },
        Progress::Epoch { fit: 0, record: epoch, stopping: false },
        Progress::Done,
    ] {
        check(&defs, "AdaptProgress", &serde_json::to_value(&progress).expect("progress as JSON"), &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
