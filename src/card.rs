//! Model card tables: render the evaluation stored in `weights/manifest.json` as Markdown, so
//! every number in MODEL_CARD.md comes from the manifest that `ctxr eval` reproduces.

use std::fmt::Write;

use serde_json::Value;

use crate::weights::Manifest;

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.3}"),
        None => "–".into(),
    }
}

fn set_table(out: &mut String, name: &str, r: &Value) {
    let key = if r.get("auc").is_some() { "auc" } else { "macro_auc" };
    let _ = writeln!(out, "**{name}** — n = {}, accuracy {}, {} {}, ECE {} → {} after temperature scaling (T = {})\n", r["n"], f(&r["accuracy"]), key.replace('_', " ").to_uppercase(), f(&r[key]), f(&r["ece_raw"]), f(&r["ece_calibrated"]), f(&r["temperature"]));
    let _ = writeln!(out, "| class | n | sensitivity | specificity | precision | F1 |\n|---|---|---|---|---|---|");
    for c in r["per_class"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", c["class"].as_str().unwrap_or("?"), c["support"], f(&c["sensitivity"]), f(&c["specificity"]), f(&c["precision"]), f(&c["f1"]));
    }
    if let Some(apc) = r["auc_per_class"].as_object() {
        let parts: Vec<String> = apc.iter().map(|(k, v)| format!("{k} {}", f(v))).collect();
        let _ = writeln!(out, "\nOne-vs-rest AUC: {}.", parts.join(", "));
    }
    let classes: Vec<String> = r["classes"].as_array().into_iter().flatten().map(|c| c.as_str().unwrap_or("?").to_string()).collect();
    if let Some(m) = r["confusion"].as_array() {
        let _ = writeln!(out, "\nConfusion matrix (rows: truth, columns: predicted, arg-max after temperature):\n");
        let _ = writeln!(out, "| | {} |\n|---|{}", classes.join(" | "), "---|".repeat(classes.len()));
        for (c, row) in classes.iter().zip(m) {
            let cells: Vec<String> = row.as_array().into_iter().flatten().map(|v| v.to_string()).collect();
            let _ = writeln!(out, "| **{c}** | {} |", cells.join(" | "));
        }
    }
    if let Some(op) = r.get("at_operating_point").filter(|v| !v.is_null()) {
        let _ = writeln!(out, "\nAt the stored operating point ({} if P ≥ {}): accuracy {}; {}.", op["positive_class"].as_str().unwrap_or("?"), f(&op["threshold"]), f(&op["accuracy"]),
            op["per_class"].as_array().into_iter().flatten().map(|c| format!("{} sensitivity {} / specificity {}", c["class"].as_str().unwrap_or("?"), f(&c["sensitivity"]), f(&c["specificity"]))).collect::<Vec<_>>().join("; "));
    }
    if let Some(ps) = r["per_source"].as_object() {
        let _ = writeln!(out, "\n| source | n | accuracy | {key} | per-class sensitivity |\n|---|---|---|---|---|");
        for (s, v) in ps {
            let sens: Vec<String> = v["per_class"].as_array().into_iter().flatten().filter(|c| c["support"].as_u64().unwrap_or(0) > 0).map(|c| format!("{} {}", c["class"].as_str().unwrap_or("?"), f(&c["sensitivity"]))).collect();
            let _ = writeln!(out, "| {s} | {} | {} | {} | {} |", v["n"], f(&v["accuracy"]), f(&v[key]), sens.join(", "));
        }
    }
    if let Some(p) = r.get("patient_level").filter(|v| !v.is_null()) {
        let _ = writeln!(out, "\nPatient level ({} patients, {} with several slices): AUC of the max slice probability {}, of the mean {}.", p["patients"], p["patients_with_several_slices"], f(&p["auc_max"]), f(&p["auc_mean"]));
    }
    let _ = writeln!(out);
}

/// Markdown for every evaluated model in the manifest.
pub fn render(m: &Manifest) -> String {
    let mut out = String::new();
    for e in &m.models {
        let _ = writeln!(out, "### {} (`{}`)\n", e.title, e.id);
        let _ = writeln!(out, "Record `weights/{}`: {} parameters, {} bytes ({}), SHA-256 `{}`. Input {}×{}.\n", e.record, e.params, e.record_bytes, e.dtype, e.sha256, e.preprocess.input_size, e.preprocess.input_size);
        if let Some(t) = &e.training {
            let cfg = &t["config"];
            let _ = writeln!(out, "Training: {} epochs, batch {}, AdamW lr {} (cosine), weight decay {}, {} cross-entropy, seed {}{}.\n", cfg["epochs"], cfg["batch"], cfg["lr"], cfg["weight_decay"].as_f64().map(|w| format!("{w:.0e}")).unwrap_or_default(), if cfg["class_weighted_loss"].as_bool() == Some(false) { "unweighted" } else { "class-weighted" }, cfg["seed"], match (t["minutes"].as_f64(), t["machine"].as_str()) { (Some(m), Some(h)) => format!("; {m:.0} min on {h}"), _ => String::new() });
            if let Some(cv) = t.get("cross_validation") {
                let key = if cv.get("auc_mean").is_some() { "auc" } else { "macro_auc" };
                let _ = writeln!(out, "**{}-fold patient-grouped cross-validation** (training sources; each fold's model tested on patients it never saw): {} {} ± {}, accuracy {} ± {}, ECE {} → {} ± {} after temperature scaling (cross-fitted).\n", cv["folds"], key.replace('_', " ").to_uppercase(), f(&cv[format!("{key}_mean")]), f(&cv[format!("{key}_sd")]), f(&cv["accuracy_mean"]), f(&cv["accuracy_sd"]), f(&cv["ece_raw_mean"]), f(&cv["ece_after_temperature_mean"]), f(&cv["ece_after_temperature_sd"]));
                let _ = writeln!(out, "| fold | n | {key} | accuracy | ECE raw | ECE after T |\n|---|---|---|---|---|---|");
                for pf in cv["per_fold"].as_array().into_iter().flatten() {
                    let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", pf["fold"], pf["n"], f(&pf[key]), f(&pf["accuracy"]), f(&pf["ece_raw"]), f(&pf["ece_after_temperature"]));
                }
                let _ = writeln!(out);
                if let Some(ps) = cv["pooled_out_of_fold"]["per_source"].as_object() {
                    let _ = writeln!(out, "Out-of-fold, per source:\n\n| source | n | accuracy | {key} |\n|---|---|---|---|");
                    for (s, v) in ps {
                        let _ = writeln!(out, "| {s} | {} | {} | {} |", v["n"], f(&v["accuracy"]), f(&v[key]));
                    }
                    let _ = writeln!(out);
                }
            }
        }
        if let Some(op) = &e.operating_point {
            let _ = writeln!(out, "Operating point: {} when P({}) ≥ {} (for {} sensitivity; measured on {}: sensitivity {}, specificity {}).\n", op["positive_class"].as_str().unwrap_or("?"), op["positive_class"].as_str().unwrap_or("?"), f(&op["threshold"]), f(&op["target_sensitivity"]), op["chosen_on"].as_str().unwrap_or("?"), f(&op["validation_sensitivity"]), f(&op["validation_specificity"]));
        }
        if let Some(ev) = &e.evaluation {
            if let Some(sets) = ev["sets"].as_object() {
                for (k, v) in sets {
                    let name = match k.as_str() {
                        "internal_heldout" => "Shipped model, its held-out fold (internal; patients never trained on)",
                        "external" => "Shipped model, external test sets (never used for training or selection)",
                        other => other,
                    };
                    set_table(&mut out, name, v);
                }
            } else if e.id == "gate" {
                let _ = writeln!(out, "Gate checks:\n\n| set | n | accepted | routed to the right model |\n|---|---|---|---|");
                for (k, v) in ev["external_acceptance"].as_object().into_iter().flatten() {
                    let _ = writeln!(out, "| external {k} | {} | {} ({}) | {} ({}) |", v["n"], v["accepted"], f(&v["accepted_rate"]), v["routed_correctly"], f(&v["routed_rate"]));
                }
                let np = &ev["natural_photos"];
                let _ = writeln!(out, "\nNatural photographs from `odd-inputs` ({}): refused {} of {} ({}); by the network alone on their greyscale version, {} ({}).\n", np["files"].as_array().into_iter().flatten().map(|x| x["file"].as_str().unwrap_or("?").rsplit('/').next().unwrap_or("?").to_string()).collect::<Vec<_>>().join(", "), np["refused"], np["n"], f(&np["refused_rate"]), np["refused_by_network_alone_greyscale"], f(&np["refused_by_network_alone_rate"]));
            }
        }
    }
    out
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
