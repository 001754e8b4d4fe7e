//! `ctxr classify`: files → decode → route (forced, gate, or the file's own metadata) →
//! preprocess → model → decision, optionally a Grad-CAM overlay PNG; one line or one JSON
//! object per file. A volume file (NIfTI) or a folder of DICOM slices is a CT study: each
//! series is stacked, its lung-level slices are classified and pooled into a study score,
//! printed with the per-slice table.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::decode::series::{SeriesBuilder, SeriesFacts};
use ctxr::decode::{Limits, MedImage, Placement, Volume, Window, decode, decode_volume, is_volume};
use ctxr::explain::{Colormap, overlay, to_original};
use ctxr::imaging::{WindowChoice, WindowPreset, render, resolve_window};
use ctxr::infer::route::without_network;
use ctxr::infer::study::{OpenStudy, StudyScore, batch_for, score_study};
use ctxr::infer::{Classifier, Decision, Gatekeeper, Verdict};
use ctxr::model::{BackendKind, Modality, ModelId, decode_options};
use ctxr_lab::LabError;
use serde::Serialize;

use crate::setup::{load_classifier, load_manifest, make_device};
use crate::{DeviceArg, parse_modality};

#[derive(clap::Args)]
pub struct Args {
    files: Vec<PathBuf>,
    /// Which model: ct or cxr. Default: the input gate, else the DICOM Modality or Hounsfield units.
    #[arg(long, value_parser = parse_modality)]
    model: Option<Modality>,
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
    #[arg(long, value_parser = parse_window, default_value = "auto")]
    window: WindowChoice,
    /// Colour map: viridis (default), cividis, turbo, jet.
    #[arg(long, value_parser = parse_colormap, default_value = "viridis")]
    colormap: Colormap,
    /// Heatmap opacity, 0..1.
    #[arg(long, default_value_t = 0.45)]
    alpha: f32,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Print one JSON object per file.
    #[arg(long)]
    json: bool,
}

fn parse_colormap(s: &str) -> Result<Colormap, String> {
    Colormap::parse(s).ok_or_else(|| format!("unknown colour map '{s}' (viridis, cividis, turbo, jet)"))
}

pub fn parse_window(s: &str) -> Result<WindowChoice, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(WindowChoice::Auto);
    }
    if s.eq_ignore_ascii_case("file") {
        return Ok(WindowChoice::FromFile);
    }
    if let Some(p) = WindowPreset::parse(s) {
        let w = p.window();
        return Ok(WindowChoice::Custom { center: w.center, width: w.width });
    }
    if let Some((c, w)) = s.split_once(',') {
        let c: f32 = c.trim().parse().map_err(|_| format!("bad window centre '{c}'"))?;
        let w: f32 = w.trim().parse().map_err(|_| format!("bad window width '{w}'"))?;
        if w > 0.0 {
            return Ok(WindowChoice::Custom { center: c, width: w });
        }
    }
    Err(format!("--window must be lung, mediastinum, bone, file or CENTER,WIDTH (got '{s}')"))
}

/// A Grad-CAM overlay written for one file.
#[derive(Serialize)]
struct HeatmapOut {
    file: String,
    class: Option<String>,
    layer: String,
    peak: f32,
    colormap: Colormap,
}

/// The result for one file.
#[derive(Serialize)]
struct Classified {
    file: String,
    model: Modality,
    evaluated: bool,
    classes: Vec<String>,
    probabilities: Vec<f32>,
    label: String,
    window: Window,
    gate: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap: Option<HeatmapOut>,
}

/// The result for one volume file: the volume's geometry and its study score.
#[derive(Serialize)]
struct StudyOut {
    file: String,
    kind: &'static str,
    model: Modality,
    evaluated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<SeriesFacts>,
    volume: Volume,
    #[serde(flatten)]
    score: StudyScore,
}

/// A file of a folder that is in no series.
#[derive(Serialize)]
struct SetAsideOut<'a> {
    file: &'a str,
    set_aside: &'a str,
}

#[derive(Serialize)]
struct Failed<'a> {
    file: String,
    error: &'a str,
}

/// Which model reads `img`: forced, else the gate, else the file's own metadata.
fn route(img: &MedImage, forced: Option<Modality>, gate: Option<&Gatekeeper>) -> Result<(Modality, Option<Verdict>), LabError> {
    if let Some(m) = forced {
        return Ok((m, None));
    }
    let v = match gate {
        Some(g) => pollster::block_on(g.judge(img, false))?,
        None => without_network(img).ok_or(LabError::Undecided)?,
    };
    match v.modality {
        Some(m) if v.accepted => Ok((m, gate.map(|_| v))),
        _ => Err(LabError::Refused(v.reason)),
    }
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    if a.files.is_empty() {
        return Err(LabError::Usage("no files given".into()));
    }
    let manifest = load_manifest(&a.weights)?;
    let device = make_device(a.device)?;
    let gate = match manifest.model(ModelId::Gate) {
        Ok(_) if a.model.is_none() => Some(Gatekeeper::new(load_classifier(&a.weights, &manifest, ModelId::Gate, &device)?)?),
        _ => None,
    };
    let mut loaded: Vec<Classifier> = Vec::new();
    let mut warned = HashSet::new();
    let many = a.files.len() > 1;
    if let (true, Some(h)) = (many, &a.heatmap) {
        std::fs::create_dir_all(h).map_err(|e| LabError::io(h, e))?;
    }
    let mut failures = 0usize;
    for file in &a.files {
        if file.is_dir() {
            match folder(&a, file, &manifest, &device, &mut loaded) {
                Ok(n) => failures += n,
                Err(e) => {
                    failures += 1;
                    report_failure(file, &e.to_string(), a.json)?;
                }
            }
            continue;
        }
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                failures += 1;
                report_failure(file, &LabError::io(file, e).to_string(), a.json)?;
                continue;
            }
        };
        if is_volume(&bytes) {
            match study(&a, &bytes, file, &manifest, &device, &mut loaded) {
                Ok(s) if a.json => println!("{}", serde_json::to_string(&s)?),
                Ok(s) => print_study(&s),
                Err(e) => {
                    failures += 1;
                    report_failure(file, &e.to_string(), a.json)?;
                }
            }
            continue;
        }
        let result = (|| -> Result<Classified, LabError> {
            let img = decode(&bytes, &decode_options(a.model))?;
            let (modality, gate_verdict) = route(&img, a.model, gate.as_ref())?;
            let clf = classifier(&a, &manifest, &device, &mut loaded, modality)?;
            if !clf.entry.is_evaluated() && warned.insert(modality) {
                eprintln!(
                    "\n  !!! WARNING: the '{}' weights in {} carry NO evaluation. They are untrained or unvalidated;\n  !!! the probabilities below mean NOTHING. Do not read them as a result.\n",
                    modality.name(),
                    a.weights.display()
                );
            }
            let p = clf.preprocess(&img, a.window)?;
            let pred = pollster::block_on(clf.predict(&p))?;
            let heatmap = match &a.heatmap {
                None => None,
                Some(h) => {
                    let class = match &a.class {
                        Some(name) => {
                            clf.entry.class_index(name).ok_or_else(|| LabError::NoSuchClass { name: name.clone(), classes: clf.entry.classes.clone() })?
                        }
                        None => pred.label_index,
                    };
                    let layer = a.layer.unwrap_or(clf.num_stages());
                    let cam = pollster::block_on(clf.explain(&p, class, layer))?;
                    let heat = to_original(&cam.heat, p.size, p.letterbox, img.width, img.height);
                    let base = render(&img, resolve_window(&img, &clf.entry.preprocess, a.window).map_err(ctxr::infer::ClassifyError::from)?);
                    let rgba = overlay(&base, &heat, a.colormap, a.alpha);
                    let target = if many {
                        let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
                        h.join(format!("{stem}.gradcam.png"))
                    } else {
                        h.clone()
                    };
                    image::save_buffer(&target, &rgba, img.width, img.height, image::ExtendedColorType::Rgba8)
                        .map_err(|source| LabError::Image { path: target.clone(), source })?;
                    Some(HeatmapOut {
                        file: target.display().to_string(),
                        class: clf.entry.classes.get(class).cloned(),
                        layer: format!("stage{layer}"),
                        peak: cam.peak,
                        colormap: a.colormap,
                    })
                }
            };
            Ok(Classified {
                file: file.display().to_string(),
                model: modality,
                evaluated: clf.entry.is_evaluated(),
                decision: Decision::at_operating_point(&clf.entry, &pred.probabilities),
                classes: pred.classes,
                probabilities: pred.probabilities,
                label: pred.label,
                window: p.window,
                gate: gate_verdict,
                heatmap,
            })
        })();
        match result {
            Ok(v) if a.json => println!("{}", serde_json::to_string(&v)?),
            Ok(v) => print_human(&v),
            Err(e) => {
                failures += 1;
                report_failure(file, &e.to_string(), a.json)?;
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn report_failure(file: &std::path::Path, error: &str, json: bool) -> Result<(), LabError> {
    if json {
        println!("{}", serde_json::to_string(&Failed { file: file.display().to_string(), error })?);
    } else {
        println!("{}: ERROR: {error}", file.display());
    }
    Ok(())
}

/// Score a volume file as a CT study with the CT model (a volume is never an X-ray).
fn study(
    a: &Args,
    bytes: &[u8],
    file: &std::path::Path,
    manifest: &ctxr::model::Manifest,
    device: &burn::tensor::Device,
    loaded: &mut Vec<Classifier>,
) -> Result<StudyOut, LabError> {
    let volume = decode_volume(bytes, &decode_options(Some(Modality::Ct)))?;
    score_volume(a, file.display().to_string(), volume, None, manifest, device, loaded)
}

/// The CT classifier, loaded once.
fn ct_classifier<'a>(
    a: &Args,
    manifest: &ctxr::model::Manifest,
    device: &burn::tensor::Device,
    loaded: &'a mut Vec<Classifier>,
) -> Result<&'a Classifier, LabError> {
    if let Some(m) = a.model.filter(|&m| m != Modality::Ct) {
        return Err(LabError::Usage(format!("a volume or a DICOM folder is read by the CT model, not --model {}", m.name())));
    }
    classifier(a, manifest, device, loaded, Modality::Ct)
}

/// The classifier of `modality`, loaded on first use and kept for the other files.
fn classifier<'a>(
    a: &Args,
    manifest: &ctxr::model::Manifest,
    device: &burn::tensor::Device,
    loaded: &'a mut Vec<Classifier>,
    modality: Modality,
) -> Result<&'a Classifier, LabError> {
    Ok(match loaded.iter().position(|c| c.modality() == Some(modality)) {
        Some(i) => &loaded[i],
        None => {
            loaded.push(load_classifier(&a.weights, manifest, modality.model(), device)?);
            &loaded[loaded.len() - 1]
        }
    })
}

fn score_volume(
    a: &Args,
    name: String,
    volume: Volume,
    series: Option<SeriesFacts>,
    manifest: &ctxr::model::Manifest,
    device: &burn::tensor::Device,
    loaded: &mut Vec<Classifier>,
) -> Result<StudyOut, LabError> {
    let clf = ct_classifier(a, manifest, device, loaded)?;
    if a.heatmap.is_some() {
        eprintln!("note: --heatmap draws single images; {name} is a volume, scored without one");
    }
    let backend = match a.device {
        DeviceArg::Cpu => BackendKind::Cpu,
        DeviceArg::Wgpu => BackendKind::WebGpu,
    };
    let score = pollster::block_on(score_study(clf, &volume, batch_for(backend), |_| {}))?;
    Ok(StudyOut { file: name, kind: "study", model: Modality::Ct, evaluated: clf.entry.is_evaluated(), series, volume, score })
}

/// A folder of DICOM slices: stack its series and score each as a study; files in no series
/// are listed with the reason. Returns the number of series that failed.
fn folder(
    a: &Args,
    dir: &std::path::Path,
    manifest: &ctxr::model::Manifest,
    device: &burn::tensor::Device,
    loaded: &mut Vec<Classifier>,
) -> Result<usize, LabError> {
    let mut files = Vec::new();
    ctxr_lab::data::files_under(dir, &mut files)?;
    let opts = decode_options(Some(Modality::Ct));
    let mut builder = SeriesBuilder::new(Limits::default().max_voxels);
    for f in &files {
        let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
        match std::fs::read(f) {
            Ok(bytes) => {
                builder.add_file(&name, &bytes, &opts);
            }
            Err(e) => builder.set_aside(name, LabError::io(f, e).to_string()),
        }
    }
    let set = builder.finish();
    for s in &set.set_aside {
        if a.json {
            println!("{}", serde_json::to_string(&SetAsideOut { file: &s.file, set_aside: &s.reason })?);
        } else {
            println!("{}/{}: set aside: {}", dir.display(), s.file, s.reason);
        }
    }
    if set.series.is_empty() {
        return Err(LabError::Usage(format!("{}: no DICOM series to stack ({} files set aside)", dir.display(), set.set_aside.len())));
    }
    let mut failures = 0;
    let many = set.series.len() > 1;
    for s in set.series {
        let OpenStudy { name, series, volume, .. } = OpenStudy::from_series(&dir.display().to_string(), s, many);
        match score_volume(a, name.clone(), volume, series, manifest, device, loaded) {
            Ok(st) if a.json => println!("{}", serde_json::to_string(&st)?),
            Ok(st) => print_study(&st),
            Err(e) => {
                failures += 1;
                report_failure(std::path::Path::new(&name), &e.to_string(), a.json)?;
            }
        }
    }
    Ok(failures)
}

fn print_study(s: &StudyOut) {
    let v = &s.volume;
    let tag = if s.evaluated { "" } else { "  [UNEVALUATED WEIGHTS: meaningless]" };
    let f = |p: Option<f32>| p.map(|p| format!("{p:.3}")).unwrap_or_else(|| "—".into());
    let placement = match v.placement {
        Placement::Oriented => "shown in radiological axial order",
        Placement::StoredOrder => "NO ORIENTATION in the file: shown in stored order, may be mirrored",
    };
    println!(
        "{}: [ct study] {}×{}×{} voxels of {:.2}×{:.2}×{:.2} mm ({}; {placement}){tag}",
        s.file, v.columns, v.rows, v.slices, v.spacing_mm[0], v.spacing_mm[1], v.spacing_mm[2], v.source
    );
    if let Some(info) = &s.series {
        println!(
            "    series {} {}: {} files{}",
            info.series_number.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            info.description.as_deref().unwrap_or(""),
            info.files,
            info.slice_thickness_mm.map(|t| format!(", {t} mm thick")).unwrap_or_default()
        );
        for p in &info.problems {
            println!("    WARNING: {}", serde_json::to_string(p).unwrap_or_default());
        }
    }
    match s.score.lung_range {
        Some([a, b]) => println!(
            "    lung-level slices {a}–{b} ({} classified); study score (max over slices) {}, mean of the top {} {}",
            s.score.classified,
            f(s.score.max_slice),
            s.score.k,
            f(s.score.top_k_mean)
        ),
        None => println!("    no lung-level slice found: the study is not scored"),
    }
    println!("    slice   z mm   lung %  P(covid)");
    for r in &s.score.slices {
        println!("    {:>5} {:>7.1} {:>7.1}  {}", r.index, r.z_mm, 100.0 * r.lung_fraction, f(r.p_covid));
    }
}

fn print_human(v: &Classified) {
    let parts: Vec<String> = v.classes.iter().zip(&v.probabilities).map(|(c, p)| format!("{c} {p:.3}")).collect();
    let tag = if v.evaluated { "" } else { "  [UNEVALUATED WEIGHTS: meaningless]" };
    let label = v.decision.as_ref().map(|d| d.label.as_str()).unwrap_or(&v.label);
    println!("{}: [{}] {} → {label}{tag}", v.file, v.model.name(), parts.join(", "));
    if let Some(h) = &v.heatmap {
        println!("    Grad-CAM ({}, {}, {}) → {}", h.class.as_deref().unwrap_or("?"), h.layer, h.colormap.name(), h.file);
    }
}
