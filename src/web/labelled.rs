//! The page's side of a user's own labelled images: read the set (a folder of class folders or
//! a CSV) file by file past the input gate, measure the model on it with the core's
//! assessment, move the threshold, adapt the model with the core's adaptation one batch per
//! call (so that the worker can report progress and cancel between calls), and install an
//! adapted model — just made, or loaded back from a file or IndexedDB — in place of the
//! shipped one. Every number comes from the same core functions `ctxr eval --labelled` and
//! `ctxr adapt` call, so the page's and the command line's numbers are the same numbers.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use ctxr::model::{ModelEntry, ModelId};
use ctxr::train::adapt::{AdaptConfig, Adaptation, Examples, Part, Progress};
use ctxr::train::assess::Measurement;
use ctxr::train::labelled::{Intake, Labelled, LabelledSet, SetAside, Why};

use crate::{Engine, analyze_error, busy, error, model_id, set_bytes, to_js};

/// How the user gave the labels: the paths of a dropped folder's files (labels from the class
/// folders), or a CSV's text with the folder it sits in and the paths of the files given.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Layout {
    Folder { paths: Vec<String> },
    Csv { text: String, dir: String, paths: Vec<String> },
}

/// A set being read file by file (`labelled_add`).
struct Reading {
    id: ModelId,
    set: LabelledSet,
    intake: Intake,
    examples: Examples,
    logits: Vec<Vec<f32>>,
    refused: Vec<(String, Why)>,
}

/// A set read and measured: what the threshold slider and the adaptation need.
struct Measured {
    id: ModelId,
    measurement: Measurement,
    set: LabelledSet,
    examples: Examples,
}

/// The user's labelled set and the adaptation on it, apart from the engine's state so that an
/// adaptation step (which holds this across the device's await) never blocks viewing.
#[derive(Default)]
pub(crate) struct Own {
    reading: Option<Reading>,
    measured: Option<Measured>,
    adapting: Option<(ModelId, Adaptation)>,
}

pub(crate) type OwnCell = Rc<RefCell<Own>>;

/// What reading the labels gave, before any file is read.
#[derive(Serialize)]
struct Begun<'a> {
    model: ModelId,
    classes: &'a [String],
    items: &'a [Labelled],
    set_aside: &'a [SetAside],
    grouped: bool,
}

/// What the page may choose of an adaptation; the rest is the recipe's.
#[derive(Deserialize)]
struct AdaptRequest {
    part: Part,
    #[serde(default)]
    epochs: Option<usize>,
    #[serde(default)]
    folds: Option<usize>,
}

fn own_error(kind: &str, e: impl std::fmt::Display) -> JsValue {
    error(kind, &e.to_string())
}

#[wasm_bindgen]
impl Engine {
    /// Read a labelled set's labels for model `id` ("ct" or "cxr"): `layout` is `{kind:
    /// "folder", paths}` or `{kind: "csv", text, dir, paths}`. Refuses, before any file is
    /// read, a set whose images would take more than `limit_bytes`. Resolves to `{model,
    /// classes, items, set_aside, grouped}`; the worker then gives each item's bytes to
    /// `labelled_add` and ends with `labelled_finish`.
    pub fn labelled_begin(&self, id: &str, layout: JsValue, limit_bytes: usize) -> Result<JsValue, JsValue> {
        let id = model_id(id)?;
        if id == ModelId::Gate {
            return Err(error("bad_request", "a labelled set is measured with the CT or the X-ray model"));
        }
        let layout: Layout = serde_wasm_bindgen::from_value(layout).map_err(|e| own_error("bad_request", e))?;
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let clf = st.models.classifier(id).map_err(|e| analyze_error(&e))?;
        let classes = clf.entry.classes.clone();
        let size = clf.entry.preprocess.input_size as usize;
        let set = match layout {
            Layout::Folder { paths } => LabelledSet::from_folder(paths.iter().map(String::as_str), &classes),
            Layout::Csv { text, dir, paths } => {
                let given: std::collections::HashSet<String> = paths.iter().map(|p| ctxr::train::labelled::normalise(p)).collect();
                LabelledSet::from_csv(&text, &dir, &classes, |p| given.contains(p)).map_err(|e| own_error("labels", e))?
            }
        };
        let examples = Examples::with_capacity(set.items.len(), size, limit_bytes).map_err(|e| own_error("too_large", e))?;
        let mut own = self.own.try_borrow_mut().map_err(|_| busy())?;
        own.measured = None;
        own.adapting = None;
        let out = to_js(&Begun { model: id, classes: &set.classes, items: &set.items, set_aside: &set.set_aside, grouped: set.grouped() })?;
        own.reading = Some(Reading { id, set, intake: Intake::new(), examples, logits: Vec::new(), refused: Vec::new() });
        Ok(out)
    }

    /// Read one listed file (`path` as `labelled_begin` listed it): resolves to `{used: true}`
    /// or `{used: false, why}` — a copy, an unreadable file or one the gate refuses is set
    /// aside and the rest go on.
    pub fn labelled_add(&self, path: String, bytes: Vec<u8>) -> Promise {
        let (state, own) = (self.state.clone(), self.own.clone());
        future_to_promise(async move {
            let st = state.try_borrow().map_err(|_| busy())?;
            let mut own = own.try_borrow_mut().map_err(|_| busy())?;
            let r = own.reading.as_mut().ok_or_else(|| error("bad_request", "labelled_add before labelled_begin"))?;
            let item =
                r.set.items.iter().find(|i| i.path == path).cloned().ok_or_else(|| error("bad_request", &format!("{path} is not one of the set's files")))?;
            let clf = st.models.classifier(r.id).map_err(|e| analyze_error(&e))?;
            let input = match r.intake.add(clf, st.models.gate(), &item.path, &bytes).await {
                Ok(input) => input,
                Err(why) => {
                    let words = why.words();
                    r.refused.push((item.path, why));
                    return to_js(&serde_json::json!({ "used": false, "why": words }));
                }
            };
            let p = clf.predict_batch(&[&input]).await.map_err(|e| own_error(e.kind(), e))?;
            r.examples.push(&input.seen, item.label, item.group.clone()).map_err(|e| own_error("adapt", e))?;
            r.logits.extend(p.into_iter().map(|p| p.logits));
            to_js(&serde_json::json!({ "used": true }))
        })
    }

    /// Measure the model on the files read: the core's [`Measurement`] (ROC, AUC with its
    /// bootstrap interval, confusion at the operating point, reliability, per-class rows, worst
    /// files, each file's probabilities). Refuses a set with one class only.
    pub fn labelled_finish(&self) -> Result<JsValue, JsValue> {
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let mut own = self.own.try_borrow_mut().map_err(|_| busy())?;
        let Reading { id, mut set, examples, logits, refused, .. } =
            own.reading.take().ok_or_else(|| error("bad_request", "labelled_finish before labelled_begin"))?;
        for (path, why) in refused {
            set.set_aside_item(&path, why);
        }
        set.check(None).map_err(|e| own_error("labels", e))?;
        let clf = st.models.classifier(id).map_err(|e| analyze_error(&e))?;
        let measurement = Measurement::new(&clf.entry, &set, &logits, examples.bytes());
        let out = to_js(&measurement)?;
        own.measured = Some(Measured { id, measurement, set, examples });
        Ok(out)
    }

    /// The decisions on the measured set at `threshold` on the operating point's class (the
    /// page's slider): `{threshold, positive_class, accuracy, confusion, per_class, decided}`.
    pub fn labelled_threshold(&self, threshold: f64) -> Result<JsValue, JsValue> {
        let own = self.own.try_borrow().map_err(|_| busy())?;
        let m = own.measured.as_ref().ok_or_else(|| error("bad_request", "no labelled set has been measured"))?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(error("bad_request", "a threshold is a probability, from 0 to 1"));
        }
        to_js(&m.measurement.at(threshold).ok_or_else(|| error("bad_request", "this model has no operating point to move"))?)
    }

    /// Start adapting the measured set's model: `request` is `{part: "head" | "last" | "all",
    /// epochs?, folds?}`. Refuses a set too small for the folds. Resolves to `{steps_max,
    /// config}`; the worker then calls `adapt_step` until it says `done`.
    pub fn adapt_begin(&self, request: JsValue) -> Result<JsValue, JsValue> {
        let req: AdaptRequest = serde_wasm_bindgen::from_value(request).map_err(|e| own_error("bad_request", e))?;
        let st = self.state.try_borrow().map_err(|_| busy())?;
        let mut own = self.own.try_borrow_mut().map_err(|_| busy())?;
        let m = own.measured.as_ref().ok_or_else(|| error("bad_request", "measure the model on a labelled set before adapting it"))?;
        let mut cfg = AdaptConfig::new(req.part);
        if let Some(e) = req.epochs {
            cfg.max_epochs = e.clamp(1, 200);
        }
        if let Some(k) = req.folds {
            cfg.folds = k.clamp(2, 10);
        }
        m.set.check(Some(cfg.folds)).map_err(|e| own_error("labels", e))?;
        let clf = st.models.classifier(m.id).map_err(|e| analyze_error(&e))?;
        let base = clf.model().map_err(|e| own_error("adapt", e))?.clone();
        let run = Adaptation::new(&clf.entry, base, clf.device(), m.examples.clone(), cfg).map_err(|e| own_error("adapt", e))?;
        let out = to_js(&serde_json::json!({ "steps_max": run.steps_max(), "config": run.config() }))?;
        own.adapting = Some((m.id, run));
        Ok(out)
    }

    /// One batch of the adaptation: resolves to the core's progress, `{stage: "scored" |
    /// "step" | "epoch" | "done", …}`.
    pub fn adapt_step(&self) -> Promise {
        let own = self.own.clone();
        future_to_promise(async move {
            let mut own = own.try_borrow_mut().map_err(|_| busy())?;
            let (_, run) = own.adapting.as_mut().ok_or_else(|| error("bad_request", "adapt_step before adapt_begin"))?;
            let p: Progress = run.advance().await.map_err(|e| own_error("adapt", e))?;
            to_js(&p)
        })
    }

    /// Drop the adaptation in progress; the model in use stays the one it was.
    pub fn adapt_cancel(&self) -> Result<bool, JsValue> {
        let mut own = self.own.try_borrow_mut().map_err(|_| busy())?;
        Ok(own.adapting.take().is_some())
    }

    /// The finished adaptation's model, installed in place of its base for the rest of the
    /// session: resolves to `{entry, manifest, verdict, record: Uint8Array}` — the manifest entry (title
    /// "adapted locally on N images, not validated", base SHA-256, data summary,
    /// cross-validation), the engine's manifest with it (JSON text, what `ctxr adapt` writes
    /// beside the record), the verdict on the gain in words and the record to save.
    pub fn adapt_finish(&self) -> Promise {
        let (state, own) = (self.state.clone(), self.own.clone());
        future_to_promise(async move {
            let (id, run) = own.try_borrow_mut().map_err(|_| busy())?.adapting.take().ok_or_else(|| error("bad_request", "adapt_finish before adapt_begin"))?;
            let adapted = run.finish().map_err(|e| own_error("adapt", e))?;
            let base = state.try_borrow().map_err(|_| busy())?.models.classifier(id).map_err(|e| analyze_error(&e))?.entry.clone();
            let (entry, record) = adapted.entry(&base).await.map_err(|e| own_error("adapt", e))?;
            let mut st = state.try_borrow_mut().map_err(|_| busy())?;
            st.models.install(entry.clone(), &record).map_err(|e| analyze_error(&e))?;
            st.current = None;
            let verdict = adapted.provenance.cross_validation.verdict();
            // The manifest of the folder the user saves: the records, not the model card's
            // details files, so it names none.
            let mut saved = st.models.manifest.clone();
            saved.models.iter_mut().for_each(|m| m.details = None);
            let o = to_js(&serde_json::json!({ "entry": entry, "manifest": saved.to_json(), "verdict": verdict }))?;
            set_bytes(&o, "record", &record);
            Ok(o)
        })
    }

    /// Install a saved model: its manifest entry (JSON text) and record, SHA-256 checked. It
    /// replaces the model of its id for the rest of the session; resolves to the entry.
    pub fn install_model(&self, entry_json: &str, record: &[u8]) -> Result<JsValue, JsValue> {
        let entry: ModelEntry = serde_json::from_str(entry_json).map_err(|e| own_error("manifest", format!("not a ctxr manifest entry: {e}")))?;
        let mut st = self.state.try_borrow_mut().map_err(|_| busy())?;
        st.models.install(entry.clone(), record).map_err(|e| analyze_error(&e))?;
        st.current = None;
        to_js(&entry)
    }

    /// The manifest entry of model `id` in use now (the shipped one, or an adapted one).
    pub fn model_entry(&self, id: &str) -> Result<JsValue, JsValue> {
        let id = model_id(id)?;
        let st = self.state.try_borrow().map_err(|_| busy())?;
        to_js(st.models.manifest.model(id).map_err(|e| own_error("manifest", e))?)
    }
}
