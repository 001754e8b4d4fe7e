//! `ctxr adapt` on real CT slices: a user's CSV of COVID-19 lesion slices and lung-cancer
//! slices with patient ids. The run must cross-validate by patient (every image scored once,
//! by a model that never trained on it), write a weights folder that the CLI loads like the
//! shipped one — the record's hash in a manifest entry that names its base model and says it is
//! not validated — and refuse in words what cannot be adapted.

use std::path::Path;
use std::process::Command;

use ctxr::model::{ModelId, sha256_hex};
use serde_json::Value;

use crate::common::{committed_manifest, manifest_rows, shared_data, weights_dir};

fn adapt(args: &[&str], data: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ctxr"))
        .args(["adapt", "--model", "ct", "--weights"])
        .arg(weights_dir())
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn adapting_on_a_labelled_csv_cross_validates_by_patient_and_writes_a_loadable_weights_folder() {
    let Some(data) = shared_data("adapt") else { return };
    let rows = manifest_rows(&data.join("ct/manifest.csv"));
    let dir = std::env::temp_dir().join(format!("ctxr-adapt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 30 lesion slices of COVID-19 patients and 30 lung-cancer slices, each with its patient.
    let mut csv = String::from("file,label,group\n");
    for (source, label) in [("covid19-ct-seg", "covid"), ("tcga-ct", "noncovid")] {
        // Dealt round the patients, so that the set has many of them.
        let mut by_patient: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (rel, _, _, patient) in rows.iter().filter(|r| r.2 == source && r.1 == label) {
            by_patient.entry(patient.as_str()).or_default().push(rel.as_str());
        }
        assert!(by_patient.len() >= 10, "{source}: {} patients", by_patient.len());
        let dealt = (0..).flat_map(|k| by_patient.iter().filter_map(move |(p, rels)| rels.get(k).map(|r| (*p, *r))));
        for (patient, rel) in dealt.take(30) {
            assert!(!patient.is_empty());
            csv.push_str(&format!("{},{label},{patient}\n", data.join("ct").join(rel).display()));
        }
    }
    std::fs::write(dir.join("labels.csv"), &csv).unwrap();
    let out = dir.join("adapted");
    let json = dir.join("report.json");
    let o = adapt(&["--train", "head", "--folds", "2", "--epochs", "2", "--json", json.to_str().unwrap()], &dir.join("labels.csv"), &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("AUC before") && stdout.contains("AUC after") && stdout.contains("not validated"), "{stdout}");
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The input gate may set aside a slice it is sure is no chest image (two lesion slices of
    // one volume, today): everything else is used.
    let n = r["files"].as_array().unwrap().len() as u64;
    let aside = r["set_aside"].as_array().unwrap();
    assert!(aside.iter().all(|a| a["reason"] == "refused") && aside.len() <= 3, "{aside:?}");
    assert_eq!(n + aside.len() as u64, 60);
    assert_eq!(r["grouped"], true);
    let cv = &r["cross_validation"];
    let folds = cv["per_fold"].as_array().unwrap();
    assert_eq!(folds.len(), 2);
    assert_eq!(folds.iter().map(|f| f["test_images"].as_u64().unwrap()).sum::<u64>(), n, "every image scored out of fold once");
    for f in folds {
        let (train, held, test) = (f["train_images"].as_u64().unwrap(), f["held_images"].as_u64().unwrap(), f["test_images"].as_u64().unwrap());
        assert_eq!(train + held + test, n);
        assert!(held > 0 && f["epochs"].as_array().unwrap().len() <= 2);
    }
    for key in ["auc_before", "auc_after"] {
        let a = cv[key].as_f64().unwrap();
        let ci = &cv[format!("{key}_ci")];
        assert!((0.0..=1.0).contains(&a) && ci["lo"].as_f64().unwrap() <= a && a <= ci["hi"].as_f64().unwrap(), "{key} {a} {ci}");
        assert_eq!(ci["unit"], "patients");
    }
    assert!(cv["difference_ci"]["lo"].as_f64().unwrap() <= cv["difference_ci"]["hi"].as_f64().unwrap());

    // The folder: the adapted record under its hash, the other records copied, and an entry
    // that says what it is.
    let m = ctxr_lab::weights::read_manifest(&out).unwrap();
    let e = m.model(ModelId::Ct).unwrap();
    assert_eq!(e.record, "ct.adapted.bpk");
    assert_eq!(sha256_hex(&std::fs::read(out.join(&e.record)).unwrap()), e.sha256);
    assert_eq!(e.sha256, r["record_sha256"].as_str().unwrap());
    assert!(e.title.contains(&format!("adapted locally on {n} images, not validated")), "{}", e.title);
    assert!(e.evaluation.is_none(), "the base model's evaluation describes other weights");
    assert!(e.details.is_none() && e.training.as_ref().is_some_and(|t| t.cross_validation.is_none()), "nor do its cross-validation and details");
    let p = e.adapted.as_ref().expect("provenance");
    let shipped = committed_manifest();
    assert_eq!(p.base_sha256, shipped.model(ModelId::Ct).unwrap().sha256);
    assert_eq!(p.counts[0], 30);
    assert_eq!(p.counts.iter().sum::<usize>() as u64, n);
    for other in [ModelId::Gate, ModelId::Cxr] {
        let rec = &m.model(other).unwrap().record;
        assert_eq!(std::fs::read(out.join(rec)).unwrap(), std::fs::read(weights_dir().join(rec)).unwrap());
    }
    // …and the CLI reads it like the shipped weights.
    let o = Command::new(env!("CARGO_BIN_EXE_ctxr"))
        .args(["eval", "--model", "ct", "--weights"])
        .arg(&out)
        .arg("--labelled")
        .arg(dir.join("labels.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{n} usable images")));

    // Never over the base model's own folder.
    let o = adapt(&["--folds", "2", "--epochs", "1"], &dir.join("labels.csv"), &weights_dir());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("a folder of their own"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn too_few_images_or_too_little_memory_are_refused_before_training() {
    let Some(data) = shared_data("adapt refusals") else { return };
    let rows = manifest_rows(&data.join("ct/manifest.csv"));
    let dir = std::env::temp_dir().join(format!("ctxr-adapt-few-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("file,label\n");
    for (rel, label, _, _) in rows.iter().filter(|r| r.2 == "covid19-ct-seg").take(2).chain(rows.iter().filter(|r| r.2 == "tcga-ct").take(1)) {
        csv.push_str(&format!("{},{label}\n", data.join("ct").join(rel).display()));
    }
    std::fs::write(dir.join("three.csv"), csv).unwrap();
    let o = adapt(&[], &dir.join("three.csv"), &dir.join("out"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("too few to split 5 ways"), "{stderr}");
    assert!(!dir.join("out").exists());
    // 3 images of 192² need 0.1 MB; with 0 MB allowed the set is refused before it is read.
    let o = adapt(&["--max-memory-mb", "0"], &dir.join("three.csv"), &dir.join("out"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("more than the 0 MB"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
