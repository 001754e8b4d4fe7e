//! Audit: three checks that a model reads the disease and not the dataset. The shortcut audit
//! says what the model calls images without its positive disease that come from other
//! pipelines (adult normal films, non-COVID Hounsfield slices). The invariance check runs each
//! image twice, as the user's file and as another pipeline would have made it (an X-ray
//! squashed to 224 × 224 and saved as JPEG, as the `*-224` uploaders did; a CT slice exported
//! with another window or grey mapping), and says how often the answer stays. The attention
//! check says how often Grad-CAM's peak on images of the positive class lies on the lungs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ctxr::decode::{Intensity, MedImage, decode};
use ctxr::imaging::crop::lung_mask;
use ctxr::imaging::{PreprocessConfig, Preprocessed, Tone, WindowChoice, preprocess, resize};
use ctxr::infer::Classifier;
use ctxr::model::Modality;
use ctxr::model::report::{AttentionCheck, Audit, InvarianceCheck, ShortcutCheck};

use crate::LabError;
use crate::data::Sample;

/// The uploaders' square and JPEG quality the X-ray invariance check reproduces.
const SQUASH_SIDE: u32 = 224;
const JPEG_QUALITY: u8 = 90;
/// The other CT export: a lung window a viewer might use instead of W 1500 / L −600.
const OTHER_WINDOW: (f32, f32) = (-500.0, 1200.0);

/// Real non-COVID chest CT files among the decoder samples (folders of
/// `ct/decoder-samples`): NEMA's CT1_UNC in four transfer syntaxes, its 128² copy, and TCGA
/// lung-cancer slices as DICOM and as HU TIFFs.
const CT_DECODER_SAMPLE_DIRS: [&str; 3] = ["dicom-chest-ct", "tiff-float64-ct", "tiff-uint16-ct"];

/// One image to audit: where it is from and its bytes' path.
struct Item {
    set: String,
    /// The label of the manifest row (`None` for files outside the manifests).
    label: Option<String>,
    path: PathBuf,
}

/// Calibrated probabilities of each file's bytes (`None` where it fails to decode).
fn probabilities(clf: &Classifier, files: &[Vec<u8>]) -> Vec<Option<Vec<f32>>> {
    let mut out = vec![None; files.len()];
    let idx: Vec<usize> = (0..files.len()).collect();
    for chunk in idx.chunks(32) {
        let prepared: Vec<(usize, Preprocessed)> = chunk.iter().filter_map(|&i| clf.prepare(&files[i], WindowChoice::Auto).ok().map(|(_, p)| (i, p))).collect();
        let refs: Vec<&Preprocessed> = prepared.iter().map(|(_, p)| p).collect();
        if let Ok(preds) = pollster::block_on(clf.predict_batch(&refs)) {
            for ((i, _), p) in prepared.iter().zip(preds) {
                out[*i] = Some(p.probabilities);
            }
        }
    }
    out
}

fn share(counts: &[usize], classes: &[String], n: usize) -> BTreeMap<String, f64> {
    classes.iter().zip(counts).map(|(c, &k)| (c.clone(), round(k as f64 / n.max(1) as f64))).collect()
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The model's negative class: what an image without disease should be called.
fn negative_class(modality: Modality) -> &'static str {
    match modality {
        Modality::Ct => "noncovid",
        Modality::Cxr => "normal",
    }
}

/// Files of the CT decoder samples (sorted, so the audit is reproducible).
fn ct_decoder_samples(data_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in CT_DECODER_SAMPLE_DIRS {
        if let Ok(rd) = std::fs::read_dir(data_dir.join("ct/decoder-samples").join(d)) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "dcm" || x == "tif")));
        }
    }
    files.sort();
    files
}

/// The same image as another pipeline makes it, as file bytes; `None` where the check does
/// not apply (an X-ray already 224 × 224).
fn other_pipeline(img: &MedImage, modality: Modality) -> Option<Vec<u8>> {
    let (w, h) = (img.width, img.height);
    match modality {
        Modality::Cxr => {
            if (w, h) == (SQUASH_SIDE, SQUASH_SIDE) {
                return None;
            }
            let grey = to_8bit(img);
            let small = resize(&grey, w, h, SQUASH_SIDE, SQUASH_SIDE);
            let bytes: Vec<u8> = small.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
            let mut out = Vec::new();
            jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY).encode(&bytes, SQUASH_SIDE as u16, SQUASH_SIDE as u16, jpeg_encoder::ColorType::Luma).ok()?;
            Some(out)
        }
        Modality::Ct => {
            let bytes: Vec<u8> = if img.intensity == Intensity::Hounsfield {
                let (center, width) = OTHER_WINDOW;
                img.pixels.iter().map(|&v| ((v - (center - width / 2.0)) / width * 255.0).round().clamp(0.0, 255.0) as u8).collect()
            } else {
                to_8bit(img).iter().map(|&v| (25.0 + 230.0 * (v / 255.0).powf(0.7)).round().clamp(0.0, 255.0) as u8).collect()
            };
            let mut out = std::io::Cursor::new(Vec::new());
            image::GrayImage::from_raw(w, h, bytes)?.write_to(&mut out, image::ImageFormat::Png).ok()?;
            Some(out.into_inner())
        }
    }
}

/// Grey levels as an 8-bit export would hold them: as they are when they fit in 0..=255,
/// else stretched from the image's range.
fn to_8bit(img: &MedImage) -> Vec<f32> {
    let (lo, hi) = img.pixels.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if lo >= 0.0 && hi <= 255.0 {
        return img.pixels.clone();
    }
    let span = (hi - lo).max(1e-6);
    img.pixels.iter().map(|&v| (v - lo) / span * 255.0).collect()
}

fn describe(modality: Modality) -> String {
    match modality {
        Modality::Cxr => format!(
            "squashed to {SQUASH_SIDE}×{SQUASH_SIDE} and saved as JPEG quality {JPEG_QUALITY} (the *-224 uploaders' pipeline); films already {SQUASH_SIDE}×{SQUASH_SIDE} are left out"
        ),
        Modality::Ct => format!(
            "exported as an 8-bit PNG: Hounsfield slices in window W {} / L {} instead of the model's W 1500 / L −600; 8-bit slices with their black lifted to 25 and a gamma of 0.7",
            OTHER_WINDOW.1, OTHER_WINDOW.0
        ),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Audit `clf` on its held-out fold and external sets (and, for CT, the decoder samples).
pub fn audit(clf: &Classifier, data_dir: &Path, held_out: &[Sample], external: &[Sample]) -> Result<Audit, LabError> {
    let Some(modality) = clf.modality() else { return Err(LabError::Usage("the gate has no audit".into())) };
    let classes = &clf.entry.classes;
    let op = clf.entry.operating_point.as_ref();
    let decide = |p: &[f32]| op.map_or_else(|| ctxr::infer::decision::argmax(p), |op| op.decide(p, classes));
    let mut items: Vec<(Item, bool)> = Vec::new();
    for (rows, tag) in [(held_out, "held-out fold"), (external, "external")] {
        for s in rows {
            let negative = s.label == negative_class(modality);
            items.push((Item { set: format!("{} {} ({tag})", s.source, s.label), label: Some(s.label.clone()), path: s.path.clone() }, negative));
        }
    }
    if modality == Modality::Ct {
        for p in ct_decoder_samples(data_dir) {
            items.push((Item { set: "decoder samples: non-COVID chest CT DICOM and HU TIFF (external)".into(), label: None, path: p }, true));
        }
    }
    let decode_opts = clf.decode_options();
    let mut originals = Vec::new();
    let mut others = Vec::new();
    for (item, _) in &items {
        let bytes = std::fs::read(&item.path).map_err(|e| LabError::io(&item.path, e))?;
        let other = decode(&bytes, &decode_opts).ok().and_then(|img| other_pipeline(&img, modality));
        originals.push(bytes);
        others.push(other);
    }
    let p_orig = probabilities(clf, &originals);
    let with_other: Vec<usize> = (0..items.len()).filter(|&i| others[i].is_some()).collect();
    let other_files: Vec<Vec<u8>> = with_other.iter().filter_map(|&i| others[i].clone()).collect();
    let mut p_other: Vec<Option<Vec<f32>>> = vec![None; items.len()];
    for (&i, p) in with_other.iter().zip(probabilities(clf, &other_files)) {
        p_other[i] = p;
    }
    // Shortcut audit: every set of images without the positive disease.
    let mut by_set: BTreeMap<&str, (usize, Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for ((item, negative), p) in items.iter().zip(&p_orig) {
        let (true, Some(p)) = (*negative, p) else { continue };
        let e = by_set.entry(&item.set).or_insert_with(|| (0, vec![0; classes.len()], vec![0; classes.len()]));
        e.0 += 1;
        e.1[ctxr::infer::decision::argmax(p)] += 1;
        e.2[decide(p)] += 1;
    }
    let shortcuts = by_set
        .into_iter()
        .map(|(set, (n, am, op))| ShortcutCheck { set: set.to_string(), n, by_argmax: share(&am, classes, n), at_operating_point: share(&op, classes, n) })
        .collect();
    // Invariance: per source set and over all.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (item, _)) in items.iter().enumerate() {
        if p_orig[i].is_some() && p_other[i].is_some() {
            let source = item.set.split(' ').next().unwrap_or_default().to_string();
            let key = if item.set.starts_with("decoder samples") { "decoder samples".to_string() } else { source };
            groups.entry("all".into()).or_default().push(i);
            groups.entry(key).or_default().push(i);
        }
    }
    let invariance = groups
        .into_iter()
        .map(|(set, idx)| {
            let (mut same_argmax, mut same_decision, mut deltas) = (0, 0, Vec::new());
            for &i in &idx {
                let (Some(a), Some(b)) = (&p_orig[i], &p_other[i]) else { continue };
                same_argmax += usize::from(ctxr::infer::decision::argmax(a) == ctxr::infer::decision::argmax(b));
                same_decision += usize::from(decide(a) == decide(b));
                deltas.push(a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max));
            }
            deltas.sort_by(f64::total_cmp);
            let n = idx.len();
            InvarianceCheck {
                set,
                transform: describe(modality),
                n,
                argmax_agreement: round(same_argmax as f64 / n.max(1) as f64),
                decision_agreement: round(same_decision as f64 / n.max(1) as f64),
                median_abs_delta_p: round(quantile(&deltas, 0.5)),
                p90_abs_delta_p: round(quantile(&deltas, 0.9)),
            }
        })
        .collect();
    let attention = attention(clf, &items, &originals)?;
    Ok(Audit { shortcuts, invariance, attention })
}

/// For each cell of a `mw × mh` map over a `size × size` input: is at least half of it lung?
fn lung_cells(mask: &[bool], size: usize, mw: usize, mh: usize) -> Vec<bool> {
    let (mw, mh) = (mw.max(1), mh.max(1));
    let mut lung = vec![(0usize, 0usize); mw * mh];
    for (i, &m) in mask.iter().enumerate().take(size * size) {
        let (x, y) = (i % size, i / size);
        if let Some(c) = lung.get_mut((y * mh / size) * mw + x * mw / size) {
            c.0 += usize::from(m);
            c.1 += 1;
        }
    }
    lung.iter().map(|&(l, n)| n > 0 && 2 * l >= n).collect()
}

/// The stage whose Grad-CAM the attention check measures (the deepest, the page's default).
const ATTENTION_LAYER: usize = 4;

/// Grad-CAM of the positive class on every image of that class, per set: is the hottest cell
/// of the map on the lungs? Measured on the map's own cells (4×4 at the deepest stage), not
/// on the upsampled heat, whose maximum for a border cell is a plateau reaching the image's
/// edge. A cell counts as lung when at least half of its pixels are. CT inputs are lung crops
/// (their lungs reach the edges); radiographs show air around the body, so only enclosed
/// dark regions count there.
fn attention(clf: &Classifier, items: &[(Item, bool)], files: &[Vec<u8>]) -> Result<Vec<AttentionCheck>, LabError> {
    let Some(op) = clf.entry.operating_point.as_ref() else { return Ok(Vec::new()) };
    let Some(positive) = clf.entry.class_index(&op.positive_class) else { return Ok(Vec::new()) };
    let enclosed_only = clf.modality() == Some(Modality::Cxr);
    let windowed = PreprocessConfig { tone: Tone::Windowed, ..clf.entry.preprocess.clone() };
    // Per set: maps measured, peaks on lung, sum of lung-cell shares, images without a mask.
    let mut by_set: BTreeMap<&str, (usize, usize, f64, usize)> = BTreeMap::new();
    for ((item, negative), bytes) in items.iter().zip(files) {
        if *negative || item.label.as_deref() != Some(op.positive_class.as_str()) {
            continue;
        }
        let Ok((img, p)) = clf.prepare(bytes, WindowChoice::Auto) else { continue };
        let cam = pollster::block_on(clf.explain(&p, positive, ATTENTION_LAYER))?;
        let e = by_set.entry(&item.set).or_default();
        let size = p.size as usize;
        let mask = preprocess(&img, &windowed, WindowChoice::Auto)
            .ok()
            .and_then(|w| lung_mask(&w.seen.iter().map(|&v| f32::from(v) / 255.0).collect::<Vec<_>>(), size, size, enclosed_only));
        let Some(mask) = mask else {
            e.3 += 1;
            continue;
        };
        let lung = lung_cells(&mask, size, cam.map_width, cam.map_height);
        let peak = ctxr::infer::decision::argmax(&cam.linear);
        e.0 += 1;
        e.1 += usize::from(lung.get(peak).copied().unwrap_or(false));
        e.2 += lung.iter().filter(|&&l| l).count() as f64 / lung.len().max(1) as f64;
    }
    Ok(by_set
        .into_iter()
        .map(|(set, (n, inside, cells, without_mask))| AttentionCheck {
            set: set.to_string(),
            class: op.positive_class.clone(),
            layer: ATTENTION_LAYER,
            n,
            peak_in_lungs: round(inside as f64 / n.max(1) as f64),
            lung_cells: round(cells / n.max(1) as f64),
            without_mask,
        })
        .collect())
}
