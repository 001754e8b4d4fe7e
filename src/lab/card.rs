//! Model card tables: render the evaluation stored in `weights/manifest.json` as Markdown, so
//! every number in MODEL_CARD.md comes from the manifest that `ctxr eval` reproduces.

use std::fmt::Write;

use ctxr::model::report::{Audit, ClassRow, Evaluation, LeaveOneSourceOut, Report};
use ctxr::model::{Manifest, RecordDtype, Sampling};

fn f(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{x:.3}"),
        None => "–".into(),
    }
}

/// How the headline AUC of a report is named: "AUC" for two classes, "macro AUC" otherwise.
fn auc_name(binary: bool) -> (&'static str, &'static str) {
    if binary { ("auc", "AUC") } else { ("macro_auc", "macro AUC") }
}

fn set_table(out: &mut String, name: &str, r: &Report) {
    let (key, label) = auc_name(r.is_binary());
    let _ = writeln!(
        out,
        "**{name}** — n = {}, accuracy {}, {label} {}, ECE {} → {} after temperature scaling (T = {})\n",
        r.n,
        f(r.accuracy),
        f(r.headline_auc()),
        f(r.ece_raw),
        f(r.ece_calibrated),
        f(r.temperature)
    );
    let _ = writeln!(out, "| class | n | sensitivity | specificity | precision | F1 |\n|---|---|---|---|---|---|");
    for c in &r.per_class {
        let support = c.support.map(|s| s.to_string()).unwrap_or_else(|| "null".into());
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", c.class, support, f(c.sensitivity), f(c.specificity), f(c.precision), f(c.f1));
    }
    if let Some(apc) = &r.auc_per_class {
        let parts: Vec<String> = apc.iter().map(|(k, v)| format!("{k} {}", f(*v))).collect();
        let _ = writeln!(out, "\nOne-vs-rest AUC: {}.", parts.join(", "));
    }
    let _ = writeln!(out, "\nConfusion matrix (rows: truth, columns: predicted, arg-max after temperature):\n");
    let _ = writeln!(out, "| | {} |\n|---|{}", r.classes.join(" | "), "---|".repeat(r.classes.len()));
    for (c, row) in r.classes.iter().zip(&r.confusion) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(out, "| **{c}** | {} |", cells.join(" | "));
    }
    if let Some(op) = &r.at_operating_point {
        let rows = |c: &ClassRow| format!("{} sensitivity {} / specificity {}", c.class, f(c.sensitivity), f(c.specificity));
        let _ = writeln!(
            out,
            "\nAt the stored operating point ({} if P ≥ {}): accuracy {}; {}.",
            op.positive_class,
            f(Some(op.threshold)),
            f(op.accuracy),
            op.per_class.iter().map(rows).collect::<Vec<_>>().join("; ")
        );
    }
    if let Some(ps) = &r.per_source {
        let _ = writeln!(out, "\n| source | n | accuracy | {key} | per-class sensitivity |\n|---|---|---|---|---|");
        for (s, v) in ps {
            let sens: Vec<String> = v.per_class.iter().filter(|c| c.support.unwrap_or(0) > 0).map(|c| format!("{} {}", c.class, f(c.sensitivity))).collect();
            let _ = writeln!(out, "| {s} | {} | {} | {} | {} |", v.n, f(v.accuracy), f(v.headline_auc()), sens.join(", "));
        }
    }
    subtype_line(out, r);
    if let Some(p) = &r.patient_level {
        let _ = writeln!(
            out,
            "\nPatient level ({} patients, {} with several slices): AUC of the max slice probability {}, of the mean {}.",
            p.patients,
            p.patients_with_several_slices,
            f(p.auc_max),
            f(p.auc_mean)
        );
    }
    let _ = writeln!(out);
}

/// One line for a report's subtypes (each against its source's other labels), if it has any.
fn subtype_line(out: &mut String, r: &Report) {
    let Some(rows) = r.per_subtype.as_ref().filter(|v| !v.is_empty()) else { return };
    let parts: Vec<String> = rows.iter().map(|s| format!("{} {} {} (n {} against {}) {}", s.source, s.label, s.subtype, s.n, s.against, f(s.auc))).collect();
    let _ = writeln!(out, "\nAUC by subtype, each against its source's images of the other labels: {}.", parts.join("; "));
}

/// Markdown for every evaluated model in the manifest.
pub fn render(m: &Manifest) -> String {
    let mut out = String::new();
    for e in &m.models {
        let _ = writeln!(out, "### {} (`{}`)\n", e.title, e.id);
        if let Some(d) = &e.definition {
            let _ = writeln!(out, "**What it decides.** {d}\n");
        }
        let dtype = match e.dtype {
            RecordDtype::F16 => "f16",
            RecordDtype::F32 => "f32",
        };
        let _ = writeln!(
            out,
            "Record `weights/{}`: {} parameters, {} bytes ({dtype}), SHA-256 `{}`. Input {}×{}.\n",
            e.record, e.params, e.record_bytes, e.sha256, e.preprocess.input_size, e.preprocess.input_size
        );
        if let Some(t) = &e.training {
            let cfg = &t.config;
            let took = match (t.minutes, &t.machine) {
                (Some(m), Some(h)) => format!("; {m:.0} min on {h}"),
                _ => String::new(),
            };
            let loss = if cfg.class_weighted_loss { "class-weighted" } else { "unweighted" };
            let draws = match cfg.sampling {
                Sampling::EveryImage => "every training image once per epoch".to_string(),
                Sampling::BalancedWithinSource { images, max_boost } => format!(
                    "{images} draws per epoch, balanced within each source (each label a source has carries equal weight; sources weighted by the square root of their size; no image boosted more than {max_boost}×)"
                ),
            };
            let _ = writeln!(
                out,
                "Training: {} epochs, batch {}, AdamW lr {} (cosine), weight decay {:.0e}, {loss} cross-entropy, {draws}, seed {}{took}. Input: {:?} framing, {:?} grey levels.\n",
                cfg.epochs,
                cfg.batch,
                cfg.lr,
                f64::from(cfg.weight_decay),
                cfg.seed,
                e.preprocess.framing,
                e.preprocess.tone
            );
            let sources: Vec<String> =
                t.pool_sources.iter().map(|(s, c)| format!("{s} ({})", c.iter().map(|(l, n)| format!("{l} {n}")).collect::<Vec<_>>().join(", "))).collect();
            let _ = writeln!(out, "Trained and cross-validated on: {}.\n", sources.join("; "));
            if let Some(ext) = &t.external_sources {
                let sources: Vec<String> =
                    ext.iter().map(|(s, c)| format!("{s} ({})", c.iter().map(|(l, n)| format!("{l} {n}")).collect::<Vec<_>>().join(", "))).collect();
                let _ = writeln!(out, "Never trained on (external): {}.\n", sources.join("; "));
            }
            if let Some(cv) = &t.cross_validation {
                let (key, label) = auc_name(cv.auc_mean.is_some());
                let (mean, sd) = cv.headline_auc();
                let _ = writeln!(
                    out,
                    "**{}-fold patient-grouped cross-validation** (training sources; each fold's model tested on patients it never saw): {label} {} ± {}, accuracy {} ± {}, ECE {} → {} ± {} after temperature scaling (cross-fitted).\n",
                    cv.folds,
                    f(mean),
                    f(sd),
                    f(cv.accuracy_mean),
                    f(cv.accuracy_sd),
                    f(cv.ece_raw_mean),
                    f(cv.ece_after_temperature_mean),
                    f(cv.ece_after_temperature_sd)
                );
                let _ = writeln!(out, "| fold | n | {key} | accuracy | ECE raw | ECE after T |\n|---|---|---|---|---|---|");
                for pf in &cv.per_fold {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} |",
                        pf.fold,
                        pf.n,
                        f(pf.auc.or(pf.macro_auc)),
                        f(pf.accuracy),
                        f(pf.ece_raw),
                        f(pf.ece_after_temperature)
                    );
                }
                let _ = writeln!(out);
                if let Some(ps) = &cv.pooled_out_of_fold.per_source {
                    let _ = writeln!(out, "Out-of-fold, per source:\n\n| source | n | accuracy | {key} |\n|---|---|---|---|");
                    for (s, v) in ps {
                        let _ = writeln!(out, "| {s} | {} | {} | {} |", v.n, f(v.accuracy), f(v.headline_auc()));
                    }
                    let _ = writeln!(out);
                }
            }
            if let Some(l) = &t.leave_one_source_out {
                loso_table(&mut out, l);
            }
        }
        if let Some(op) = &e.operating_point {
            let _ = writeln!(
                out,
                "Operating point: {} when P({}) ≥ {} (for {} sensitivity; measured on {}: sensitivity {}, specificity {}).\n",
                op.positive_class,
                op.positive_class,
                f(Some(op.threshold)),
                f(Some(op.target_sensitivity)),
                op.chosen_on,
                f(Some(op.validation_sensitivity)),
                f(Some(op.validation_specificity))
            );
        }
        match &e.evaluation {
            Some(Evaluation::Model(ev)) => {
                if let Some(sets) = &ev.sets {
                    set_table(&mut out, "Shipped model, external test sets (never used for training or selection)", &sets.external);
                    set_table(&mut out, "Shipped model, its held-out fold (internal; patients never trained on)", &sets.internal_heldout);
                }
                if let Some(a) = &ev.audit {
                    audit_tables(&mut out, a);
                }
            }
            Some(Evaluation::Gate(ev)) => {
                let _ = writeln!(
                    out,
                    "Gate checks (asked: the page asks the user which model should read the image; the rest is refused):\n\n| set | n | accepted | routed to the right model | asked |\n|---|---|---|---|---|"
                );
                for (k, v) in &ev.acceptance {
                    let _ = writeln!(
                        out,
                        "| {k} | {} | {} ({}) | {} ({}) | {} |",
                        v.n,
                        v.accepted,
                        f(Some(v.accepted_rate)),
                        v.routed_correctly,
                        f(Some(v.routed_rate)),
                        v.asked
                    );
                }
                if let Some(a) = &ev.ask {
                    let _ = writeln!(
                        out,
                        "\n**When the gate asks.** Below a confidence of {:.2} (the larger of its P(ct) and P(cxr)) the gate does not accept an image it would route: the page asks which model should read it. The bar is {}. Share of the images the network would route that the bar asks about, by whether it routes them to the right model:\n",
                        a.ask_below, a.rule
                    );
                    let sets: Vec<_> = a.sets.iter().collect();
                    let head: Vec<String> =
                        sets.iter().map(|(k, t)| format!("{k}: of {} routed right | of {} routed wrong", t.routed_correctly, t.misrouted)).collect();
                    let _ = writeln!(out, "| asks below | {} |\n|---|{}", head.join(" | "), "---|".repeat(2 * sets.len()));
                    let rows = sets.first().map_or(0, |(_, t)| t.rows.len());
                    for i in 0..rows {
                        let cells: Vec<String> = sets
                            .iter()
                            .filter_map(|(_, t)| t.rows.get(i).map(|r| (t, r)))
                            .map(|(t, r)| {
                                let wrong = if t.misrouted == 0 { "—".to_string() } else { f(Some(r.misrouted_asked)) };
                                format!("{} | {wrong}", f(Some(r.correct_asked)))
                            })
                            .collect();
                        let below = sets.first().and_then(|(_, t)| t.rows.get(i)).map_or(0.0, |r| r.below);
                        let _ = writeln!(out, "| {below:.2} | {} |", cells.join(" | "));
                    }
                }
                let np = &ev.natural_photos;
                let names: Vec<&str> = np.files.iter().map(|x| x.file.rsplit('/').next().unwrap_or("?")).collect();
                let _ = writeln!(
                    out,
                    "\nNatural photographs from `odd-inputs` ({}): refused {} of {} ({}); by the network alone on their greyscale version, {} ({}).\n",
                    names.join(", "),
                    np.refused,
                    np.n,
                    f(Some(np.refused_rate)),
                    np.refused_by_network_alone_greyscale,
                    f(Some(np.refused_by_network_alone_rate))
                );
            }
            None => {}
        }
    }
    out
}

fn shares(m: &std::collections::BTreeMap<String, f64>) -> String {
    m.iter().map(|(c, v)| format!("{c} {}", f(Some(*v)))).collect::<Vec<_>>().join(", ")
}

fn loso_table(out: &mut String, l: &LeaveOneSourceOut) {
    let _ = writeln!(
        out,
        "**Leave-one-source-out** (the \"new hospital\" number: {}): mean AUC {}.\n\n| left-out source | n | labels | AUC | accuracy | per-class sensitivity | minutes |\n|---|---|---|---|---|---|---|",
        l.note,
        f(l.mean_auc)
    );
    for r in &l.runs {
        let rep = &r.report;
        let labels: Vec<String> = rep.classes.iter().zip(&rep.class_counts).filter(|(_, n)| **n > 0).map(|(c, n)| format!("{c} {n}")).collect();
        let sens: Vec<String> = rep.per_class.iter().filter(|c| c.support.unwrap_or(0) > 0).map(|c| format!("{} {}", c.class, f(c.sensitivity))).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.0} |",
            r.source,
            rep.n,
            labels.join(", "),
            f(rep.headline_auc()),
            f(rep.accuracy),
            sens.join(", "),
            r.minutes
        );
    }
    for r in &l.runs {
        subtype_line(out, &r.report);
    }
    let _ = writeln!(out);
}

fn audit_tables(out: &mut String, a: &Audit) {
    let _ = writeln!(
        out,
        "**Shortcut audit** — what the shipped model calls images without its positive disease (share of each class):\n\n| set | n | by arg-max | at the operating point |\n|---|---|---|---|"
    );
    for c in &a.shortcuts {
        let _ = writeln!(out, "| {} | {} | {} | {} |", c.set, c.n, shares(&c.by_argmax), shares(&c.at_operating_point));
    }
    if let Some(first) = a.invariance.first() {
        let _ = writeln!(
            out,
            "\n**Invariance check** — each image classified as the file and again {}:\n\n| set | n | arg-max agreement | decision agreement | median \\|ΔP\\| | 90th percentile \\|ΔP\\| |\n|---|---|---|---|---|---|",
            first.transform
        );
        for c in &a.invariance {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                c.set,
                c.n,
                f(Some(c.argmax_agreement)),
                f(Some(c.decision_agreement)),
                f(Some(c.median_abs_delta_p)),
                f(Some(c.p90_abs_delta_p))
            );
        }
    }
    if !a.attention.is_empty() {
        let _ = writeln!(
            out,
            "\n**Grad-CAM attention** — share of the maps of the positive class whose hottest cell lies mostly on the lungs (dark regions of the model's input, holes filled; for CT the input is the lung crop, for X-rays the enclosed dark fields), next to the share of cells that do (what a map peaking at random would score):\n\n| set | class | stage | maps | peak on the lungs | lung cells (chance) | no lung mask |\n|---|---|---|---|---|---|---|"
        );
        for c in &a.attention {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                c.set,
                c.class,
                c.layer,
                c.n,
                f(Some(c.peak_in_lungs)),
                f(Some(c.lung_cells)),
                c.without_mask
            );
        }
    }
    let _ = writeln!(out);
}

/// Replace the text between the generated-section markers of `card` with `tables`.
pub fn splice(card: &str, tables: &str) -> String {
    const BEGIN: &str = "<!-- BEGIN GENERATED: ctxr card -->";
    const END: &str = "<!-- END GENERATED -->";
    match (card.find(BEGIN), card.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{BEGIN}\n\n{tables}\n{}", &card[..a], &card[b..]),
        _ => format!("{card}\n{BEGIN}\n\n{tables}\n{END}\n"),
    }
}
