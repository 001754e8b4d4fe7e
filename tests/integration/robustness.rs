//! Every file under `odd-inputs` gives a decoded image or a typed error, and every image in
//! both manifests decodes and preprocesses; nothing panics. Prints the counts.

use super::common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ctxr::decode::{DecodeOptions, decode};
use ctxr::imaging::{PreprocessConfig, WindowChoice, preprocess};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn odd_inputs_decode_or_give_typed_errors() {
    let Some(data) = common::shared_data("odd_inputs_decode_or_give_typed_errors") else { return };
    let mut files = Vec::new();
    walk(&data.join("odd-inputs"), &mut files);
    assert!(files.len() > 100, "odd-inputs should hold many files");
    let cfg = PreprocessConfig::new(128);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut panics = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            decode(&bytes, &DecodeOptions::default()).inspect(|img| {
                let p = preprocess(img, &cfg, WindowChoice::Auto).expect("a decoded image preprocesses");
                assert!(p.input.iter().all(|v| v.is_finite()), "finite model input");
            })
        }));
        match r {
            Ok(Ok(img)) => {
                ok += 1;
                assert!(img.width > 0 && img.height > 0);
                assert_eq!(img.pixels.len(), (img.width * img.height) as usize);
            }
            Ok(Err(e)) => {
                err += 1;
                assert!(!e.to_string().is_empty());
                *kinds.entry(e.kind().to_string()).or_default() += 1;
            }
            Err(_) => panics.push(f.display().to_string()),
        }
    }
    eprintln!("odd-inputs: {} files, {ok} decoded, {err} typed errors {kinds:?}, {} panics", files.len(), panics.len());
    assert!(panics.is_empty(), "panicked on:\n{}", panics.join("\n"));
    assert!(ok > 50, "most odd-but-valid images decode");
}

#[test]
fn every_manifest_image_decodes() {
    let Some(data) = common::shared_data("every_manifest_image_decodes") else { return };
    let cfg = PreprocessConfig::new(128);
    for modality in ["ct", "cxr"] {
        let rows = common::manifest_rows(&data.join(modality).join("manifest.csv"));
        let mut failures = Vec::new();
        let mut by_format: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (path, ..) in &rows {
            let bytes = std::fs::read(data.join(modality).join(path)).unwrap();
            match catch_unwind(AssertUnwindSafe(|| {
                decode(&bytes, &DecodeOptions::default()).map(|img| (img.format.name(), preprocess(&img, &cfg, WindowChoice::Auto).is_ok()))
            })) {
                Ok(Ok((fmt, true))) => *by_format.entry(fmt).or_default() += 1,
                Ok(Ok((_, false))) => failures.push(format!("{path}: preprocess failed")),
                Ok(Err(e)) => failures.push(format!("{path}: {e}")),
                Err(_) => failures.push(format!("{path}: PANIC")),
            }
        }
        eprintln!("{modality}: {} images, decoded {by_format:?}, {} failures", rows.len(), failures.len());
        assert!(failures.is_empty(), "{modality} failures:\n{}", failures.join("\n"));
    }
}
