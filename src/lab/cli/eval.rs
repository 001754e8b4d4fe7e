//! `ctxr eval`: evaluate committed weights through the full decode → preprocess → model path,
//! on the model's default sets (its held-out fold and external sets), on any CSV with the
//! manifest schema, or on a user's own labelled images (`--labelled`, what the page's
//! evaluation does); prints a summary and writes the typed report as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::infer::Gatekeeper;
use ctxr::model::report::Evaluation;
use ctxr::model::report::Report;
use ctxr::model::{Manifest, ModelId};
use ctxr_lab::LabError;
use ctxr_lab::eval::{LabelledEvaluation, evaluate_csv, evaluate_default, evaluate_gate_default, evaluate_labelled};
use ctxr_lab::train::write;
use ctxr_lab::weights::write_manifest;

use crate::parse_model;
use crate::setup::{load_classifier, load_manifest};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_model)]
    model: ModelId,
    #[arg(long, default_value = "weights")]
    weights: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Your own labelled images: a folder whose subfolders are class names (a folder inside a
    /// class folder is taken as the patient), or a CSV with the header `file,label[,group]`
    /// (paths absolute or relative to the CSV's folder; group = patient id).
    #[arg(long, conflicts_with_all = ["manifest", "store"])]
    labelled: Option<PathBuf>,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Store the default evaluation in the manifest entry of these weights (the record is
    /// unchanged; what the manifest says it measured is replaced by what was measured now).
    #[arg(long, conflicts_with = "manifest")]
    store: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "null".into())
}

fn print_set(name: &str, r: &Report) {
    let key = if r.is_binary() { "auc" } else { "macro_auc" };
    println!("{name}: n {} accuracy {} {key} {} ECE {} (T={})", r.n, opt(r.accuracy), opt(r.headline_auc()), opt(r.ece_calibrated), opt(r.temperature));
    for c in &r.per_class {
        let support = c.support.map(|s| s.to_string()).unwrap_or_else(|| "null".into());
        println!("    {:<10} sens {} spec {} prec {} F1 {} (n {support})", c.class, opt(c.sensitivity), opt(c.specificity), opt(c.precision), opt(c.f1));
    }
    for (s, v) in r.per_source.iter().flatten() {
        println!("    source {s:<16} n {} accuracy {} {key} {}", v.n, opt(v.accuracy), opt(v.headline_auc()));
    }
    if let Some(p) = &r.patient_level {
        println!("    patient level: {}", serde_json::to_string(p).unwrap_or_default());
    }
}

fn print_labelled(e: &LabelledEvaluation) {
    let r = &e.measurement;
    let a = &r.assessment;
    let counts: Vec<String> = a.report.classes.iter().zip(&r.counts).map(|(c, n)| format!("{n} {c}")).collect();
    println!("{} on {}: {} usable images ({}), {} set aside", r.model, e.labelled, a.report.n, counts.join(", "), r.set_aside.len());
    print_set("labelled", &a.report);
    match &a.auc_ci {
        Some(ci) => println!(
            "    AUC {:.0} % interval {:.3}–{:.3} ({} bootstrap resamples of {})",
            ci.level * 100.0,
            ci.lo,
            ci.hi,
            ci.resamples,
            if r.grouped { "patients" } else { "images: no patient ids, so slices of one patient may count as independent" }
        ),
        None => println!("    no AUC interval: too few images of a class"),
    }
    if let Some(op) = &a.report.at_operating_point {
        println!("    at the stored operating point (P({}) ≥ {:.3}): confusion {:?} (rows: truth)", op.positive_class, op.threshold, op.confusion);
    }
    for b in a.reliability.iter().filter(|b| b.n > 0) {
        println!("    reliability {:.1}–{:.1}: n {:>4}  confidence {}  accuracy {}", b.lo, b.hi, b.n, opt(b.confidence), opt(b.accuracy));
    }
    println!("    worst classified (lowest P of the true class):");
    for m in a.worst.iter().take(10) {
        let name = |i: usize| a.report.classes.get(i).map(String::as_str).unwrap_or("?");
        println!("        {:.3}  {} → {}  {}", m.p_truth, name(m.truth), name(m.decided), r.files.get(m.index).map(String::as_str).unwrap_or(""));
    }
    for s in &r.set_aside {
        println!("    set aside: {}{}: {}", s.path, s.line.map(|l| format!(" (line {l})")).unwrap_or_default(), s.words);
    }
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    let manifest = load_manifest(&a.weights)?;
    if a.model == ModelId::Gate {
        let gk = Gatekeeper::new(load_classifier(&a.weights, &manifest, ModelId::Gate, &ctxr::model::device::cpu())?)?;
        // --store ships the confidence bar chosen now, so the acceptance is counted with it.
        let r = evaluate_gate_default(&gk, &a.data, a.store)?;
        for (k, v) in &r.acceptance {
            println!("    {k:<45} n {:>5}  accepted {:.4}  routed correctly {:.4}", v.n, v.accepted_rate, v.routed_rate);
        }
        if let Some(ask) = &r.ask {
            println!("asks below confidence {:.2} ({})", ask.ask_below, ask.rule);
            for (set, t) in &ask.sets {
                println!("    {set}: {} routed correctly, {} misrouted", t.routed_correctly, t.misrouted);
                for row in &t.rows {
                    println!("        below {:.2}: asks about {:.4} of the correct, {:.4} of the misrouted", row.below, row.correct_asked, row.misrouted_asked);
                }
            }
        }
        let p = &r.natural_photos;
        println!(
            "natural photos: {} of {} refused ({} by the network alone, greyscale); limit {}",
            p.refused, p.n, p.refused_by_network_alone_greyscale, r.limit
        );
        if let Some(out) = &a.json {
            write(out, serde_json::to_string_pretty(&r)?.as_bytes())?;
        }
        if a.store {
            store(&a.weights, manifest, ModelId::Gate, Evaluation::Gate(r))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let clf = load_classifier(&a.weights, &manifest, a.model, &ctxr::model::device::cpu())?;
    if !clf.entry.is_evaluated() {
        eprintln!("note: the manifest carries no evaluation for '{}' yet", a.model);
    }
    let mut stored = None;
    if let Some(path) = &a.labelled {
        // The gate sets aside what it refuses, as on the page; without one, every file is read.
        let gate = match manifest.model(ModelId::Gate) {
            Ok(_) => Some(Gatekeeper::new(load_classifier(&a.weights, &manifest, ModelId::Gate, &ctxr::model::device::cpu())?)?),
            Err(_) => None,
        };
        let r = evaluate_labelled(&clf, gate.as_ref(), path)?;
        print_labelled(&r);
        if let Some(out) = &a.json {
            write(out, serde_json::to_string_pretty(&r)?.as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let json = match &a.manifest {
        Some(csv) => {
            let r = evaluate_csv(&clf, csv)?;
            print_set("manifest", &r.report);
            serde_json::to_string_pretty(&r)?
        }
        None => {
            let r = evaluate_default(&clf, &a.data)?;
            stored = a.store.then(|| Evaluation::Model(Box::new(r.clone())));
            if let Some(sets) = &r.sets {
                print_set("external", &sets.external);
                print_set("internal_heldout", &sets.internal_heldout);
            }
            if let Some(a) = &r.audit {
                println!("shortcut audit (share of each class: by arg-max | at the operating point):");
                for c in &a.shortcuts {
                    println!("    {:<70} n {:>4}  {:?} | {:?}", c.set, c.n, c.by_argmax, c.at_operating_point);
                }
                println!("invariance ({}):", a.invariance.first().map(|c| c.transform.as_str()).unwrap_or("none"));
                for c in &a.attention {
                    println!(
                        "attention: {:<40} Grad-CAM of {} (stage {}): peak on the lungs in {:.3} of {} maps (chance {:.3}; {} without a lung mask)",
                        c.set, c.class, c.layer, c.peak_in_lungs, c.n, c.lung_cells, c.without_mask
                    );
                }
                for c in &a.invariance {
                    println!(
                        "    {:<24} n {:>4}  arg-max agreement {:.3}  decision agreement {:.3}  median |ΔP| {:.4}  p90 |ΔP| {:.4}",
                        c.set, c.n, c.argmax_agreement, c.decision_agreement, c.median_abs_delta_p, c.p90_abs_delta_p
                    );
                }
            }
            serde_json::to_string_pretty(&r)?
        }
    };
    if let Some(out) = &a.json {
        write(out, json.as_bytes())?;
    }
    if let Some(ev) = stored {
        store(&a.weights, manifest, a.model, ev)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Replace the stored evaluation of `id` in the manifest in `dir`.
fn store(dir: &std::path::Path, mut manifest: Manifest, id: ModelId, ev: Evaluation) -> Result<(), LabError> {
    if let Some(e) = manifest.models.iter_mut().find(|m| m.id == id) {
        // The gate ships the confidence bar its evaluation chose.
        if let (Some(g), Evaluation::Gate(ge)) = (e.gate.as_mut(), &ev)
            && let Some(ask) = &ge.ask
        {
            g.ask_below = ask.ask_below as f32;
        }
        e.evaluation = Some(ev);
        // Entries written before definitions existed get theirs.
        e.definition.get_or_insert_with(|| id.definition().to_string());
    }
    write_manifest(dir, &manifest)?;
    println!("stored the evaluation of '{id}' in {}", dir.join("manifest.json").display());
    Ok(())
}
