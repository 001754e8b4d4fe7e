//! Pipeline (native): run a classifier over labelled files through exactly the path a user's
//! file takes (decode → preprocess → model, all in f32), and build the evaluation reports of
//! `ctxr eval` and of the model card.

use std::path::Path;

use serde_json::{Value, json};

use crate::classifier::Classifier;
use crate::data::{Sample, read_manifest};
use crate::evaluate::{OperatingPoint, Outputs, full_report};
use crate::preprocess::WindowChoice;
use crate::train::{TrainConfig, folds, plan};

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
        let refs: Vec<&crate::preprocess::Preprocessed> = prepared.iter().map(|(_, p)| p).collect();
        if let Ok(preds) = pollster::block_on(clf.predict_batch(&refs)) {
            for ((i, _), p) in prepared.iter().zip(preds) {
                out[*i] = Some(p.logits);
            }
        }
    }
    out
}

/// Full report of `clf` on `samples` (rows whose label the model does not know are skipped).
pub fn evaluate_samples(clf: &Classifier, samples: &[Sample]) -> Value {
    let classes = &clf.entry.classes;
    let known: Vec<Sample> = samples.iter().filter(|s| classes.contains(&s.label)).cloned().collect();
    let skipped_labels = samples.len() - known.len();
    let logits = logits_for(clf, &known);
    let mut l = Vec::new();
    let mut t = Vec::new();
    let mut so = Vec::new();
    let mut pa = Vec::new();
    let mut failed = Vec::new();
    for (s, lg) in known.iter().zip(logits) {
        match lg {
            Some(lg) => {
                l.push(lg);
                t.push(classes.iter().position(|c| *c == s.label).unwrap_or(0));
                so.push(s.source.clone());
                pa.push(s.patient_id.clone());
            }
            None => failed.push(s.rel.clone()),
        }
    }
    let op: Option<OperatingPoint> = clf.entry.operating_point.clone().and_then(|v| serde_json::from_value(v).ok());
    let temp = clf.entry.temperature.unwrap_or(1.0) as f64;
    let mut r = full_report(&Outputs { classes, logits: &l, truth: &t, sources: &so, patients: &pa }, temp, op.as_ref());
    r["skipped_unknown_labels"] = json!(skipped_labels);
    r["failed_to_decode"] = json!(failed);
    r
}

/// The default evaluation of a shipped model: its own held-out fold of the training sources
/// (fold 0 of the patient-grouped split, recomputed from the manifest's seed) and the external
/// sets. The top level repeats the external set's headline numbers.
pub fn evaluate_default(clf: &Classifier, data_dir: &Path) -> Result<Value, String> {
    let id = clf.entry.id.as_str();
    let cfg: TrainConfig = clf
        .entry
        .training
        .as_ref()
        .and_then(|t| t.get("config"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .or_else(|| TrainConfig::for_model(id))
        .ok_or("no training configuration in the manifest")?;
    let p = plan(id, data_dir)?;
    let f = folds(&p.pool, &cfg);
    let held: Vec<Sample> = p.pool.iter().zip(&f).filter(|(_, k)| **k == 0).map(|(s, _)| s.clone()).collect();
    let internal = evaluate_samples(clf, &held);
    let external = evaluate_samples(clf, &p.external);
    let mut top = json!({
        "model": id,
        "set": "external",
        "n": external["n"],
        "accuracy": external["accuracy"],
        "sets": {
            "internal_heldout": internal,
            "external": external,
        }
    });
    for k in ["auc", "macro_auc"] {
        if let Some(v) = top["sets"]["external"].get(k).cloned() {
            top[k] = v;
        }
    }
    Ok(top)
}

/// Evaluate on any CSV with the manifest schema.
pub fn evaluate_csv(clf: &Classifier, csv: &Path) -> Result<Value, String> {
    let samples = read_manifest(csv).map_err(|e| e.to_string())?;
    let mut r = evaluate_samples(clf, &samples);
    r["model"] = json!(clf.entry.id);
    r["manifest"] = json!(csv.display().to_string());
    Ok(r)
}

/// Gate checks: acceptance (and routing) of the external test images of each modality, and
/// refusal of the natural photographs in `odd-inputs` — with the colour rule, and by the
/// network alone on their greyscale version.
pub fn evaluate_gate(gk: &crate::gate::Gatekeeper, external: &[Sample], odd_inputs: &Path) -> Result<Value, String> {
    let mut per: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    for s in external {
        let e = per.entry(format!("{} ({})", s.label, s.source)).or_default();
        e.0 += 1;
        let Ok(bytes) = std::fs::read(&s.path) else { continue };
        let Ok(img) = crate::decode::decode(&bytes, &crate::train::decode_options(if s.label == "cxr" { "cxr" } else { "ct" })) else { continue };
        if let Ok(v) = pollster::block_on(gk.judge(&img, false)) {
            if v.accepted {
                e.1 += 1;
                if v.modality.map(|m| m.name()) == Some(s.label.as_str()) {
                    e.2 += 1;
                }
            }
        }
    }
    let acceptance: Value = per
        .iter()
        .map(|(k, (n, a, r))| (k.clone(), json!({"n": n, "accepted": a, "accepted_rate": *a as f64 / (*n).max(1) as f64, "routed_correctly": r, "routed_rate": *r as f64 / (*n).max(1) as f64})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let mut photos = Vec::new();
    let (mut refused, mut refused_net, mut total) = (0, 0, 0);
    for rel in crate::train::NATURAL_PHOTOS {
        let Ok(bytes) = std::fs::read(odd_inputs.join(rel)) else { continue };
        let Ok(img) = crate::decode::decode(&bytes, &Default::default()) else { continue };
        total += 1;
        let full = pollster::block_on(gk.judge(&img, false)).map_err(|e| e.to_string())?;
        let net = pollster::block_on(gk.judge(&img, true)).map_err(|e| e.to_string())?;
        refused += usize::from(!full.accepted);
        refused_net += usize::from(!net.accepted);
        photos.push(json!({"file": rel, "refused": !full.accepted, "reason": full.reason, "network_only_refused": !net.accepted, "distance": net.distance}));
    }
    Ok(json!({
        "external_acceptance": acceptance,
        "natural_photos": {
            "n": total,
            "refused": refused,
            "refused_rate": refused as f64 / total.max(1) as f64,
            "refused_by_network_alone_greyscale": refused_net,
            "refused_by_network_alone_rate": refused_net as f64 / total.max(1) as f64,
            "files": photos,
        },
        "limit": gk.params.threshold,
    }))
}
