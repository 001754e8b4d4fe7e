//! Evaluate: run a classifier over labelled files through exactly the path a user's file takes
//! (decode → preprocess → model, all in f32) and build the evaluation of `ctxr eval`, of the
//! manifest and of the model card; and check the input gate on external images and photos.

pub mod audit;
pub mod report;

use std::collections::BTreeMap;
use std::path::Path;

use ctxr::imaging::{Preprocessed, WindowChoice};
use ctxr::infer::{Classifier, Gatekeeper};
use ctxr::model::report::{
    Acceptance, AskRow, AskRule, AskTable, EvaluationSets, GateEvaluation, HeadlineSet, ModelEvaluation, PhotoCheck, PhotoRefusals, Report,
};
use ctxr::model::{ModelId, decode_options};
use ctxr::train::assess::Measurement;
use ctxr::train::labelled::{Intake, Labelled, LabelledSet, Why};
use ctxr::train::report::{Outputs, full_report, subtype_aucs};
use serde::Serialize;

use crate::LabError;
use crate::data::{Sample, read_manifest};
use crate::recipe::{NATURAL_PHOTOS, folds, plan, recipe};

/// Logits for each sample (None where the file fails to decode), batches of 32.
pub fn logits_for(clf: &Classifier, samples: &[Sample]) -> Vec<Option<Vec<f32>>> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; samples.len()];
    let idx: Vec<usize> = (0..samples.len()).collect();
    for chunk in idx.chunks(32) {
        let mut prepared = Vec::new();
        for &i in chunk {
            let r = std::fs::read(&samples[i].path).ok().and_then(|b| clf.prepare(&b, WindowChoice::Auto).ok());
            if let Some((_, p)) = r {
                prepared.push((i, p));
            }
        }
        let refs: Vec<&Preprocessed> = prepared.iter().map(|(_, p)| p).collect();
        if let Ok(preds) = pollster::block_on(clf.predict_batch(&refs)) {
            for ((i, _), p) in prepared.iter().zip(preds) {
                out[*i] = Some(p.logits);
            }
        }
    }
    out
}

/// Full report of `clf` on `samples` (rows whose label the model does not know are skipped).
pub fn evaluate_samples(clf: &Classifier, samples: &[Sample]) -> Report {
    let classes = &clf.entry.classes;
    let known: Vec<Sample> = samples.iter().filter(|s| classes.contains(&s.label)).cloned().collect();
    let skipped_labels = samples.len() - known.len();
    let logits = logits_for(clf, &known);
    let mut l = Vec::new();
    let mut t = Vec::new();
    let mut so = Vec::new();
    let mut pa = Vec::new();
    let mut st = Vec::new();
    let mut failed = Vec::new();
    for (s, lg) in known.iter().zip(logits) {
        match lg {
            Some(lg) => {
                l.push(lg);
                t.push(classes.iter().position(|c| *c == s.label).unwrap_or(0));
                so.push(s.source.clone());
                pa.push(s.patient_id.clone());
                st.push(s.subtype.clone());
            }
            None => failed.push(s.rel.clone()),
        }
    }
    let temp = f64::from(clf.entry.temperature());
    let outputs = Outputs { classes, logits: &l, truth: &t, sources: &so, patients: &pa };
    let mut r = full_report(&outputs, temp, clf.entry.operating_point.as_ref());
    r.per_subtype = subtype_aucs(&outputs, &st);
    r.skipped_unknown_labels = Some(skipped_labels);
    r.failed_to_decode = Some(failed);
    r
}

/// The default evaluation of a shipped model: its own held-out fold of the training sources
/// (fold 0 of the patient-grouped split, recomputed from the manifest's recipe), the external
/// sets, and the shortcut audit and invariance check on both. The top level repeats the
/// external set's headline numbers.
pub fn evaluate_default(clf: &Classifier, data_dir: &Path) -> Result<ModelEvaluation, LabError> {
    let id = clf.entry.id;
    let cfg = clf.entry.training.as_ref().map(|t| t.config.clone()).unwrap_or_else(|| recipe(id));
    let p = plan(id, cfg.data, data_dir)?;
    let f = folds(&p.pool, &cfg);
    let held: Vec<Sample> = p.pool.iter().zip(&f).filter(|(_, k)| **k == 0).map(|(s, _)| s.clone()).collect();
    let internal = evaluate_samples(clf, &held);
    let external = evaluate_samples(clf, &p.external);
    let audit = audit::audit(clf, data_dir, &held, &p.external)?;
    Ok(ModelEvaluation {
        model: id,
        set: HeadlineSet::External,
        n: external.n,
        accuracy: external.accuracy,
        auc: external.auc,
        macro_auc: external.macro_auc,
        sets: Some(EvaluationSets { internal_heldout: internal, external }),
        audit: Some(audit),
    })
}

/// `ctxr eval --manifest`: a report on any CSV with the manifest schema.
#[derive(Debug, Serialize)]
pub struct CsvEvaluation {
    pub model: ModelId,
    pub manifest: String,
    #[serde(flatten)]
    pub report: Report,
}

/// Evaluate on any CSV with the manifest schema.
pub fn evaluate_csv(clf: &Classifier, csv: &Path) -> Result<CsvEvaluation, LabError> {
    let samples = read_manifest(csv)?;
    Ok(CsvEvaluation { model: clf.entry.id, manifest: csv.display().to_string(), report: evaluate_samples(clf, &samples) })
}

/// `ctxr eval --labelled`: a model on a user's own labelled images — the page's measurement
/// (the same type, so the JSON is the page's) plus the set's path.
#[derive(Debug, Serialize)]
pub struct LabelledEvaluation {
    pub labelled: String,
    #[serde(flatten)]
    pub measurement: Measurement,
}

/// Read a labelled set: a folder whose subfolders are class names, or a CSV `file,label[,group]`.
pub fn read_labelled(path: &Path, classes: &[String]) -> Result<LabelledSet, LabError> {
    if path.is_dir() {
        let mut files = Vec::new();
        crate::data::files_under(path, &mut files)?;
        // Hidden files (.DS_Store, Thumbs.db's kin) are no one's labelled images.
        let rel: Vec<String> = files
            .iter()
            .filter(|f| !f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .filter_map(|f| f.strip_prefix(path).ok().map(|r| r.to_string_lossy().into_owned()))
            .collect();
        let mut set = LabelledSet::from_folder(rel.iter().map(String::as_str), classes);
        for item in &mut set.items {
            item.path = path.join(&item.path).to_string_lossy().into_owned();
        }
        Ok(set)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| LabError::io(path, e))?;
        let dir = path.parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(LabelledSet::from_csv(&text, &dir, classes, |p| Path::new(p).is_file())?)
    }
}

/// Read every file of `set` as the page does — copies, unreadable files and what the gate
/// refuses are set aside — handing each usable input to `keep`, in the order of the items
/// that remain in `set`.
pub fn take_in(
    clf: &Classifier,
    gate: Option<&Gatekeeper>,
    set: &mut LabelledSet,
    mut keep: impl FnMut(&Labelled, Preprocessed) -> Result<(), LabError>,
) -> Result<(), LabError> {
    let mut intake = Intake::new();
    let mut refused = Vec::new();
    for item in &set.items {
        let read = std::fs::read(&item.path).map_err(|e| Why::Unreadable { detail: e.to_string() });
        match read.and_then(|bytes| pollster::block_on(intake.add(clf, gate, &item.path, &bytes))) {
            Ok(input) => keep(item, input)?,
            Err(why) => refused.push((item.path.clone(), why)),
        }
    }
    for (p, why) in refused {
        set.set_aside_item(&p, why);
    }
    Ok(())
}

/// Assess `clf` on the labelled set at `path`, reading each file as the page does (the gate
/// sets aside what it refuses).
pub fn evaluate_labelled(clf: &Classifier, gate: Option<&Gatekeeper>, path: &Path) -> Result<LabelledEvaluation, LabError> {
    let mut set = read_labelled(path, &clf.entry.classes)?;
    let mut inputs = Vec::new();
    take_in(clf, gate, &mut set, |_, p| {
        inputs.push(p);
        Ok(())
    })?;
    set.check(None)?;
    let mut logits = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(32) {
        let refs: Vec<&Preprocessed> = chunk.iter().collect();
        logits.extend(pollster::block_on(clf.predict_batch(&refs))?.into_iter().map(|p| p.logits));
    }
    let image_bytes = inputs.iter().map(|p| p.seen.len()).sum();
    Ok(LabelledEvaluation { labelled: path.display().to_string(), measurement: Measurement::new(&clf.entry, &set, &logits, image_bytes) })
}

/// The gate's default evaluation: acceptance per source on the external sets and on fold 0 of
/// the training pools (which the gate never trained on), the confidence bar below which it
/// asks (chosen on that fold), and refusal of natural photographs. With `adopt_ask` the
/// acceptance is counted with the newly chosen bar (what `--store` then ships), otherwise with
/// the stored one.
pub fn evaluate_gate_default(gk: &Gatekeeper, data_dir: &Path, adopt_ask: bool) -> Result<GateEvaluation, LabError> {
    let cfg = gk.classifier.entry.training.as_ref().map(|t| t.config.clone()).unwrap_or_else(|| recipe(ModelId::Gate));
    let p = plan(ModelId::Gate, cfg.data, data_dir)?;
    let f = folds(&p.pool, &cfg);
    let held: Vec<Sample> = p.pool.iter().zip(&f).filter(|(_, k)| **k == 0).map(|(s, _)| s.clone()).collect();
    evaluate_gate(gk, &[("external", &p.external), (ASK_CHOSEN_ON, &held)], &data_dir.join("odd-inputs"), adopt_ask)
}

/// The set the gate's confidence bar is chosen on.
const ASK_CHOSEN_ON: &str = "held-out fold";
/// The most chest images routed correctly that the chosen bar may ask about.
const ASK_AT_MOST: f64 = 0.01;

/// The candidate bars on one set's `(routed correctly, confidence)` pairs.
fn ask_table(seen: &[(bool, f32)]) -> AskTable {
    let correct = seen.iter().filter(|(ok, _)| *ok).count();
    let wrong = seen.len() - correct;
    let rows = (8..=19)
        .map(|i| {
            let below = i as f32 * 0.05;
            let asked = |want: bool| seen.iter().filter(|(ok, c)| *ok == want && *c < below).count() as f64;
            AskRow {
                below: (f64::from(below) * 100.0).round() / 100.0,
                correct_asked: asked(true) / correct.max(1) as f64,
                misrouted_asked: asked(false) / wrong.max(1) as f64,
            }
        })
        .collect();
    AskTable { routed_correctly: correct, misrouted: wrong, rows }
}

/// Gate checks: acceptance (and routing) of chest images of each modality, per source and
/// set (keyed "modality (source, set)"), the confidence bar for asking, and refusal of the
/// natural photographs in `odd-inputs` — with the colour rule, and by the network alone on
/// their greyscale version.
pub fn evaluate_gate(gk: &Gatekeeper, sets: &[(&str, &[Sample])], odd_inputs: &Path, adopt_ask: bool) -> Result<GateEvaluation, LabError> {
    // Per image the network would accept (accepted or asked about): its key, whether it goes
    // to the right model, and the network's confidence.
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    let mut plausible: Vec<(String, &str, bool, f32)> = Vec::new();
    for (tag, s) in sets.iter().flat_map(|(tag, rows)| rows.iter().map(move |s| (*tag, s))) {
        let key = format!("{} ({}, {tag})", s.label, s.source);
        *per.entry(key.clone()).or_default() += 1;
        // The gate plan labels each image with its modality's name.
        let modality = ModelId::ALL.into_iter().filter_map(ModelId::modality).find(|m| m.name() == s.label);
        let Ok(bytes) = std::fs::read(&s.path) else { continue };
        let Ok(img) = ctxr::decode::decode(&bytes, &decode_options(modality)) else { continue };
        if let Ok(v) = pollster::block_on(gk.judge(&img, false))
            && (v.accepted || v.unsure)
        {
            // Routed by the file's own metadata: certain, never asked about.
            let confidence = v.probabilities.as_ref().map_or(1.0, |p| p.iter().take(2).copied().fold(0.0, f32::max));
            plausible.push((key, tag, v.modality.is_some() && v.modality == modality, confidence));
        }
    }
    let tables: BTreeMap<String, AskTable> =
        sets.iter().map(|(tag, _)| (tag.to_string(), ask_table(&plausible.iter().filter(|p| p.1 == *tag).map(|p| (p.2, p.3)).collect::<Vec<_>>()))).collect();
    let chosen =
        tables.get(ASK_CHOSEN_ON).and_then(|t| t.rows.iter().filter(|r| r.correct_asked <= ASK_AT_MOST).map(|r| r.below).reduce(f64::max)).unwrap_or(0.0);
    let ask = AskRule {
        ask_below: chosen,
        rule: format!(
            "the highest bar (0.40 to 0.95 in steps of 0.05) that asks about at most {:.0} % of the {ASK_CHOSEN_ON}'s chest images the network routes correctly",
            100.0 * ASK_AT_MOST
        ),
        sets: tables,
    };
    let bar = if adopt_ask { chosen as f32 } else { gk.params.ask_below };
    let mut counts: BTreeMap<String, (usize, usize, usize, usize)> = per.into_iter().map(|(k, n)| (k, (n, 0, 0, 0))).collect();
    for (key, _, right, confidence) in &plausible {
        if let Some(e) = counts.get_mut(key) {
            if *confidence >= bar {
                e.1 += 1;
                e.2 += usize::from(*right);
            } else {
                e.3 += 1;
            }
        }
    }
    let rate = |a: usize, n: usize| a as f64 / n.max(1) as f64;
    let acceptance = counts
        .into_iter()
        .map(|(k, (n, a, r, q))| (k, Acceptance { n, accepted: a, accepted_rate: rate(a, n), routed_correctly: r, routed_rate: rate(r, n), asked: q }))
        .collect();
    let mut files = Vec::new();
    let (mut refused, mut refused_net, mut total) = (0, 0, 0);
    for rel in NATURAL_PHOTOS {
        let Ok(bytes) = std::fs::read(odd_inputs.join(rel)) else { continue };
        let Ok(img) = ctxr::decode::decode(&bytes, &Default::default()) else { continue };
        total += 1;
        let full = pollster::block_on(gk.judge(&img, false))?;
        let net = pollster::block_on(gk.judge(&img, true))?;
        refused += usize::from(!full.accepted);
        refused_net += usize::from(!net.accepted);
        files.push(PhotoCheck {
            file: rel.into(),
            refused: !full.accepted,
            reason: full.reason,
            network_only_refused: !net.accepted,
            distance: net.distance.map(f64::from),
        });
    }
    Ok(GateEvaluation {
        acceptance,
        natural_photos: PhotoRefusals {
            n: total,
            refused,
            refused_rate: rate(refused, total),
            refused_by_network_alone_greyscale: refused_net,
            refused_by_network_alone_rate: rate(refused_net, total),
            files,
        },
        limit: f64::from(gk.params.threshold),
        ask: Some(ask),
    })
}
