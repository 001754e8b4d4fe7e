//! A user's labelled images (`ctxr eval --labelled`): a folder of class folders with real CT
//! slices and the mistakes users make (a photo, a copy, a text file, a class the model lacks).
//! The assessment must list each mistake with its reason, and its numbers must be the ones the
//! page's own path (`Models::analyze` with the model chosen by hand) gives for the same files.

use std::process::Command;

use ctxr::infer::analysis::ModelChoice;
use ctxr::infer::{Request, softmax};
use ctxr::train::metrics::auc;
use serde_json::Value;

use crate::common::{committed_models, manifest_rows, shared_data};

#[test]
fn a_labelled_folder_is_assessed_as_the_page_reads_it_and_bad_files_are_set_aside() {
    let Some(data) = shared_data("labelled folder") else { return };
    let rows = manifest_rows(&data.join("ct/manifest.csv"));
    let dir = std::env::temp_dir().join(format!("ctxr-labelled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 24 COVID-19 lesion slices in one folder per patient, 24 lung-cancer slices (tcga-ct) flat.
    let mut placed: Vec<(std::path::PathBuf, usize)> = Vec::new();
    let pick = |source: &'static str, label: &'static str| rows.iter().filter(move |r| r.2 == source && r.1 == label).take(24);
    for (rel, _, _, patient) in pick("covid19-ct-seg", "covid") {
        let to = dir.join("covid").join(patient.replace(':', "_")).join(rel.rsplit('/').next().unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(data.join("ct").join(rel), &to).unwrap();
        placed.push((to, 1));
    }
    for (rel, _, _, _) in pick("tcga-ct", "noncovid") {
        let to = dir.join("NonCovid").join(rel.rsplit('/').next().unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(data.join("ct").join(rel), &to).unwrap();
        placed.push((to, 0));
    }
    assert_eq!(placed.len(), 48, "the shared data has 24 of each");
    std::fs::copy(data.join("odd-inputs/image-rs/tests/images/jpg/progressive/cat.jpg"), dir.join("covid/cat.jpg")).unwrap();
    std::fs::copy(&placed[30].0, dir.join("NonCovid/zz-copy.tif")).unwrap();
    std::fs::write(dir.join("NonCovid/notes.txt"), "slices from the 2019 teaching file").unwrap();
    std::fs::create_dir_all(dir.join("normal")).unwrap();
    std::fs::copy(&placed[0].0, dir.join("normal/n.jpg")).unwrap();
    std::fs::write(dir.join("NonCovid/.DS_Store"), [0u8; 16]).unwrap();

    let json = dir.join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ctxr"))
        .args(["eval", "--model", "ct", "--weights"])
        .arg(crate::common::weights_dir())
        .arg("--labelled")
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();

    // Every mistake is listed with its reason; hidden files are no one's images.
    let aside: Vec<(String, String)> = r["set_aside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect();
    let reason = |name: &str| aside.iter().find(|(p, _)| p == name).map(|(_, r)| r.as_str());
    assert_eq!(reason("cat.jpg"), Some("refused"), "{aside:?}");
    assert_eq!(reason("zz-copy.tif"), Some("same_image_as"), "{aside:?}");
    assert_eq!(reason("notes.txt"), Some("unreadable"), "{aside:?}");
    assert_eq!(reason("n.jpg"), Some("unknown_label"), "{aside:?}");
    assert_eq!(reason(".DS_Store"), None);
    assert_eq!(aside.len(), 4, "{aside:?}");
    assert!(stdout.contains("set aside:") && stdout.contains("refused by the input gate"), "{stdout}");
    assert_eq!(r["counts"], serde_json::json!([24, 24]));
    // Not every file names a patient (the lung-cancer slices are flat), so images are resampled.
    assert_eq!(r["grouped"], false);
    assert_eq!(r["assessment"]["auc_ci"]["unit"], "images");

    // The same files through the page's path: the same probabilities, so the same AUC.
    let models = committed_models();
    let req = Request { model: ModelChoice::Ct, ..Request::default() };
    let files: Vec<String> = r["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    assert_eq!(files.len(), 48);
    let (mut p, mut pos) = (Vec::new(), Vec::new());
    for f in &files {
        let (a, _) = pollster::block_on(models.analyze(&std::fs::read(f).unwrap(), &req)).unwrap();
        let pred = a.prediction.expect("a chosen model classifies");
        let t = f64::from(models.classifier(ctxr::model::ModelId::Ct).unwrap().entry.temperature());
        p.push(softmax::<f64>(&pred.logits, t)[1]);
        pos.push(placed.iter().find(|(q, _)| q.to_string_lossy() == *f).map(|(_, l)| *l == 1).unwrap());
    }
    let page_auc = auc(&p, &pos);
    let cli_auc = r["assessment"]["report"]["auc"].as_f64().unwrap();
    assert!((page_auc - cli_auc).abs() < 1e-5, "page {page_auc} vs CLI {cli_auc}");
    let (lo, hi) = (r["assessment"]["auc_ci"]["lo"].as_f64().unwrap(), r["assessment"]["auc_ci"]["hi"].as_f64().unwrap());
    assert!(lo <= cli_auc && cli_auc <= hi && hi - lo > 0.0, "{lo}–{hi} around {cli_auc}");
    assert_eq!(r["assessment"]["reliability"].as_array().unwrap().iter().map(|b| b["n"].as_u64().unwrap()).sum::<u64>(), 48);
    assert_eq!(r["assessment"]["worst"].as_array().unwrap().len(), 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_labelled_set_of_one_class_is_refused_in_plain_words() {
    let Some(data) = shared_data("labelled one class") else { return };
    let rows = manifest_rows(&data.join("ct/manifest.csv"));
    let dir = std::env::temp_dir().join(format!("ctxr-labelled-one-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("file,label\n");
    for (rel, _, _, _) in rows.iter().filter(|r| r.2 == "tcga-ct").take(5) {
        csv.push_str(&format!("{},noncovid\n", data.join("ct").join(rel).display()));
    }
    csv.push_str("nowhere.png,covid\n");
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ctxr"))
        .args(["eval", "--model", "ct", "--weights"])
        .arg(crate::common::weights_dir())
        .arg("--labelled")
        .arg(dir.join("labels.csv"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("every usable file is labelled 'noncovid'"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
