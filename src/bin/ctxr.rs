//! `ctxr`: the native command line. `classify` runs decode → preprocess → model → Grad-CAM on
//! files; `inspect` prints what the decoder found; `init-weights` writes untrained weights
//! (for exercising the pipeline only).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::module::Module;
use clap::{Parser, Subcommand};
use ctxr::classifier::Classifier;
use ctxr::colormap::{Colormap, overlay};
use ctxr::decode::{DecodeOptions, Intensity, MedImage, TiffU16, decode};
use ctxr::gradcam::to_original;
use ctxr::model::ModelConfig;
use ctxr::preprocess::{PreprocessConfig, WindowChoice, WindowPreset, render, resolve_window};
use ctxr::weights::{Manifest, Modality, ModelEntry, record_bytes};
use serde_json::json;

#[derive(Parser)]
#[command(name = "ctxr", version, about = "Chest CT / chest X-ray classifier with Grad-CAM (research and teaching; not for clinical use)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Classify image files (PNG, JPEG, TIFF, DICOM …) and optionally write Grad-CAM overlays.
    Classify {
        files: Vec<PathBuf>,
        /// Which model: ct or cxr. Default: from the DICOM Modality or Hounsfield units.
        #[arg(long)]
        model: Option<String>,
        /// Folder holding manifest.json and the records.
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        /// Write a Grad-CAM overlay PNG here (with several files: a folder, one PNG per file).
        #[arg(long)]
        heatmap: Option<PathBuf>,
        /// Grad-CAM stage, 1 (shallow) … N (deep). Default: the deepest.
        #[arg(long)]
        layer: Option<usize>,
        /// Class to explain (name). Default: the predicted class.
        #[arg(long)]
        class: Option<String>,
        /// CT window: lung, mediastinum, bone, file, or CENTER,WIDTH in HU.
        #[arg(long)]
        window: Option<String>,
        /// Colour map: viridis (default), cividis, turbo, jet.
        #[arg(long, default_value = "viridis")]
        colormap: String,
        /// Heatmap opacity, 0..1.
        #[arg(long, default_value_t = 0.45)]
        alpha: f32,
        /// cpu (flex) or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print one JSON object per file.
        #[arg(long)]
        json: bool,
    },
    /// Print what the decoder finds in files: format, size, bit depth, HU or not, windows, DICOM facts.
    Inspect {
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Read 16-bit TIFFs as raw intensities instead of HU + 1024.
        #[arg(long)]
        tiff_raw: bool,
    },
    /// Train a model (ct, cxr or gate) on the real data with 5-fold patient-grouped CV, then
    /// write its record and manifest entry (with evaluation) into --weights.
    Train {
        #[arg(long)]
        model: String,
        /// Folder with ct/ and cxr/ manifests (the shared data).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        /// Caches, checkpoints and logs.
        #[arg(long, default_value = "cache/train")]
        work: PathBuf,
        /// Continue from the last checkpoint and reuse finished folds.
        #[arg(long)]
        resume: bool,
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// Evaluate shipped weights: by default on the model's held-out fold and its external
    /// sets; with --manifest on any CSV with the manifest schema.
    Eval {
        #[arg(long)]
        model: String,
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Write the full report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Regenerate the measured-numbers section of MODEL_CARD.md from weights/manifest.json.
    Card {
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        #[arg(long, default_value = "MODEL_CARD.md")]
        out: PathBuf,
    },
    /// Write UNTRAINED weights and a manifest without evaluation (to exercise the pipeline).
    InitWeights {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 128)]
        input_size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Classify { files, model, weights, heatmap, layer, class, window, colormap, alpha, device, json } => classify(ClassifyArgs {
            files,
            model,
            weights,
            heatmap,
            layer,
            class,
            window,
            colormap,
            alpha,
            device,
            json,
        }),
        Cmd::Inspect { files, json, tiff_raw } => inspect(&files, json, tiff_raw),
        Cmd::InitWeights { out, input_size, seed } => init_weights(&out, input_size, seed),
        Cmd::Train { model, data, weights, work, resume, epochs } => ctxr::train::run(&ctxr::train::RunOptions {
            model,
            data_dir: data,
            weights_dir: weights,
            work_root: work,
            resume,
            epochs,
        })
        .map(|_| ExitCode::SUCCESS),
        Cmd::Card { weights, out } => (|| {
            let m = load_manifest(&weights)?;
            let old = std::fs::read_to_string(&out).unwrap_or_default();
            std::fs::write(&out, ctxr::card::splice(&old, &ctxr::card::render(&m))).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        })(),
        Cmd::Eval { model, weights, data, manifest, json } => eval(&model, &weights, &data, manifest.as_deref(), json.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

struct ClassifyArgs {
    files: Vec<PathBuf>,
    model: Option<String>,
    weights: PathBuf,
    heatmap: Option<PathBuf>,
    layer: Option<usize>,
    class: Option<String>,
    window: Option<String>,
    colormap: String,
    alpha: f32,
    device: String,
    json: bool,
}

fn parse_window(s: Option<&str>) -> Result<WindowChoice, String> {
    let Some(s) = s else { return Ok(WindowChoice::Auto) };
    if s.eq_ignore_ascii_case("file") {
        return Ok(WindowChoice::FromFile);
    }
    if let Some(p) = WindowPreset::parse(s) {
        let w = p.window();
        return Ok(WindowChoice::Custom { center: w.center, width: w.width });
    }
    let parts: Vec<&str> = s.split(',').collect();
    if let [c, w] = parts.as_slice() {
        let c: f32 = c.trim().parse().map_err(|_| format!("bad window centre '{c}'"))?;
        let w: f32 = w.trim().parse().map_err(|_| format!("bad window width '{w}'"))?;
        if w > 0.0 {
            return Ok(WindowChoice::Custom { center: c, width: w });
        }
    }
    Err(format!("--window must be lung, mediastinum, bone, file or CENTER,WIDTH (got '{s}')"))
}

fn make_device(name: &str) -> Result<burn::tensor::Device, String> {
    match name {
        "cpu" | "flex" => Ok(ctxr::device::cpu()),
        "wgpu" | "gpu" => pollster::block_on(ctxr::device::wgpu()),
        other => Err(format!("unknown device '{other}' (cpu or wgpu)")),
    }
}

/// Which model reads this image when the user did not say.
/// Which model reads this image when there is no gate model: the gate's DICOM rules, else
/// Hounsfield units mean CT.
fn route(img: &MedImage) -> Result<Modality, String> {
    match ctxr::gate::by_metadata(img, f32::INFINITY) {
        Some(v) if v.accepted => v.modality.ok_or_else(|| v.reason.clone()),
        Some(v) => Err(format!("refused: {}", v.reason)),
        None if img.intensity == Intensity::Hounsfield => Ok(Modality::Ct),
        None => Err("cannot tell whether this is a chest CT slice or a chest X-ray (no DICOM Modality, no Hounsfield units, no gate model); pass --model ct or --model cxr".into()),
    }
}

fn load_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("cannot read {}: {e}. Train models (see README) or write untrained ones with `ctxr init-weights --out DIR`.", path.display())
    })?;
    Manifest::parse(&text).map_err(|e| e.to_string())
}

fn load_classifier(dir: &Path, manifest: &Manifest, id: &str, device: &burn::tensor::Device) -> Result<Classifier, String> {
    let entry = manifest.model(id).map_err(|e| e.to_string())?.clone();
    let path = dir.join(&entry.record);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Classifier::load(entry, &bytes, device.clone()).map_err(|e| format!("{}: {e}", path.display()))
}

fn classify(a: ClassifyArgs) -> Result<ExitCode, String> {
    if a.files.is_empty() {
        return Err("no files given".into());
    }
    let manifest = load_manifest(&a.weights)?;
    let device = make_device(&a.device)?;
    let window = parse_window(a.window.as_deref())?;
    let cmap = Colormap::parse(&a.colormap).ok_or_else(|| format!("unknown colour map '{}'", a.colormap))?;
    let forced = match a.model.as_deref() {
        None => None,
        Some("ct") => Some(Modality::Ct),
        Some("cxr") => Some(Modality::Cxr),
        Some(o) => return Err(format!("--model must be ct or cxr (got '{o}')")),
    };
    let mut loaded: Vec<(Modality, Classifier)> = Vec::new();
    let gate = match manifest.model("gate") {
        Ok(_) if forced.is_none() => {
            let c = load_classifier(&a.weights, &manifest, "gate", &device)?;
            Some(ctxr::gate::Gatekeeper::new(c).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let mut warned = std::collections::HashSet::new();
    let many = a.files.len() > 1;
    if let (true, Some(h)) = (many, &a.heatmap) {
        std::fs::create_dir_all(h).map_err(|e| format!("cannot create {}: {e}", h.display()))?;
    }
    let mut failures = 0usize;
    for file in &a.files {
        let result = (|| -> Result<serde_json::Value, String> {
            let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
            let tiff_u16 = if forced == Some(Modality::Cxr) { TiffU16::Raw } else { TiffU16::HuPlus1024 };
            let img = decode(&bytes, &DecodeOptions { tiff_u16, ..DecodeOptions::default() }).map_err(|e| e.to_string())?;
            let mut gate_verdict = None;
            let modality = match (forced, &gate) {
                (Some(m), _) => m,
                (None, Some(g)) => {
                    let v = pollster::block_on(g.judge(&img, false)).map_err(|e| e.to_string())?;
                    if !v.accepted {
                        return Err(format!("refused by the input gate: {}", v.reason));
                    }
                    let m = v.modality.ok_or("the gate gave no modality")?;
                    gate_verdict = Some(v);
                    m
                }
                (None, None) => route(&img)?,
            };
            if !loaded.iter().any(|(m, _)| *m == modality) {
                let c = load_classifier(&a.weights, &manifest, modality.name(), &device)?;
                loaded.push((modality, c));
            }
            let clf = loaded.iter().find(|(m, _)| *m == modality).map(|(_, c)| c).ok_or("model not loaded")?;
            if !clf.entry.is_evaluated() && warned.insert(modality) {
                eprintln!(
                    "\n  !!! WARNING: the '{}' weights in {} carry NO evaluation. They are untrained or unvalidated;\n  !!! the probabilities below mean NOTHING. Do not read them as a result.\n",
                    modality.name(),
                    a.weights.display()
                );
            }
            let p = clf.preprocess(&img, window).map_err(|e| e.to_string())?;
            let pred = pollster::block_on(clf.predict(&p)).map_err(|e| e.to_string())?;
            let mut out = json!({
                "file": file.display().to_string(),
                "model": modality.name(),
                "evaluated": clf.entry.is_evaluated(),
                "classes": pred.classes,
                "probabilities": pred.probabilities,
                "label": pred.label,
                "window": {"center": p.window.center, "width": p.window.width},
                "gate": gate_verdict,
            });
            if let Some(d) = ctxr::analysis::Decision::at_operating_point(&clf.entry, &pred) {
                out["decision"] = json!(d);
            }
            if let Some(h) = &a.heatmap {
                let class = match &a.class {
                    Some(name) => clf.entry.class_index(name).ok_or_else(|| format!("no class '{name}' (classes: {})", clf.entry.classes.join(", ")))?,
                    None => pred.label_index,
                };
                let layer = a.layer.unwrap_or(clf.model().num_stages());
                let cam = pollster::block_on(clf.explain(&p, class, layer)).map_err(|e| e.to_string())?;
                let heat = to_original(&cam.heat, p.size, p.letterbox, img.width, img.height);
                let base = render(&img, resolve_window(&img, &clf.entry.preprocess, window).map_err(|e| e.to_string())?);
                let rgba = overlay(&base, &heat, cmap, a.alpha);
                let target = if many {
                    let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
                    h.join(format!("{stem}.gradcam.png"))
                } else {
                    h.clone()
                };
                image::save_buffer(&target, &rgba, img.width, img.height, image::ExtendedColorType::Rgba8)
                    .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
                out["heatmap"] = json!({
                    "file": target.display().to_string(),
                    "class": clf.entry.classes.get(class),
                    "layer": format!("stage{layer}"),
                    "peak": cam.peak,
                    "colormap": cmap.name(),
                });
            }
            Ok(out)
        })();
        match result {
            Ok(v) => {
                if a.json {
                    println!("{v}");
                } else {
                    print_human(&v);
                }
            }
            Err(e) => {
                failures += 1;
                if a.json {
                    println!("{}", json!({"file": file.display().to_string(), "error": e}));
                } else {
                    println!("{}: ERROR: {e}", file.display());
                }
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_human(v: &serde_json::Value) {
    let empty = vec![];
    let classes = v["classes"].as_array().unwrap_or(&empty);
    let probs = v["probabilities"].as_array().unwrap_or(&empty);
    let parts: Vec<String> = classes
        .iter()
        .zip(probs)
        .map(|(c, p)| format!("{} {:.3}", c.as_str().unwrap_or("?"), p.as_f64().unwrap_or(f64::NAN)))
        .collect();
    let tag = if v["evaluated"].as_bool() == Some(true) { "" } else { "  [UNEVALUATED WEIGHTS: meaningless]" };
    let label = v["decision"]["label"].as_str().or(v["label"].as_str()).unwrap_or("?");
    println!("{}: [{}] {} → {}{}", v["file"].as_str().unwrap_or("?"), v["model"].as_str().unwrap_or("?"), parts.join(", "), label, tag);
    if let Some(h) = v.get("heatmap") {
        println!("    Grad-CAM ({}, {}, {}) → {}", h["class"].as_str().unwrap_or("?"), h["layer"].as_str().unwrap_or("?"), h["colormap"].as_str().unwrap_or("?"), h["file"].as_str().unwrap_or("?"));
    }
}

fn inspect(files: &[PathBuf], as_json: bool, tiff_raw: bool) -> Result<ExitCode, String> {
    let opts = DecodeOptions { tiff_u16: if tiff_raw { TiffU16::Raw } else { TiffU16::HuPlus1024 }, ..DecodeOptions::default() };
    let mut failures = 0;
    for f in files {
        let res = std::fs::read(f).map_err(|e| e.to_string()).and_then(|b| decode(&b, &opts).map_err(|e| e.to_string()));
        match res {
            Ok(img) => {
                let (lo, hi) = img.value_range();
                let v = json!({
                    "file": f.display().to_string(),
                    "format": img.format.name(),
                    "width": img.width, "height": img.height,
                    "bits": img.bits_stored,
                    "float": img.float_samples,
                    "channels": img.source_channels,
                    "hounsfield": img.intensity == Intensity::Hounsfield,
                    "intensity": img.intensity,
                    "photometric": img.photometric,
                    "windows": img.windows,
                    "modality": img.modality,
                    "body_part": img.body_part,
                    "frames": img.frames,
                    "min": lo, "max": hi,
                    "dicom": img.dicom,
                });
                if as_json {
                    println!("{v}");
                } else {
                    let windows: Vec<String> = img.windows.iter().map(|w| format!("C {} / W {}", w.center, w.width)).collect();
                    println!("{}", f.display());
                    println!("  format      {}", img.format.name());
                    println!("  size        {}×{}{}", img.width, img.height, if img.frames > 1 { format!(" × {} frames", img.frames) } else { String::new() });
                    println!("  bit depth   {}{}{}", img.bits_stored, if img.float_samples { " (float)" } else { "" }, if img.source_channels > 1 { format!(", {} channels", img.source_channels) } else { String::new() });
                    println!("  values      {} ({lo} … {hi})", match img.intensity { Intensity::Hounsfield => "Hounsfield units", Intensity::Modality => "modality values (not HU)", Intensity::Raw => "raw intensities" });
                    println!("  photometric {:?}", img.photometric);
                    println!("  window      {}", if windows.is_empty() { "none in file".into() } else { windows.join(", ") });
                    println!("  modality    {}", img.modality.as_deref().unwrap_or("-"));
                    if let Some(d) = &img.dicom {
                        println!("  body part   {}", img.body_part.as_deref().unwrap_or("-"));
                        println!("  syntax      {} ({})", d.transfer_syntax_name, d.transfer_syntax_uid);
                        println!("  stored      {} of {} bits, {}", d.bits_stored, d.bits_allocated, if d.pixel_representation == 1 { "signed" } else { "unsigned" });
                        println!("  rescale     slope {} intercept {}", d.rescale_slope, d.rescale_intercept);
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if as_json {
                    println!("{}", json!({"file": f.display().to_string(), "error": e}));
                } else {
                    println!("{}: ERROR: {e}", f.display());
                }
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn init_weights(out: &Path, input_size: u32, _seed: u64) -> Result<ExitCode, String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let device = ctxr::device::cpu();
    let mut manifest = Manifest::default();
    for (id, modality, classes) in [("ct", Modality::Ct, vec!["noncovid", "covid"]), ("cxr", Modality::Cxr, vec!["normal", "pneumonia", "covid"])] {
        let arch = ModelConfig::new(classes.len());
        let model = arch.init(&device);
        let params = model.num_params();
        let bytes = record_bytes(&model, false).map_err(|e| e.to_string())?;
        let record = format!("{id}.untrained.bpk");
        std::fs::write(out.join(&record), &bytes).map_err(|e| e.to_string())?;
        let mut entry = ModelEntry::new(
            id,
            &format!("UNTRAINED {id} model (random weights, for testing the pipeline only)"),
            Some(modality),
            &classes,
            &record,
            &bytes,
            "f32",
            params,
            arch,
            PreprocessConfig::new(input_size),
        );
        entry.notes = vec!["Random initialisation. Outputs are meaningless.".into()];
        manifest.upsert(entry);
    }
    std::fs::write(out.join("manifest.json"), manifest.to_json()).map_err(|e| e.to_string())?;
    eprintln!("wrote UNTRAINED weights to {} (outputs are meaningless; for pipeline tests only)", out.display());
    Ok(ExitCode::SUCCESS)
}

fn eval(model: &str, weights: &Path, data: &Path, manifest_csv: Option<&Path>, json_out: Option<&Path>) -> Result<ExitCode, String> {
    let manifest = load_manifest(weights)?;
    let device = ctxr::device::cpu();
    let clf = load_classifier(weights, &manifest, model, &device)?;
    if !clf.entry.is_evaluated() {
        eprintln!("note: the manifest carries no evaluation for '{model}' yet");
    }
    let report = match manifest_csv {
        Some(csv) => ctxr::pipeline::evaluate_csv(&clf, csv)?,
        None => ctxr::pipeline::evaluate_default(&clf, data)?,
    };
    let print_set = |name: &str, r: &serde_json::Value| {
        let key = if r.get("auc").is_some() { "auc" } else { "macro_auc" };
        println!("{name}: n {} accuracy {} {key} {} ECE {} (T={})", r["n"], r["accuracy"], r[key], r["ece_calibrated"], r["temperature"]);
        if let Some(pc) = r["per_class"].as_array() {
            for c in pc {
                println!("    {:<10} sens {} spec {} prec {} F1 {} (n {})", c["class"].as_str().unwrap_or("?"), c["sensitivity"], c["specificity"], c["precision"], c["f1"], c["support"]);
            }
        }
        if let Some(ps) = r["per_source"].as_object() {
            for (s, v) in ps {
                println!("    source {s:<16} n {} accuracy {} {key} {}", v["n"], v["accuracy"], v[key]);
            }
        }
        if !r["patient_level"].is_null() {
            println!("    patient level: {}", r["patient_level"]);
        }
    };
    if let Some(sets) = report["sets"].as_object() {
        for (k, v) in sets {
            print_set(k, v);
        }
    } else {
        print_set("manifest", &report);
    }
    if let Some(out) = json_out {
        std::fs::write(out, serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
