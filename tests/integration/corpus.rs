//! The generated hostile-input corpus (`ctxr_lab::corpus`, one test per group so a failure names
//! its group and file) and `../shared/data/odd-inputs` through the whole path a dropped file
//! takes — decode → gate → preprocess → classify — asserting each file's expected outcome and
//! that nothing panics. The browser test reads the same corpus, written by `ctxr corpus`.

use super::common;
use ctxr_lab::corpus;

use std::panic::{AssertUnwindSafe, catch_unwind};

use ctxr::decode::{DecodeError, DecodeOptions, Volume, decode, decode_volume, is_volume};
use ctxr::imaging::{PreprocessConfig, WindowChoice, preprocess};
use ctxr::infer::analysis::ModelChoice;
use ctxr::infer::{Models, Request};

fn models() -> Models {
    common::committed_models()
}

/// Analyse `bytes` as the page does (automatic model choice); `Ok(summary)` or `Err(kind)`.
fn analyze(m: &Models, bytes: &[u8]) -> Result<String, String> {
    match pollster::block_on(m.analyze(bytes, &Request { model: ModelChoice::Auto, ..Request::default() })) {
        Ok((a, _)) if a.refused => Ok(format!("refused: {}", a.gate.as_ref().map(|g| g.reason.clone()).unwrap_or_default())),
        Ok((a, _)) => Ok(format!("{} {:?}", a.model.map(|m| m.name()).unwrap_or_default(), a.decision.map(|d| d.label))),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains("{ ") && !msg.contains("panicked"), "plain-words message, got {msg:?}");
            Err(e.kind().to_string())
        }
    }
}

#[test]
fn the_corpus_is_large_and_its_names_unique() {
    let cases = corpus::cases();
    assert!(cases.len() >= 40, "the corpus holds {} files", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "corpus file names are unique");
}

/// Every case of group `name` meets its expected outcome.
fn corpus_group(name: &str) {
    let (_, make) = corpus::GROUPS.iter().find(|(g, _)| *g == name).expect("a corpus group");
    let cases = make();
    assert!(!cases.is_empty(), "group {name} is empty");
    let m = models();
    let cfg = PreprocessConfig::new(128);
    let mut failures = Vec::new();
    for c in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let decoded = decode(&c.bytes, &DecodeOptions::default());
            let volume = is_volume(&c.bytes).then(|| decode_volume(&c.bytes, &DecodeOptions::default()));
            let via_page = analyze(&m, &c.bytes);
            (decoded, volume, via_page)
        }));
        let Ok((decoded, volume, via_page)) = outcome else {
            failures.push(format!("{}: PANIC", c.name));
            continue;
        };
        let line = match (&c.expect, decoded) {
            (expect, decoded) if volume.is_some() || matches!(expect, corpus::Expect::Volume { .. }) => volume_line(expect, volume, decoded, &via_page),
            (corpus::Expect::Error(kind), Err(e)) if e.kind() == *kind => match &via_page {
                Err(k) if k == kind => Ok(format!("error {kind}: {e}")),
                other => Err(format!("decode gave {kind} but the page path gave {other:?}")),
            },
            (corpus::Expect::Error(kind), Err(e)) => Err(format!("expected {kind}, got {}: {e}", e.kind())),
            (corpus::Expect::Error(kind), Ok(img)) => Err(format!("expected {kind}, decoded {}×{}", img.width, img.height)),
            (corpus::Expect::Volume { .. }, _) => unreachable!("volumes are matched above"),
            (corpus::Expect::Image { .. }, Err(e)) => Err(format!("expected an image, got {}: {e}", e.kind())),
            (corpus::Expect::Image { width, height, check }, Ok(img)) => {
                if (img.width, img.height) != (*width, *height) || img.pixels.len() != (*width * *height) as usize {
                    Err(format!("expected {width}×{height}, got {}×{}", img.width, img.height))
                } else if let Err(why) = check(&img) {
                    Err(format!("check failed: {why}"))
                } else {
                    match preprocess(&img, &cfg, WindowChoice::Auto) {
                        Ok(p) if p.input.iter().all(|v| v.is_finite()) => match &via_page {
                            Ok(s) => Ok(format!("image {width}×{height} → {s}")),
                            Err(k) => Err(format!("decoded, but the page path failed with {k}")),
                        },
                        Ok(_) => Err("non-finite model input".into()),
                        Err(e) => Err(format!("preprocess failed: {e}")),
                    }
                }
            }
        };
        match line {
            Ok(s) => eprintln!("  ok   {:<28} {s}", c.name),
            Err(s) => {
                eprintln!("  FAIL {:<28} {s}", c.name);
                failures.push(format!("{} ({}): {s}", c.name, c.about));
            }
        }
    }
    eprintln!("corpus group {name}: {} files, {} failures", cases.len(), failures.len());
    assert!(failures.is_empty(), "corpus group {name} failures:\n{}", failures.join("\n"));
}

/// A volume file's outcome: `decode_volume` gives the expected volume or error, and the
/// single-image path (native and the page's) never gives an image: `is_volume` for a good
/// file, the header's own error or `is_volume` for a damaged one, the same on both.
fn volume_line(
    expect: &corpus::Expect,
    volume: Option<Result<Volume, DecodeError>>,
    decoded: Result<ctxr::decode::MedImage, DecodeError>,
    via_page: &Result<String, String>,
) -> Result<String, String> {
    let flat = match decoded {
        Ok(img) => return Err(format!("the single-image path decoded a volume file as {}×{}", img.width, img.height)),
        Err(e) => e.kind(),
    };
    if via_page.as_ref().err().map(String::as_str) != Some(flat) {
        return Err(format!("the single-image decoder said {flat}, the page path {via_page:?}"));
    }
    match (expect, volume) {
        (_, None) => Err("not recognised as a volume".into()),
        (corpus::Expect::Volume { columns, rows, slices, check }, Some(Ok(v))) => {
            if (v.columns, v.rows, v.slices) != (*columns, *rows, *slices) || v.voxels.len() != (columns * rows * slices) as usize {
                Err(format!("expected {columns}×{rows}×{slices}, got {}×{}×{}", v.columns, v.rows, v.slices))
            } else if flat != "is_volume" {
                Err(format!("a good volume, but the single-image path said {flat}"))
            } else {
                check(&v)
                    .map(|_| format!("volume {columns}×{rows}×{slices} ({}), single-image path: {flat}", v.source))
                    .map_err(|why| format!("check failed: {why}"))
            }
        }
        (corpus::Expect::Volume { .. }, Some(Err(e))) => Err(format!("expected a volume, got {}: {e}", e.kind())),
        (corpus::Expect::Error(kind), Some(Err(e))) if e.kind() == *kind && (flat == *kind || flat == "is_volume") => {
            Ok(format!("error {kind}: {e} (single-image path: {flat})"))
        }
        (corpus::Expect::Error(kind), Some(Err(e))) => Err(format!("expected {kind}, got {}: {e} (single-image path: {flat})", e.kind())),
        (corpus::Expect::Error(kind), Some(Ok(v))) => Err(format!("expected {kind}, decoded a {}×{}×{} volume", v.columns, v.rows, v.slices)),
        (corpus::Expect::Image { .. }, Some(_)) => Err("expected an image, the file is a volume".into()),
    }
}

#[test]
fn corpus_nifti() {
    corpus_group("nifti");
}

#[test]
fn corpus_not_images() {
    corpus_group("not_images");
}

#[test]
fn corpus_png() {
    corpus_group("png");
}

#[test]
fn corpus_jpeg() {
    corpus_group("jpeg");
}

#[test]
fn corpus_tiff() {
    corpus_group("tiff");
}

#[test]
fn corpus_dicom() {
    corpus_group("dicom");
}

#[test]
fn corpus_bmp() {
    corpus_group("bmp");
}

#[test]
fn every_corpus_group_is_tested() {
    let tested = ["not_images", "png", "jpeg", "tiff", "dicom", "bmp", "nifti"];
    let groups: Vec<&str> = corpus::GROUPS.iter().map(|(g, _)| *g).collect();
    assert_eq!(groups, tested, "a new corpus group needs its own #[test]");
}

#[test]
fn odd_inputs_survive_the_page_path() {
    let Some(data) = common::shared_data("odd_inputs_survive_the_page_path") else { return };
    let m = models();
    let mut files = Vec::new();
    let mut stack = vec![data.join("odd-inputs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    files.sort();
    let (mut classified, mut refused, mut errors, mut panics) = (0, 0, 0, Vec::new());
    for f in &files {
        let bytes = std::fs::read(f).expect("readable");
        match catch_unwind(AssertUnwindSafe(|| analyze(&m, &bytes))) {
            Ok(Ok(s)) if s.starts_with("refused") => refused += 1,
            Ok(Ok(_)) => classified += 1,
            Ok(Err(_)) => errors += 1,
            Err(_) => panics.push(f.display().to_string()),
        }
    }
    eprintln!(
        "odd-inputs through decode → gate → preprocess → classify: {} files, {classified} classified, {refused} refused by the gate, {errors} typed errors, {} panics",
        files.len(),
        panics.len()
    );
    assert!(panics.is_empty(), "panicked on:\n{}", panics.join("\n"));
    assert!(classified + refused > 100 && errors > 20, "most odd inputs are images (classified or refused with a reason), the rest typed errors");
}
