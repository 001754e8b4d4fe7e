//! DICOM series and volumes as CT studies: a generated folder with shuffled file names, two
//! series, a localiser, a missing slice, a tilted gantry, irregular spacing and a mirrored
//! storage order is stacked into the right volumes with each problem reported; the same volume
//! written as NIfTI decodes to the same voxels and slice positions; and the committed CT model
//! scores both as the same study (same lung-level slices, same scores).

use super::common;

use ctxr::decode::series::{SeriesBuilder, SeriesSet, StackProblem};
use ctxr::decode::{DecodeOptions, Intensity, Limits, Placement, decode, decode_volume};
use ctxr::infer::Classifier;
use ctxr::infer::study::{Stage, score_study};
use ctxr::model::{ModelId, device};
use ctxr_lab::corpus::{SeriesSlice, ct_series_slice, nifti_i16, phantom_hu};

const W: usize = 64;
const Z: usize = 12;
const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
/// Patient's right (low column), anterior (low row), slice 3: a marker that any flip moves.
const MARK: (usize, usize, usize) = (3, 10, 12);

/// The phantom study in radiological order `[slice][row][column]`, superior first: lungs on
/// slices 2..=9 only (soft tissue above and below), and the marker.
fn phantom() -> Vec<i16> {
    let mut v = Vec::with_capacity(W * W * Z);
    for k in 0..Z {
        for r in 0..W {
            for c in 0..W {
                let hu = phantom_hu(c, r);
                v.push(if (2..=9).contains(&k) || hu != -850 { hu } else { 40 });
            }
        }
    }
    v[MARK.0 * W * W + MARK.1 * W + MARK.2] = 1500;
    v
}

fn z_of(k: usize) -> f64 {
    100.0 - 2.5 * k as f64
}

/// One series' files as (name, bytes): slice `k` of the phantom at z(k), `mirror` storing the
/// columns right-to-left under a row direction of −x.
fn series(uid: &str, number: i32, slices: &[usize], mirror: bool, shift_y_per_mm: f64) -> Vec<(String, Vec<u8>)> {
    let vol = phantom();
    slices
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let mut hu: Vec<i16> = vol[k * W * W..(k + 1) * W * W].to_vec();
            let mut orientation = AXIAL;
            let mut x0 = -22.05;
            if mirror {
                for row in hu.chunks_exact_mut(W) {
                    row.reverse();
                }
                orientation[0] = -1.0;
                x0 = 22.05;
            }
            let z = z_of(k);
            let bytes = ct_series_slice(&SeriesSlice {
                study_uid: "1.2.826.0.1.3680043.10.1200.7",
                series_uid: uid,
                series_number: number,
                instance: i as i32 + 1,
                position: [x0, -22.05 + shift_y_per_mm * (100.0 - z), z],
                orientation,
                spacing: [0.7, 0.7],
                thickness: 2.5,
                image_type: "ORIGINAL\\PRIMARY\\AXIAL",
                width: W as u16,
                height: W as u16,
                hu: &hu,
            });
            // Names that sort in no anatomical order.
            (format!("{uid}-IM{:04}", (i * 7919 + 13) % 1009), bytes)
        })
        .collect()
}

fn stack(mut files: Vec<(String, Vec<u8>)>) -> SeriesSet {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut b = SeriesBuilder::new(Limits::default().max_voxels);
    for (name, bytes) in &files {
        b.add_file(name, bytes, &DecodeOptions::default());
    }
    b.finish()
}

#[test]
fn a_dicom_folder_stacks_into_series_with_problems_reported() {
    let all: Vec<usize> = (0..Z).collect();
    let mut files = series("1.2.3.1", 1, &all, false, 0.0);
    files.extend(series("1.2.3.2", 2, &all, true, 0.0));
    // A localiser in the first series.
    let loc = phantom();
    files.push((
        "scout".into(),
        ct_series_slice(&SeriesSlice {
            study_uid: "1.2.826.0.1.3680043.10.1200.7",
            series_uid: "1.2.3.1",
            series_number: 1,
            instance: 99,
            position: [-22.05, 0.0, 120.0],
            orientation: [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
            spacing: [0.7, 0.7],
            thickness: 1.0,
            image_type: "ORIGINAL\\PRIMARY\\LOCALIZER",
            width: W as u16,
            height: W as u16,
            hu: &loc[..W * W],
        }),
    ));
    let missing: Vec<usize> = all.iter().copied().filter(|&k| k != 6).collect();
    files.extend(series("1.2.3.3", 3, &missing, false, 0.0));
    files.extend(series("1.2.3.4", 4, &all, false, 0.27)); // tan 15° ≈ 0.268
    files.extend(series("1.2.3.5", 5, &[0, 1, 2, 4, 5, 6], false, 0.0));
    files.push(("notes.txt".into(), b"not an image at all\n".to_vec()));
    // A CD's index: named, never stacked.
    files.push(("DICOMDIR".into(), [vec![0u8; 128], b"DICM".to_vec()].concat()));
    let set = stack(files);

    let reasons: Vec<String> = set.set_aside.iter().map(|s| format!("{}: {}", s.file, s.reason)).collect();
    assert_eq!(set.set_aside.len(), 3, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("DICOMDIR: the folder's DICOMDIR index")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("scout: a localiser")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("notes.txt:")), "{reasons:?}");
    // Only the text file is "not DICOM" (a front end reads such files as single images).
    let not_dicom: Vec<&str> = set.set_aside.iter().filter(|s| s.not_dicom).map(|s| s.file.as_str()).collect();
    assert_eq!(not_dicom, ["notes.txt"]);
    assert_eq!(set.series.len(), 5, "five series");
    let by = |n: i64| set.series.iter().find(|s| s.series_number == Some(n)).expect("series");

    // Series 1: shuffled names, stacked superior first, voxels in radiological order.
    let s1 = by(1);
    assert!(s1.problems.is_empty(), "{:?}", s1.problems);
    let v = &s1.volume;
    assert_eq!((v.columns, v.rows, v.slices, v.placement, v.intensity), (W as u32, W as u32, Z as u32, Placement::Oriented, Intensity::Hounsfield));
    assert_eq!(v.voxels, phantom(), "series 1 voxels in radiological order");
    let zs: Vec<f32> = (0..Z).map(|k| z_of(k) as f32).collect();
    assert_eq!(v.slice_z_mm, zs);
    assert!((v.spacing_mm[0] - 0.7).abs() < 1e-6 && (v.spacing_mm[2] - 2.5).abs() < 1e-6, "{:?}", v.spacing_mm);
    // Series 2: stored mirrored under a row direction of −x: the same volume.
    assert_eq!(by(2).volume.voxels, phantom(), "a mirrored storage order is undone");
    // Series 3: slice 6 missing.
    assert_eq!(by(3).problems, vec![StackProblem::MissingSlices { after: 5, missing: 1, gap_mm: 5.0 }]);
    assert_eq!(by(3).volume.slices, Z as u32 - 1);
    // Series 4: gantry tilt of about 15°.
    match by(4).problems.as_slice() {
        [StackProblem::GantryTilt { degrees }] => assert!((degrees - 15.1).abs() < 0.5, "tilt {degrees}"),
        other => panic!("series 4: expected a gantry tilt, got {other:?}"),
    }
    // Series 5: 2.5 mm then one 5 mm gap (a missing slice) — and spacing otherwise regular.
    assert!(by(5).problems.iter().any(|p| matches!(p, StackProblem::MissingSlices { after: 2, missing: 1, .. })), "{:?}", by(5).problems);
}

#[test]
fn irregular_spacing_and_duplicates_are_reported() {
    let mut files = series("1.2.4.1", 1, &[0, 1, 2, 3, 4, 5, 6, 7], false, 0.0);
    // Move slice 4 by 1 mm: spacings 2.5, 3.5, 1.5 around it.
    let vol = phantom();
    files.retain(|(_, b)| decode(b, &DecodeOptions::default()).unwrap().dicom.unwrap().geometry.instance_number != Some(5));
    let odd = |z: f64, instance: i32| {
        ct_series_slice(&SeriesSlice {
            study_uid: "1.2.826.0.1.3680043.10.1200.7",
            series_uid: "1.2.4.1",
            series_number: 1,
            instance,
            position: [-22.05, -22.05, z],
            orientation: AXIAL,
            spacing: [0.7, 0.7],
            thickness: 2.5,
            image_type: "ORIGINAL\\PRIMARY\\AXIAL",
            width: W as u16,
            height: W as u16,
            hu: &vol[4 * W * W..5 * W * W],
        })
    };
    files.push(("moved".into(), odd(z_of(4) - 1.0, 5)));
    files.push(("again".into(), odd(z_of(0), 50)));
    let set = stack(files);
    let p = &set.series[0].problems;
    assert!(p.iter().any(|p| matches!(p, StackProblem::IrregularSpacing { .. })), "{p:?}");
    assert!(p.iter().any(|p| matches!(p, StackProblem::DuplicatePosition { .. })), "{p:?}");
    assert_eq!(set.series[0].volume.slices, 8, "the duplicate is left out");
}

#[test]
fn the_same_volume_as_nifti_and_as_dicom_is_the_same_study() {
    let all: Vec<usize> = (0..Z).collect();
    let set = stack(series("1.2.5.1", 1, &all, false, 0.0));
    let dicom = &set.series[0].volume;
    // NIfTI as DICOM converters write it: i along +x LPS (RAS −x), j along +y LPS (RAS −y),
    // k from inferior to superior.
    let vol = phantom();
    let mut stored = Vec::with_capacity(vol.len());
    for k in 0..Z {
        stored.extend_from_slice(&vol[(Z - 1 - k) * W * W..(Z - k) * W * W]);
    }
    let srow = [[-0.7, 0.0, 0.0, 22.05], [0.0, -0.7, 0.0, 22.05], [0.0, 0.0, 2.5, z_of(Z - 1)]];
    for gz in [false, true] {
        let bytes = nifti_i16([W as i64, W as i64, Z as i64], srow, &stored, gz);
        let nifti = decode_volume(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(nifti.voxels, dicom.voxels, "NIfTI (gzip {gz}) and DICOM give the same voxels");
        assert_eq!(nifti.slice_z_mm, dicom.slice_z_mm);
        assert_eq!(nifti.spacing_mm, dicom.spacing_mm);
    }
    let nifti = decode_volume(&nifti_i16([W as i64, W as i64, Z as i64], srow, &stored, true), &DecodeOptions::default()).unwrap();

    let manifest = common::committed_manifest();
    let entry = manifest.model(ModelId::Ct).unwrap().clone();
    let record = std::fs::read(common::weights_dir().join(&entry.record)).unwrap();
    let clf = Classifier::load(entry, &record, device::cpu()).unwrap();
    let mut calls = Vec::new();
    let a = pollster::block_on(score_study(&clf, dicom, 4, |p| calls.push((p.stage, p.done, p.total)))).unwrap();
    let b = pollster::block_on(score_study(&clf, &nifti, 16, |_| {})).unwrap();
    let levels = |s: &ctxr::infer::study::StudyScore| s.slices.iter().map(|r| r.lung_level).collect::<Vec<_>>();
    assert_eq!(levels(&a), (0..Z).map(|k| (2..=9).contains(&k)).collect::<Vec<_>>(), "lung-level slices are the ones with lungs: {:?}", a.slices);
    assert_eq!(levels(&a), levels(&b));
    assert_eq!(a.lung_range, Some([2, 9]));
    assert_eq!(calls, vec![(Stage::Measuring, 12, 12), (Stage::Classifying, 4, 8), (Stage::Finished, 8, 8)], "progress after each step");
    for (x, y) in a.slices.iter().zip(&b.slices) {
        assert_eq!(x.p_covid.is_some(), x.lung_level);
        if let (Some(p), Some(q)) = (x.p_covid, y.p_covid) {
            assert!((p - q).abs() < 0.02, "slice {}: {p} vs {q}", x.index);
        }
    }
    let (sa, sb) = (a.study_score.unwrap(), b.study_score.unwrap());
    assert!((sa - sb).abs() < 0.02 && (0.0..=1.0).contains(&sa), "study scores {sa} vs {sb}");
    assert_eq!(a.max_slice, a.study_score);
}

#[test]
fn ctxr_classify_scores_a_dicom_folder_and_a_nifti_file_as_studies() {
    let dir = std::env::temp_dir().join(format!("ctxr-test-studies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let folder = dir.join("export");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let all: Vec<usize> = (0..Z).collect();
    for (i, (name, bytes)) in series("1.2.6.1", 1, &all, false, 0.0).into_iter().chain(series("1.2.6.2", 2, &[0, 1, 2, 3, 5, 6, 7], true, 0.0)).enumerate() {
        // Some files in a subfolder, as on a hospital CD.
        let at = if i % 3 == 0 { folder.join("sub").join(name) } else { folder.join(name) };
        std::fs::write(at, bytes).unwrap();
    }
    std::fs::write(folder.join("README.txt"), b"exported by a viewer\n").unwrap();
    let vol = phantom();
    let mut stored = Vec::new();
    for k in 0..Z {
        stored.extend_from_slice(&vol[(Z - 1 - k) * W * W..(Z - k) * W * W]);
    }
    let nii = dir.join("study.nii.gz");
    std::fs::write(
        &nii,
        nifti_i16([W as i64, W as i64, Z as i64], [[-0.7, 0.0, 0.0, 22.05], [0.0, -0.7, 0.0, 22.05], [0.0, 0.0, 2.5, z_of(Z - 1)]], &stored, true),
    )
    .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctxr"))
        .arg("classify")
        .arg("--json")
        .arg("--weights")
        .arg(common::weights_dir())
        .arg(&folder)
        .arg(&nii)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let aside: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("set_aside").is_some()).collect();
    assert_eq!(aside.len(), 1, "README.txt is set aside: {stdout}");
    let studies: Vec<&serde_json::Value> = lines.iter().filter(|v| v["kind"] == "study").collect();
    assert_eq!(studies.len(), 3, "two series of the folder and the NIfTI file: {stdout}");
    for s in &studies {
        let slices = s["slices"].as_array().unwrap();
        assert_eq!(slices.len() as u64, s["volume"]["slices"].as_u64().unwrap(), "every slice listed");
        for r in slices {
            assert_eq!(r["p_covid"].is_null(), !r["lung_level"].as_bool().unwrap(), "{r}");
            assert!(r["z_mm"].is_number());
        }
        let score = s["study_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert_eq!(s["rule"], "max_slice");
    }
    let (s1, s2, nifti) = (studies[0], studies[1], studies[2]);
    assert_eq!(s1["series"]["series_number"], 1);
    assert_eq!(s2["series"]["problems"][0]["kind"], "missing_slices", "{}", s2["series"]);
    assert!(nifti["series"].is_null() && nifti["volume"]["format"] == "nifti");
    let p = |s: &serde_json::Value| s["slices"].as_array().unwrap().iter().map(|r| r["p_covid"].as_f64()).collect::<Vec<_>>();
    for (a, b) in p(s1).iter().zip(p(nifti)) {
        match (a, b) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 0.02),
            (None, None) => {}
            other => panic!("the folder and the NIfTI file classify different slices: {other:?}"),
        }
    }
    assert!((s1["study_score"].as_f64().unwrap() - nifti["study_score"].as_f64().unwrap()).abs() < 0.02);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_enhanced_multi_frame_ct_is_stacked_by_its_per_frame_positions() {
    let vol = phantom();
    let order = [5usize, 2, 7, 3, 4, 6]; // frames stored in no anatomical order
    let frames: Vec<&[i16]> = order.iter().map(|&k| &vol[k * W * W..(k + 1) * W * W]).collect();
    let positions: Vec<[f64; 3]> = order.iter().map(|&k| [-22.05, -22.05, z_of(k)]).collect();
    let bytes = ctxr_lab::corpus::ct_enhanced("1.2.7", "1.2.7.1", &positions, &frames, W as u16, W as u16);
    let mut b = SeriesBuilder::new(Limits::default().max_voxels);
    ctxr::decode::for_each_frame(&bytes, &DecodeOptions::default(), |img| b.add("enhanced.dcm", &img)).unwrap();
    let set = b.finish();
    assert!(set.set_aside.is_empty(), "{:?}", set.set_aside);
    assert_eq!(set.series.len(), 1);
    let s = &set.series[0];
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.volume.voxels, vol[2 * W * W..8 * W * W].to_vec(), "frames 2..=7 in anatomical order");
    assert_eq!(s.volume.slice_z_mm, (2..8).map(|k| z_of(k) as f32).collect::<Vec<_>>());
    assert_eq!(s.files.first().map(String::as_str), Some("enhanced.dcm#2"), "the superior-most slice is stored as frame 2");
    assert!((s.volume.spacing_mm[0] - 0.7).abs() < 1e-6 && s.slice_thickness_mm == Some(2.5));
}
