//! Data: read `manifest.csv` files, group images so that no patient (or block of neighbouring
//! scans, for sources without patient ids) straddles a split, build stratified grouped folds,
//! and cache the shared decode → preprocess output as one compact file so epochs never
//! re-decode.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ctxr::decode::{DecodeOptions, decode};
use ctxr::imaging::{PreprocessConfig, WindowChoice, preprocess};

use crate::stable_hash;

/// One row of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Path as written in the manifest (relative to its folder).
    pub rel: String,
    pub path: PathBuf,
    pub label: String,
    pub source: String,
    pub patient_id: Option<String>,
    pub subtype: String,
    pub orig_name: String,
    /// Leakage group: patient, or block of neighbouring file numbers, or the file itself.
    pub group: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {msg}")]
    Manifest { path: String, msg: String },
    #[error("I/O error on {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("cache {path} is unusable: {msg}")]
    Cache { path: String, msg: String },
}

fn split_csv(line: &str) -> Vec<String> {
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

/// Read a manifest with the columns of `../shared/data/*/manifest.csv`; paths are resolved
/// against the CSV's folder.
pub fn read_manifest(csv: &Path) -> Result<Vec<Sample>, DataError> {
    let text = std::fs::read_to_string(csv).map_err(|err| DataError::Io { path: csv.display().to_string(), err })?;
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap_or_default().trim_start_matches('\u{feff}'));
    let col = |name: &str| -> Result<usize, DataError> {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DataError::Manifest { path: csv.display().to_string(), msg: format!("missing column '{name}'") })
    };
    let (cp, cl, cs) = (col("path")?, col("label")?, col("source")?);
    let opt = |name: &str| header.iter().position(|h| h.trim() == name);
    let (cid, csub, corig) = (opt("patient_id"), opt("subtype"), opt("orig_name"));
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_csv(line);
        let get = |c: usize| f.get(c).map(|s| s.trim().to_string()).unwrap_or_default();
        let getopt = |c: Option<usize>| c.map(get).unwrap_or_default();
        let rel = get(cp);
        if rel.is_empty() {
            return Err(DataError::Manifest { path: csv.display().to_string(), msg: format!("row {} has no path", i + 2) });
        }
        let patient = getopt(cid);
        let mut s = Sample {
            path: base.join(&rel),
            label: get(cl).to_lowercase(),
            source: get(cs),
            patient_id: (!patient.is_empty()).then_some(patient),
            subtype: getopt(csub),
            orig_name: getopt(corig),
            group: String::new(),
            rel,
        };
        s.group = group_key(&s);
        out.push(s);
    }
    Ok(out)
}

/// First run of digits in a file name ("Covid (123).png" → 123).
fn file_number(name: &str) -> Option<u64> {
    let digits: String = name.chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Neighbouring file numbers are grouped in blocks of this many (sources without patient ids
/// whose neighbouring numbers are often the same patient or scan).
pub const NEIGHBOUR_BLOCK: u64 = 25;

fn group_key(s: &Sample) -> String {
    if let Some(p) = &s.patient_id {
        return p.clone();
    }
    let name = if s.orig_name.is_empty() { s.rel.rsplit('/').next().unwrap_or(&s.rel) } else { &s.orig_name };
    match (s.source.as_str(), file_number(name)) {
        ("sarscov2-ct" | "radiography-224", Some(n)) => format!("{}:{}:block{}", s.source, s.label, n / NEIGHBOUR_BLOCK),
        _ => format!("{}:{}", s.source, name),
    }
}

/// Assign each sample a fold in `0..k` (the core's rule, [`ctxr::train::folds::grouped_folds`]):
/// a group never straddles folds and each (source, label) stratum is spread evenly.
pub fn grouped_folds(samples: &[Sample], k: usize, seed: u64) -> Vec<usize> {
    let groups: Vec<&str> = samples.iter().map(|s| s.group.as_str()).collect();
    let strata: Vec<String> = samples.iter().map(|s| format!("{}|{}", s.source, s.label)).collect();
    let strata: Vec<&str> = strata.iter().map(String::as_str).collect();
    ctxr::train::folds::grouped_folds(&groups, &strata, k, seed)
}

/// Preprocessed images of a sample list, as 8-bit "what the model saw" squares.
pub struct Cache {
    pub size: u32,
    /// `n × size × size` bytes.
    pub images: Vec<u8>,
    /// Per-sample decode/preprocess error (then its image is all zero).
    pub errors: Vec<Option<String>>,
}

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    version: u32,
    size: u32,
    n: usize,
    key: String,
    errors: Vec<Option<String>>,
}

impl Cache {
    pub fn image(&self, i: usize) -> &[u8] {
        let s = (self.size * self.size) as usize;
        &self.images[i * s..(i + 1) * s]
    }

    /// Build (or load from `path` when its key matches) the cache for `samples`.
    pub fn build_or_load(samples: &[Sample], cfg: &PreprocessConfig, decode_opts: DecodeOptions, path: &Path, threads: usize) -> Result<Self, DataError> {
        // The key names the preprocessing, the decode options and every file, in order.
        let mut listing = format!("{}|{:?}|", serde_json::to_string(cfg).unwrap_or_default(), decode_opts.tiff_u16);
        for s in samples {
            listing.push_str(&s.path.display().to_string());
            listing.push('\n');
        }
        let key = format!("{}:{:016x}", samples.len(), stable_hash(&listing, 0));
        if let Ok(c) = Self::load(path, &key) {
            return Ok(c);
        }
        let size = cfg.input_size;
        let per = (size * size) as usize;
        let n = samples.len();
        let mut images = vec![0u8; n * per];
        let mut errors: Vec<Option<String>> = vec![None; n];
        let threads = threads.max(1);
        let chunk = n.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for ((imgs, errs), samps) in images.chunks_mut(chunk * per).zip(errors.chunks_mut(chunk)).zip(samples.chunks(chunk)) {
                scope.spawn(move || {
                    for (j, s) in samps.iter().enumerate() {
                        let r = std::fs::read(&s.path)
                            .map_err(|e| e.to_string())
                            .and_then(|b| decode(&b, &decode_opts).map_err(|e| e.to_string()))
                            .and_then(|img| preprocess(&img, cfg, WindowChoice::Auto).map_err(|e| e.to_string()));
                        match r {
                            Ok(p) => imgs[j * per..(j + 1) * per].copy_from_slice(&p.seen),
                            Err(e) => errs[j] = Some(e),
                        }
                    }
                });
            }
        });
        let cache = Cache { size, images, errors };
        cache.save(path, &key)?;
        Ok(cache)
    }

    fn save(&self, path: &Path, key: &str) -> Result<(), DataError> {
        let io = |err| DataError::Io { path: path.display().to_string(), err };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let header = CacheHeader { version: 1, size: self.size, n: self.errors.len(), key: key.to_string(), errors: self.errors.clone() };
        let h = serde_json::to_vec(&header).unwrap_or_default();
        let mut f = std::fs::File::create(path).map_err(io)?;
        f.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
        f.write_all(&h).map_err(io)?;
        f.write_all(&self.images).map_err(io)?;
        Ok(())
    }

    fn load(path: &Path, key: &str) -> Result<Self, DataError> {
        let bad = |msg: &str| DataError::Cache { path: path.display().to_string(), msg: msg.into() };
        let mut f = std::fs::File::open(path).map_err(|err| DataError::Io { path: path.display().to_string(), err })?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(|_| bad("short"))?;
        let hl = u64::from_le_bytes(len) as usize;
        if hl > 64 << 20 {
            return Err(bad("header too large"));
        }
        let mut h = vec![0u8; hl];
        f.read_exact(&mut h).map_err(|_| bad("short header"))?;
        let header: CacheHeader = serde_json::from_slice(&h).map_err(|_| bad("bad header"))?;
        if header.key != key || header.version != 1 {
            return Err(bad("stale"));
        }
        let mut images = Vec::new();
        f.read_to_end(&mut images).map_err(|_| bad("short data"))?;
        if images.len() != header.n * (header.size * header.size) as usize {
            return Err(bad("size mismatch"));
        }
        Ok(Cache { size: header.size, images, errors: header.errors })
    }
}

/// Every file under `dir`, subfolders included, in name order.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), crate::LabError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(|e| crate::LabError::io(dir, e))?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn s(source: &str, label: &str, pid: Option<&str>, name: &str) -> Sample {
        let mut x = Sample {
            rel: format!("images/{source}/{label}/{name}"),
            path: PathBuf::from(name),
            label: label.into(),
            source: source.into(),
            patient_id: pid.map(String::from),
            subtype: String::new(),
            orig_name: name.into(),
            group: String::new(),
        };
        x.group = group_key(&x);
        x
    }

    #[test]
    fn neighbours_share_a_group_and_patients_never_straddle_folds() {
        let a = s("sarscov2-ct", "covid", None, "Covid (301).png");
        let b = s("sarscov2-ct", "covid", None, "Covid (302).png");
        assert_eq!(a.group, b.group);
        let mut samples = Vec::new();
        for p in 0..60 {
            for k in 0..3 {
                samples.push(s("ucsd", if p % 2 == 0 { "covid" } else { "noncovid" }, Some(&format!("P{p}")), &format!("{p}_{k}.png")));
            }
        }
        let folds = grouped_folds(&samples, 5, 7);
        let mut by_patient: HashMap<&str, usize> = HashMap::new();
        for (s, f) in samples.iter().zip(&folds) {
            assert_eq!(*by_patient.entry(s.group.as_str()).or_insert(*f), *f);
        }
        let counts: Vec<usize> = (0..5).map(|f| folds.iter().filter(|&&x| x == f).count()).collect();
        assert!(counts.iter().all(|&c| c == 36), "{counts:?}");
    }
}
