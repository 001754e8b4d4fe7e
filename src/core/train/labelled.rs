//! Labelled sets: which of a user's files shows which class (and, where known, which patient),
//! read either from a folder whose subfolders are class names or from a CSV `file,label[,group]`.
//! The page and `ctxr eval --data` read a user's labels with this one reader. A file that
//! cannot be used is set aside with its reason and the rest go on, because one typo in a
//! 500-row CSV must not cost the user the other 499.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::imaging::{Preprocessed, WindowChoice};
use crate::infer::{Classifier, Gatekeeper};
use crate::model::Modality;

/// One usable file of a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Labelled {
    /// The file's path as the reader resolved it (relative to the folder or the CSV's folder).
    pub path: String,
    /// Index into the model's classes.
    pub label: usize,
    /// Patient (or any grouping that must not be split), when the set says.
    pub group: Option<String>,
    /// CSV line (1-based, the header is line 1); `None` for folder sets.
    pub line: Option<usize>,
}

/// Why a file of a labelled set is not used.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Why {
    /// The label names no class of the model.
    UnknownLabel { label: String },
    /// A file of a folder set that is in no class folder.
    NoClassFolder,
    /// The CSV lists the file again (only its first row counts).
    ListedTwice { first_line: usize },
    /// The CSV names a file the folder or disk does not have.
    MissingFile,
    /// A CSV row that cannot be read.
    BadRow { detail: String },
    /// The file holds the same image as an earlier file of the set.
    SameImageAs { same_as: String },
    /// The file could not be decoded.
    Unreadable { detail: String },
    /// The input gate refused it: not a chest image of this model's kind.
    Refused { detail: String },
}

impl Why {
    /// The reason in plain words for the page and the CLI.
    pub fn words(&self) -> String {
        match self {
            Why::UnknownLabel { label } => format!("label '{label}' is not one of the model's classes"),
            Why::NoClassFolder => "not inside a folder named after a class".into(),
            Why::ListedTwice { first_line } => format!("listed again (first on line {first_line}); only the first row counts"),
            Why::MissingFile => "the CSV names this file but it is not there".into(),
            Why::BadRow { detail } => format!("row not understood: {detail}"),
            Why::SameImageAs { same_as } => format!("the same image as {same_as}"),
            Why::Unreadable { detail } => format!("could not be read: {detail}"),
            Why::Refused { detail } => format!("refused by the input gate: {detail}"),
        }
    }
}

/// A file that is set aside, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetAside {
    pub path: String,
    /// CSV line (1-based, the header is line 1); `None` for folder sets.
    pub line: Option<usize>,
    #[serde(flatten)]
    pub why: Why,
    /// [`Why::words`], for readers that do not know the enum.
    pub words: String,
}

impl SetAside {
    pub fn new(path: impl Into<String>, line: Option<usize>, why: Why) -> Self {
        let words = why.words();
        SetAside { path: path.into(), line, why, words }
    }
}

/// A labelled set as read: the usable files and the ones set aside.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledSet {
    pub classes: Vec<String>,
    pub items: Vec<Labelled>,
    pub set_aside: Vec<SetAside>,
}

/// A labelled set that cannot be read at all (nothing of it is usable).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelsError {
    #[error("the CSV's first line must be the header file,label or file,label,group; it is '{found}'")]
    Header { found: String },
    #[error("the CSV has a header but no rows")]
    NoRows,
}

/// Why a labelled set is too small or too one-sided to measure a model on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetError {
    #[error("none of the files can be used (see the files set aside)")]
    Empty,
    #[error("every usable file is labelled '{class}': a model cannot be measured on one class only; add images of another class")]
    OneClass { class: String },
    #[error("{n} usable images are too few to split {folds} ways (at least {need}, with each class in every part)")]
    TooFew { n: usize, folds: usize, need: usize },
}

/// The class a name means, ignoring case and surrounding blanks.
fn class_of(name: &str, classes: &[String]) -> Option<usize> {
    let name = name.trim();
    classes.iter().position(|c| c.eq_ignore_ascii_case(name))
}

/// `path` with `.` and `..` resolved and `\` read as `/` (so a CSV written on Windows works).
pub fn normalise(path: &str) -> String {
    let path = path.replace('\\', "/");
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute { format!("/{joined}") } else { joined }
}

/// One CSV line split into fields: commas separate, double quotes enclose a field that holds
/// commas, and `""` inside quotes is one quote (RFC 4180, without line breaks inside fields).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    out.push(cur);
    Ok(out.into_iter().map(|f| f.trim().to_string()).collect())
}

impl LabelledSet {
    /// Read a folder set from its files' paths relative to the dropped folder: a file's label
    /// is the nearest enclosing folder named after a class (`covid/a.png`, `data/noncovid/b.dcm`),
    /// and a folder inside the class folder is taken as the patient (`covid/patient7/slice12.dcm`),
    /// because that is how a PACS export or a study folder is laid out.
    pub fn from_folder<'a>(paths: impl IntoIterator<Item = &'a str>, classes: &[String]) -> LabelledSet {
        let mut items = Vec::new();
        let mut set_aside = Vec::new();
        for raw in paths {
            let path = normalise(raw);
            let dirs: Vec<&str> = path.split('/').collect();
            let dirs = dirs.get(..dirs.len().saturating_sub(1)).unwrap_or_default();
            let found = dirs.iter().enumerate().rev().find_map(|(i, d)| class_of(d, classes).map(|c| (i, c)));
            match (found, dirs.last()) {
                (Some((i, label)), _) => {
                    let group = dirs.get(..i + 2).map(|d| d.join("/"));
                    items.push(Labelled { path, label, group, line: None });
                }
                (None, Some(d)) => set_aside.push(SetAside::new(path.clone(), None, Why::UnknownLabel { label: d.to_string() })),
                (None, None) => set_aside.push(SetAside::new(path.clone(), None, Why::NoClassFolder)),
            }
        }
        LabelledSet { classes: classes.to_vec(), items, set_aside }
    }

    /// Read a CSV set. `dir` is the CSV's folder (relative paths are joined to it); `exists`
    /// says whether a resolved path names a file the user gave (the page: a file of the dropped
    /// folder; the CLI: a file on disk).
    pub fn from_csv(text: &str, dir: &str, classes: &[String], exists: impl Fn(&str) -> bool) -> Result<LabelledSet, LabelsError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_start_matches('\u{feff}'))).filter(|(_, l)| !l.trim().is_empty());
        let Some((_, head)) = lines.next() else { return Err(LabelsError::NoRows) };
        let header: Vec<String> = fields(head).unwrap_or_default().into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let grouped = match header.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["file", "label"] => false,
            ["file", "label", "group"] => true,
            _ => return Err(LabelsError::Header { found: head.trim().chars().take(120).collect() }),
        };
        let width = header.len();
        let mut items = Vec::new();
        let mut set_aside = Vec::new();
        let mut first_line: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut rows = 0;
        for (line, text) in lines {
            rows += 1;
            let f = match fields(text) {
                Ok(f) if f.len() == width => f,
                Ok(f) => {
                    let detail = format!("{} fields where the header has {width}", f.len());
                    set_aside.push(SetAside::new(text.trim(), Some(line), Why::BadRow { detail }));
                    continue;
                }
                Err(detail) => {
                    set_aside.push(SetAside::new(text.trim(), Some(line), Why::BadRow { detail }));
                    continue;
                }
            };
            let (file, label) = (&f[0], &f[1]);
            if file.is_empty() {
                set_aside.push(SetAside::new(text.trim(), Some(line), Why::BadRow { detail: "no file name".into() }));
                continue;
            }
            let path = if file.starts_with('/') || file.starts_with('\\') || dir.is_empty() { normalise(file) } else { normalise(&format!("{dir}/{file}")) };
            if let Some(&first) = first_line.get(&path) {
                set_aside.push(SetAside::new(path, Some(line), Why::ListedTwice { first_line: first }));
                continue;
            }
            first_line.insert(path.clone(), line);
            let Some(label) = class_of(label, classes) else {
                set_aside.push(SetAside::new(path, Some(line), Why::UnknownLabel { label: label.clone() }));
                continue;
            };
            if !exists(&path) {
                set_aside.push(SetAside::new(path, Some(line), Why::MissingFile));
                continue;
            }
            let group = if grouped { f.get(2).filter(|g| !g.is_empty()).cloned() } else { None };
            items.push(Labelled { path, label, group, line: Some(line) });
        }
        if rows == 0 {
            return Err(LabelsError::NoRows);
        }
        Ok(LabelledSet { classes: classes.to_vec(), items, set_aside })
    }

    /// Whether every usable file says which patient it is from; without that, the parts of a
    /// split may share a patient and the measured numbers may be too good.
    pub fn grouped(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.group.is_some())
    }

    /// Usable files per class.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for i in &self.items {
            if let Some(n) = c.get_mut(i.label) {
                *n += 1;
            }
        }
        c
    }

    /// Set a usable file aside after reading (it turned out unreadable, refused or a copy).
    pub fn set_aside_item(&mut self, path: &str, why: Why) {
        if let Some(pos) = self.items.iter().position(|i| i.path == path) {
            let item = self.items.remove(pos);
            self.set_aside.push(SetAside::new(item.path, item.line, why));
        }
    }

    /// Whether the model can be measured on the set: at least two classes. With `folds`, also
    /// whether each class has an image for every part of a `folds`-way split.
    pub fn check(&self, folds: Option<usize>) -> Result<(), SetError> {
        let counts = self.counts();
        let present: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] > 0).collect();
        match present.as_slice() {
            [] => return Err(SetError::Empty),
            [c] => return Err(SetError::OneClass { class: self.classes.get(*c).cloned().unwrap_or_default() }),
            _ => {}
        }
        if let Some(k) = folds {
            let smallest = present.iter().map(|&c| counts[c]).min().unwrap_or(0);
            if smallest < k {
                return Err(SetError::TooFew { n: self.items.len(), folds: k, need: k * present.len() });
            }
        }
        Ok(())
    }
}

/// Reads a labelled set's files one at a time into the model's input, setting aside copies,
/// unreadable files and files the input gate refuses. The user named the model, so the gate's
/// network sets aside only what it is sure is something else (a file it is unsure about stays);
/// its colour and DICOM rules apply as to every file the page reads.
#[derive(Default)]
pub struct Intake {
    seen: HashMap<[u8; 32], String>,
}

impl Intake {
    pub fn new() -> Self {
        Intake::default()
    }

    /// The model's input for `bytes` (the file at `path`), or why the file is set aside.
    pub async fn add(&mut self, clf: &Classifier, gate: Option<&Gatekeeper>, path: &str, bytes: &[u8]) -> Result<Preprocessed, Why> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(first) = self.seen.get(&digest) {
            return Err(Why::SameImageAs { same_as: first.clone() });
        }
        let (img, input) = clf.prepare(bytes, WindowChoice::Auto).map_err(|e| Why::Unreadable { detail: e.to_string() })?;
        if let Some(gate) = gate {
            let v = gate.judge(&img, false).await.map_err(|e| Why::Unreadable { detail: e.to_string() })?;
            let wanted = clf.modality();
            match (v.accepted, v.modality) {
                (true, Some(m)) if Some(m) != wanted => {
                    let read = |m: Option<Modality>| match m {
                        Some(Modality::Ct) => "a CT slice",
                        Some(Modality::Cxr) => "a chest X-ray",
                        None => "an image of another kind",
                    };
                    return Err(Why::Refused { detail: format!("it reads as {}, not {}", read(Some(m)), read(wanted)) });
                }
                (false, _) if !v.unsure => return Err(Why::Refused { detail: v.reason }),
                _ => {}
            }
        }
        self.seen.insert(digest, path.to_string());
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct() -> Vec<String> {
        vec!["noncovid".into(), "covid".into()]
    }

    #[test]
    fn folder_labels_come_from_the_nearest_class_folder_and_patients_from_the_folder_below() {
        let paths = ["covid/a.png", "data/NonCovid/b.dcm", "covid/patient7/s1.dcm", "covid/patient7/deep/s2.dcm", "normal/c.png", "loose.png"];
        let s = LabelledSet::from_folder(paths, &ct());
        let got: Vec<(&str, usize, Option<&str>)> = s.items.iter().map(|i| (i.path.as_str(), i.label, i.group.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("covid/a.png", 1, None),
                ("data/NonCovid/b.dcm", 0, None),
                ("covid/patient7/s1.dcm", 1, Some("covid/patient7")),
                ("covid/patient7/deep/s2.dcm", 1, Some("covid/patient7")),
            ]
        );
        assert_eq!(s.set_aside[0].why, Why::UnknownLabel { label: "normal".into() });
        assert_eq!(s.set_aside[1].why, Why::NoClassFolder);
        assert!(!s.grouped());
        assert_eq!(s.counts(), vec![1, 3]);
    }

    #[test]
    fn csv_rows_resolve_paths_and_list_every_problem() {
        let csv = "\u{feff}File,Label,Group\n\
                   a.png,covid,p1\n\
                   ./sub/../b.png,noncovid,p2\n\
                   \"c, with comma.png\",COVID,p3\n\
                   a.png,noncovid,p1\n\
                   d.png,pneumonia,p4\n\
                   gone.png,covid,p5\n\
                   e.png,covid\n\
                   /abs/f.png,noncovid,\n\
                   \"g.png,covid,p6\n";
        let have = ["set/a.png", "set/b.png", "set/c, with comma.png", "/abs/f.png"];
        let s = LabelledSet::from_csv(csv, "set", &ct(), |p| have.contains(&p)).unwrap();
        let got: Vec<(&str, usize, Option<&str>)> = s.items.iter().map(|i| (i.path.as_str(), i.label, i.group.as_deref())).collect();
        assert_eq!(got, vec![("set/a.png", 1, Some("p1")), ("set/b.png", 0, Some("p2")), ("set/c, with comma.png", 1, Some("p3")), ("/abs/f.png", 0, None)]);
        let why: Vec<(Option<usize>, &Why)> = s.set_aside.iter().map(|a| (a.line, &a.why)).collect();
        assert_eq!(why[0], (Some(5), &Why::ListedTwice { first_line: 2 }));
        assert_eq!(why[1], (Some(6), &Why::UnknownLabel { label: "pneumonia".into() }));
        assert_eq!(why[2], (Some(7), &Why::MissingFile));
        assert!(matches!(why[3], (Some(8), Why::BadRow { .. })));
        assert!(matches!(why[4], (Some(10), Why::BadRow { .. })));
        assert_eq!(s.set_aside.len(), 5);
        assert!(!s.grouped(), "one usable row has no group");
        // A file set aside after reading keeps its CSV line.
        let mut s = s;
        s.set_aside_item("set/b.png", Why::Unreadable { detail: "truncated".into() });
        assert_eq!(s.set_aside.last().map(|a| (a.path.as_str(), a.line)), Some(("set/b.png", Some(3))));
    }

    #[test]
    fn a_csv_without_the_header_or_rows_is_refused() {
        assert!(matches!(LabelledSet::from_csv("path,class\na,b\n", "", &ct(), |_| true), Err(LabelsError::Header { .. })));
        assert_eq!(LabelledSet::from_csv("file,label\n\n", "", &ct(), |_| true), Err(LabelsError::NoRows));
        assert_eq!(LabelledSet::from_csv("", "", &ct(), |_| true), Err(LabelsError::NoRows));
    }

    #[test]
    fn a_set_of_one_class_or_too_few_images_is_refused_in_words() {
        let one = LabelledSet::from_folder(["covid/a.png", "covid/b.png"], &ct());
        assert_eq!(one.check(None), Err(SetError::OneClass { class: "covid".into() }));
        let three = LabelledSet::from_folder(["covid/a.png", "covid/b.png", "noncovid/c.png"], &ct());
        assert_eq!(three.check(None), Ok(()));
        assert_eq!(three.check(Some(5)), Err(SetError::TooFew { n: 3, folds: 5, need: 10 }));
        assert_eq!(LabelledSet::from_folder([], &ct()).check(None), Err(SetError::Empty));
        let mut s = three.clone();
        s.set_aside_item("noncovid/c.png", Why::Refused { detail: "not a chest image".into() });
        assert_eq!(s.check(None), Err(SetError::OneClass { class: "covid".into() }));
        assert_eq!(s.set_aside[0].words, "refused by the input gate: not a chest image");
    }

    #[test]
    fn a_reason_never_hides_the_path_it_is_about() {
        // The reason is flattened into the entry: no variant may reuse the entry's own keys.
        let e = SetAside::new("b.png", Some(3), Why::SameImageAs { same_as: "a.png".into() });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            (v["path"].as_str(), v["same_as"].as_str(), v["reason"].as_str(), v["line"].as_u64()),
            (Some("b.png"), Some("a.png"), Some("same_image_as"), Some(3))
        );
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise("a/./b/../c.png"), "a/c.png");
        assert_eq!(normalise("..\\x\\y.png"), "../x/y.png");
        assert_eq!(normalise("/a/../../b"), "/b");
    }
}
