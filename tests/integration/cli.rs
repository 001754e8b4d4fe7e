//! The `ctxr` binary end to end: untrained weights on a real CT slice and a real CXR file
//! (with the loud "no evaluation" warning and a heatmap PNG), and `inspect` on every
//! decoder sample against the reference facts.

use super::common;

use std::process::Command;

use serde_json::Value;

fn ctxr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctxr"))
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ctxr-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn classify_untrained_weights_end_to_end_with_heatmaps() {
    let Some(data) = common::shared_data("classify_untrained_weights_end_to_end_with_heatmaps") else { return };
    let dir = tmpdir("classify");
    let w = dir.join("weights");
    let st = ctxr().args(["init-weights", "--out"]).arg(&w).status().unwrap();
    assert!(st.success());
    let ct = data.join("ct/decoder-samples/dicom-chest-ct/ID_0000_AGE_0060_CONTRAST_1_CT.dcm");
    let rows = common::manifest_rows(&data.join("cxr/manifest.csv"));
    let cxr_rel = &rows.iter().find(|r| r.0.ends_with(".jpeg") || r.0.ends_with(".jpg")).unwrap().0;
    let cxr = data.join("cxr").join(cxr_rel);
    for (file, model, class) in [(&ct, None, None), (&cxr, Some("cxr"), Some("pneumonia"))] {
        let png = dir.join(format!("{}.png", model.unwrap_or("auto")));
        let mut cmd = ctxr();
        cmd.arg("classify").arg(file).arg("--weights").arg(&w).arg("--heatmap").arg(&png).arg("--json").args(["--layer", "3"]);
        if let Some(m) = model {
            cmd.args(["--model", m]);
        }
        if let Some(c) = class {
            cmd.args(["--class", c]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stderr.contains("WARNING") && stderr.contains("NO evaluation"), "loud warning expected:\n{stderr}");
        let v: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        assert_eq!(v["evaluated"], false);
        let p: Vec<f64> = v["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        assert_eq!(v["model"], model.unwrap_or("ct"));
        let img = image::open(&png).unwrap();
        let src = ctxr::decode::decode(&std::fs::read(file).unwrap(), &Default::default()).unwrap();
        assert_eq!((img.width(), img.height()), (src.width, src.height), "overlay at the image's own size");
        assert_eq!(v["heatmap"]["layer"], "stage3");
    }
    // A bad file among good ones: reported, the rest still classified, exit code 1.
    let bad = dir.join("bad.dcm");
    std::fs::write(&bad, b"%PDF-1.4 not an image").unwrap();
    let out = ctxr().arg("classify").arg(&bad).arg(&ct).arg("--weights").arg(&w).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("PDF document"), "{stdout}");
    assert!(stdout.contains("UNEVALUATED"), "{stdout}");
}

#[test]
fn inspect_reports_decoder_sample_facts() {
    let Some(data) = common::shared_data("inspect_reports_decoder_sample_facts") else { return };
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(data.join("decoder-references.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (rel, r) in refs.as_object().unwrap() {
        let out = ctxr().args(["inspect", "--json"]).arg(data.join(rel)).output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        if r.get("pixels").is_some() {
            assert!(v["error"].as_str().unwrap().contains("JPEG-LS"), "{rel}: {v}");
            checked += 1;
            continue;
        }
        let block = r.get("stored").or(r.get("hu")).unwrap();
        let shape = block["shape"].as_array().unwrap();
        assert_eq!(v["height"], shape[0], "{rel}");
        assert_eq!(v["width"], shape[1], "{rel}");
        if rel.ends_with(".dcm") {
            assert_eq!(v["format"], "DICOM", "{rel}");
            assert_eq!(v["modality"], r["modality"], "{rel}");
            assert_eq!(v["bits"], r["bits_stored"], "{rel}");
            assert_eq!(v["frames"], r["frames"], "{rel}");
            assert_eq!(v["hounsfield"], r["modality"] == "CT", "{rel}");
            assert_eq!(v["dicom"]["transfer_syntax_uid"], r["transfer_syntax"], "{rel}");
        } else {
            assert_eq!(v["format"], "TIFF", "{rel}");
            assert_eq!(v["hounsfield"], true, "{rel}");
            assert_eq!(v["bits"], if r.get("hu").is_some() { 64 } else { 16 }, "{rel}");
        }
        checked += 1;
    }
    // Windows: a file with two windows lists both, in order.
    let out = ctxr().args(["inspect", "--json"]).arg(data.join("ct/decoder-samples/dicom-chest-ct/ID_0002_AGE_0074_CONTRAST_1_CT.dcm")).output().unwrap();
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["windows"], serde_json::json!([{"center": 40.0, "width": 400.0}, {"center": -600.0, "width": 1200.0}]));
    assert_eq!(checked, refs.as_object().unwrap().len(), "every decoder sample inspected");
}
