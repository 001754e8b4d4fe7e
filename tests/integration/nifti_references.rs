//! The NIfTI reader agrees with nibabel on the reference volumes in `tests/nifti` (written and
//! read by nibabel, see `make_references.py`): NIfTI-1 and -2, `.nii` and `.nii.gz`, int16,
//! float32 and uint8, little- and big-endian, sform and qform, RAS/LAS/LPS storage, coronal
//! storage with a small obliquity, and a 4-D file. Compared: the values in radiological axial
//! order (SHA-256 of the values rounded to int32, or within the quantisation step for
//! fractional floats), min/max/mean, voxel size, each slice's world z, and where a marked voxel
//! in the patient's right-anterior-superior part lands.

use super::common;

use ctxr::decode::{DecodeOptions, Intensity, Placement, decode_volume};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn nifti_volumes_match_nibabel() {
    let dir = common::repo_root().join("tests/nifti");
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("references.json")).expect("tests/nifti/references.json is committed")).unwrap();
    let vols = refs["volumes"].as_array().unwrap();
    assert!(vols.len() >= 6, "reference volumes: {}", vols.len());
    let mut versions = std::collections::BTreeSet::new();
    for r in vols {
        let name = r["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let v = decode_volume(&bytes, &DecodeOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        versions.insert((r["nifti_version"].as_u64().unwrap(), name.ends_with(".gz")));
        let dims = |k: &str| r[k].as_u64().unwrap() as u32;
        assert_eq!((v.columns, v.rows, v.slices), (dims("columns"), dims("rows"), dims("slices")), "{name}: size");
        assert_eq!(v.placement, Placement::Oriented, "{name}");
        assert_eq!(v.intensity == Intensity::Hounsfield, r["hounsfield"].as_bool().unwrap(), "{name}: intensity {:?}", v.intensity);
        for (got, want) in v.spacing_mm.iter().zip(r["spacing_mm"].as_array().unwrap()) {
            assert!((*got as f64 - want.as_f64().unwrap()).abs() < 1e-4, "{name}: spacing {:?} vs {}", v.spacing_mm, r["spacing_mm"]);
        }
        let zs = r["slice_z_mm"].as_array().unwrap();
        assert_eq!(v.slice_z_mm.len(), zs.len(), "{name}");
        for (got, want) in v.slice_z_mm.iter().zip(zs) {
            assert!((*got as f64 - want.as_f64().unwrap()).abs() < 1e-3, "{name}: slice z {:?} vs {zs:?}", v.slice_z_mm);
        }
        // The values, slice by slice through the public 2-D path.
        let mut values = Vec::with_capacity(v.voxels.len());
        for k in 0..v.slices {
            let s = v.axial(k).unwrap();
            assert_eq!((s.width, s.height, s.frame, s.frames), (v.columns, v.rows, k, v.slices), "{name}");
            values.extend(s.pixels.iter().map(|&p| p as f64));
        }
        let exact = r["exact"].as_bool().unwrap();
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let tol = if exact { 1e-3 } else { (r["max"].as_f64().unwrap() - r["min"].as_f64().unwrap()) / 65535.0 };
        for (k, got) in [("min", lo), ("max", hi), ("mean", mean)] {
            let want = r[k].as_f64().unwrap();
            assert!((got - want).abs() <= tol, "{name}: {k} {got} vs nibabel {want} (tolerance {tol})");
        }
        if exact {
            let mut h = Sha256::new();
            for x in &values {
                h.update((x.round_ties_even() as i32).to_le_bytes());
            }
            let sha: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(sha, r["sha256_i32le"].as_str().unwrap(), "{name}: values differ from nibabel's");
        }
        let at = values.iter().position(|&x| x == hi).unwrap();
        let n = (v.columns * v.rows) as usize;
        let marker = [at / n, (at % n) / v.columns as usize, at % v.columns as usize];
        let want: Vec<usize> = r["marker"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(marker.to_vec(), want, "{name}: the marked voxel [slice, row, column]");
        eprintln!("  ok {name}: {}×{}×{} {}, marker at {marker:?}", v.columns, v.rows, v.slices, v.source);
    }
    let all: Vec<_> = [(1, false), (1, true), (2, false), (2, true)].into_iter().filter(|c| versions.contains(c)).collect();
    assert_eq!(all.len(), 4, "NIfTI-1 and -2, plain and gzip, are all covered: {versions:?}");
}
