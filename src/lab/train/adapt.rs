//! Adapt: `ctxr adapt` — a shipped model fine-tuned on a user's labelled folder or CSV by the
//! core's adaptation (the one the page runs), and the weights folder it writes: the adapted
//! record beside copies of the other records, under a manifest whose entry says what it was
//! adapted from, on what, and what cross-validation on that set measured.

use std::path::Path;
use std::time::Instant;

use ctxr::infer::{Classifier, Gatekeeper};
use ctxr::model::{Manifest, ModelEntry};
use ctxr::train::adapt::{AdaptConfig, Adaptation, Adapted, Examples, Progress};
use ctxr::train::labelled::SetAside;

use super::write;
use crate::LabError;
use crate::eval::{read_labelled, take_in};
use crate::weights::write_manifest;

/// An adaptation run on a labelled set, with what was set aside.
pub struct AdaptRun {
    pub adapted: Adapted,
    /// The usable files, in the order of the per-image results.
    pub files: Vec<String>,
    pub set_aside: Vec<SetAside>,
    /// Bytes the images took in memory, and the whole run's wall time.
    pub image_bytes: usize,
    pub seconds: f64,
}

/// Adapt `clf` to the labelled set at `path` (a folder of class folders or a CSV), reading it
/// as the page does; refuses, before reading any file, a set whose images would take more
/// than `limit` bytes. `progress` sees every step with the seconds since the start.
pub fn adapt_labelled(
    clf: &Classifier,
    gate: Option<&Gatekeeper>,
    path: &Path,
    cfg: AdaptConfig,
    limit: usize,
    mut progress: impl FnMut(&Progress, f64),
) -> Result<AdaptRun, LabError> {
    let t0 = Instant::now();
    let mut set = read_labelled(path, &clf.entry.classes)?;
    let size = clf.entry.preprocess.input_size as usize;
    let mut examples = Examples::with_capacity(set.items.len(), size, limit)?;
    take_in(clf, gate, &mut set, |item, input| Ok(examples.push(&input.seen, item.label, item.group.clone())?))?;
    set.check(Some(cfg.folds))?;
    let image_bytes = examples.bytes();
    let mut run = Adaptation::new(&clf.entry, clf.model()?.clone(), clf.device(), examples, cfg)?;
    loop {
        let p = pollster::block_on(run.advance())?;
        if p == Progress::Done {
            break;
        }
        progress(&p, t0.elapsed().as_secs_f64());
    }
    Ok(AdaptRun {
        adapted: run.finish()?,
        files: set.items.iter().map(|i| i.path.clone()).collect(),
        set_aside: set.set_aside,
        image_bytes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Write a weights folder at `out`: the adapted record of `base` (an entry of `manifest`, read
/// from `base_dir`), copies of the manifest's other records, and the manifest with the adapted
/// entry in place of the base's. Returns the new entry.
pub fn write_adapted(base_dir: &Path, manifest: &Manifest, base: &ModelEntry, adapted: &Adapted, out: &Path) -> Result<ModelEntry, LabError> {
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if same(base_dir, out) {
        return Err(LabError::Usage(format!("--out {}: write adapted weights to a folder of their own, not over the base model's", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| LabError::io(out, e))?;
    for e in manifest.models.iter().filter(|e| e.id != base.id) {
        let from = base_dir.join(&e.record);
        let bytes = std::fs::read(&from).map_err(|err| LabError::io(&from, err))?;
        write(&out.join(&e.record), &bytes)?;
    }
    let (entry, bytes) = pollster::block_on(adapted.entry(base))?;
    write(&out.join(&entry.record), &bytes)?;
    let mut m = manifest.clone();
    m.upsert(entry.clone());
    write_manifest(out, &m)?;
    Ok(entry)
}
