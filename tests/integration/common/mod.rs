//! Shared helpers for the integration tests: where the real data lives, and skipping
//! loudly when it is absent (a user's clone has no `../shared`).
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` next to the crate, or `CTXR_SHARED_DATA`; `None` (with a message) when absent.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CTXR_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("decoder-references.json").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: real data not found at {} (set CTXR_SHARED_DATA or place the shared data beside the repository)", dir.display());
        None
    }
}

/// Rows of a manifest.csv: (path relative to its folder, label, source, patient_id).
pub fn manifest_rows(csv: &std::path::Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(csv).expect("manifest readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column present");
    let (p, l, s, id) = (col("path"), col("label"), col("source"), col("patient_id"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f = split_csv(line);
            (f[p].clone(), f[l].clone(), f[s].clone(), f[id].clone())
        })
        .collect()
}

/// Minimal CSV field splitter with double-quote support.
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}
