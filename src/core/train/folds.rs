//! Folds: patient-grouped, stratified k-fold assignment, the one rule that splits every data
//! set into folds — the lab's training pools and a user's labelled set in the page alike — so
//! that no patient is ever on both sides of a split.

use std::collections::{BTreeMap, HashMap};

/// Stable, seedable 64-bit FNV-1a string hash, used wherever ids must be split deterministically
/// (folds, held-out patients, calibration halves, cache keys): the same on every platform.
pub fn stable_hash(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Assign each item a fold in `0..k` such that a group (`groups[i]`, a patient) never
/// straddles folds and each stratum (`strata[i]`, e.g. source and label) is spread evenly:
/// groups of a stratum are ordered by `stable_hash(group, seed)` and dealt to the fold with the
/// fewest images of that stratum (ties: fewest overall), strata in name order. The stratum of
/// a group is that of its first item.
pub fn grouped_folds(groups: &[&str], strata: &[&str], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut group_stratum: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for (g, s) in groups.iter().zip(strata) {
        group_stratum.entry(g).or_insert(s);
        *sizes.entry(g).or_default() += 1;
    }
    let mut by_stratum: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (g, s) in &group_stratum {
        by_stratum.entry(s).or_default().push(g);
    }
    let mut fold_of: HashMap<&str, usize> = HashMap::new();
    let mut fill = vec![0usize; k];
    for members in by_stratum.values_mut() {
        members.sort_by_key(|g| stable_hash(g, seed));
        let mut local = vec![0usize; k];
        for g in members.iter() {
            let f = (0..k).min_by_key(|&f| (local[f], fill[f])).unwrap_or(0);
            let n = sizes.get(g).copied().unwrap_or(1);
            local[f] += n;
            fill[f] += n;
            fold_of.insert(g, f);
        }
    }
    groups.iter().map(|g| fold_of.get(g).copied().unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_never_straddles_folds_and_each_label_is_spread() {
        // 30 patients of 1–4 slices, two labels.
        let mut groups = Vec::new();
        let mut strata = Vec::new();
        for p in 0..30 {
            for _ in 0..(1 + p % 4) {
                groups.push(format!("p{p}"));
                strata.push(if p % 3 == 0 { "covid" } else { "noncovid" });
            }
        }
        let g: Vec<&str> = groups.iter().map(String::as_str).collect();
        let f = grouped_folds(&g, &strata, 5, 3);
        for (i, gi) in g.iter().enumerate() {
            for (j, gj) in g.iter().enumerate() {
                if gi == gj {
                    assert_eq!(f[i], f[j], "{gi} split");
                }
            }
        }
        for label in ["covid", "noncovid"] {
            let per: Vec<usize> = (0..5).map(|k| (0..g.len()).filter(|&i| f[i] == k && strata[i] == label).count()).collect();
            assert!(per.iter().all(|&n| n > 0), "{label}: {per:?}");
        }
        assert_eq!(grouped_folds(&g, &strata, 5, 3), f, "deterministic");
        assert_ne!(grouped_folds(&g, &strata, 5, 4), f, "the seed matters");
    }
}
