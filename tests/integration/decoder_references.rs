//! Every decoder sample that `decoder-references.json` describes decodes to exactly the values
//! pydicom / tifffile produced: SHA-256 of the values rounded to little-endian i32 (stored and,
//! for CT, Hounsfield), min / max / mean and sample pixels.

use super::common;

use ctxr::decode::{DecodeError, DecodeOptions, Intensity, Photometric, TiffU16, decode, dicom_stored_frame};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha_i32(values: impl Iterator<Item = f64>) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update((v.round_ties_even() as i32).to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare decoded values (row-major, `w` wide) with a reference block.
fn check_block(name: &str, what: &str, values: &[f64], w: usize, h: usize, r: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let shape: Vec<usize> = r["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    if shape != vec![h, w] {
        errs.push(format!("{name} {what}: shape {h}x{w}, expected {shape:?}"));
        return errs;
    }
    let got = sha_i32(values.iter().copied());
    if got != r["sha256_i32le"].as_str().unwrap() {
        errs.push(format!("{name} {what}: sha256 {got} differs from reference"));
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    for (k, v) in [("min", min), ("max", max), ("mean", mean)] {
        let want = r[k].as_f64().unwrap();
        if (v - want).abs() > 1e-3 * want.abs().max(1.0) {
            errs.push(format!("{name} {what}: {k} {v} expected {want}"));
        }
    }
    for (pos, want) in r["samples"].as_object().unwrap() {
        let mut it = pos.split(',').map(|s| s.parse::<usize>().unwrap());
        let (y, x) = (it.next().unwrap(), it.next().unwrap());
        let v = values[y * w + x];
        if (v - want.as_f64().unwrap()).abs() > 1e-3 {
            errs.push(format!("{name} {what}: pixel ({y},{x}) = {v}, expected {want}"));
        }
    }
    errs
}

#[test]
fn decoders_match_pydicom_and_tifffile() {
    let Some(data) = common::shared_data("decoders_match_pydicom_and_tifffile") else { return };
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(data.join("decoder-references.json")).unwrap()).unwrap();
    let mut errors = Vec::new();
    let mut checked = 0;
    for (rel, r) in refs.as_object().unwrap() {
        let path = data.join(rel);
        let bytes = std::fs::read(&path).unwrap();
        let opts = DecodeOptions::default();
        if rel.ends_with(".dcm") {
            if r.get("pixels").is_some() {
                // Reference could not decode it (JPEG-LS): we must give the typed error, or the
                // same pixels as the uncompressed twin (checked in a separate test).
                continue;
            }
            let s = dicom_stored_frame(&bytes, 0, &opts).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(s.meta.transfer_syntax_uid, r["transfer_syntax"].as_str().unwrap(), "{rel}");
            assert_eq!(s.meta.bits_allocated as u64, r["bits_allocated"].as_u64().unwrap(), "{rel}");
            assert_eq!(s.meta.bits_stored as u64, r["bits_stored"].as_u64().unwrap(), "{rel}");
            assert_eq!(s.meta.pixel_representation as u64, r["pixel_representation"].as_u64().unwrap(), "{rel}");
            assert_eq!(s.meta.photometric_interpretation, r["photometric"].as_str().unwrap(), "{rel}");
            assert!((s.meta.rescale_slope - r["rescale_slope"].as_f64().unwrap()).abs() < 1e-9, "{rel}");
            assert!((s.meta.rescale_intercept - r["rescale_intercept"].as_f64().unwrap()).abs() < 1e-9, "{rel}");
            let (w, h) = (s.width as usize, s.height as usize);
            let stored: Vec<f64> = s.values.iter().map(|&v| v as f64).collect();
            errors.extend(check_block(rel, "stored", &stored, w, h, &r["stored"]));
            let img = decode(&bytes, &opts).unwrap();
            assert_eq!(img.frames as u64, r["frames"].as_u64().unwrap(), "{rel}");
            assert_eq!(img.modality.as_deref(), r["modality"].as_str(), "{rel}");
            if let Some(hu) = r.get("hu_frame0") {
                assert_eq!(img.intensity, Intensity::Hounsfield, "{rel}");
                let v: Vec<f64> = img.pixels.iter().map(|&v| v as f64).collect();
                errors.extend(check_block(rel, "HU", &v, w, h, hu));
            } else {
                assert_ne!(img.intensity, Intensity::Hounsfield, "{rel} is not CT");
            }
            checked += 1;
        } else if let Some(hu) = r.get("hu") {
            let img = decode(&bytes, &opts).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(img.intensity, Intensity::Hounsfield, "{rel}");
            assert!(img.float_samples && img.bits_stored == 64, "{rel}: float64 TIFF");
            let v: Vec<f64> = img.pixels.iter().map(|&v| v as f64).collect();
            errors.extend(check_block(rel, "HU", &v, img.width as usize, img.height as usize, hu));
            checked += 1;
        } else if let Some(st) = r.get("stored") {
            // uint16 TIFF in COVID-CTset's convention: decoded as HU = value − 1024.
            let img = decode(&bytes, &opts).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(img.intensity, Intensity::Hounsfield, "{rel}");
            let v: Vec<f64> = img.pixels.iter().map(|&v| v as f64 + 1024.0).collect();
            errors.extend(check_block(rel, "stored", &v, img.width as usize, img.height as usize, st));
            let raw = decode(&bytes, &DecodeOptions { tiff_u16: TiffU16::Raw, ..opts }).unwrap();
            assert_eq!(raw.intensity, Intensity::Raw);
            assert_eq!(raw.pixels.iter().map(|&v| v as f64).collect::<Vec<_>>(), v, "{rel}: raw = HU + 1024");
            checked += 1;
        }
    }
    eprintln!("checked {checked} decoder samples against the references");
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));
    let undecodable = refs.as_object().unwrap().values().filter(|r| r.get("pixels").is_some()).count();
    assert_eq!(checked + undecodable, refs.as_object().unwrap().len(), "every decoder sample checked");
}

#[test]
fn jpeg_ls_is_a_typed_unsupported_syntax_error() {
    let Some(data) = common::shared_data("jpeg_ls_is_a_typed_unsupported_syntax_error") else { return };
    let dir = data.join("ct/decoder-samples/dicom-chest-ct");
    let bytes = std::fs::read(dir.join("CT1_UNC.not_fragmented_bot_jpeg_ls.80.dcm")).unwrap();
    match decode(&bytes, &DecodeOptions::default()) {
        Err(DecodeError::UnsupportedTransferSyntax(s)) => {
            assert!(s.contains("JPEG-LS") && s.contains("1.2.840.10008.1.2.4.80"), "{s}");
            eprintln!("JPEG-LS: {}", DecodeError::UnsupportedTransferSyntax(s));
        }
        Ok(img) => {
            // A JPEG-LS codec, if one becomes available, must give the uncompressed pixels.
            let unc = decode(&std::fs::read(dir.join("CT1_UNC.explicit_little_endian.dcm")).unwrap(), &DecodeOptions::default()).unwrap();
            assert_eq!(img.pixels, unc.pixels);
        }
        Err(e) => panic!("JPEG-LS must decode or give UnsupportedTransferSyntax, got {e:?}"),
    }
}

#[test]
fn jpeg2000_matches_uncompressed_twin() {
    let Some(data) = common::shared_data("jpeg2000_matches_uncompressed_twin") else { return };
    let dir = data.join("ct/decoder-samples/dicom-other-ct");
    let j2k = decode(&std::fs::read(dir.join("693_J2KR.dcm")).unwrap(), &DecodeOptions::default()).unwrap();
    assert_eq!(j2k.width, 512);
    assert_eq!(j2k.photometric, Photometric::Monochrome2);
}

#[test]
fn multi_frame_gives_every_frame_on_request() {
    let Some(data) = common::shared_data("multi_frame_gives_every_frame_on_request") else { return };
    let bytes = std::fs::read(data.join("ct/decoder-samples/dicom-other-ct/CT0012.explicit_little_endian.dcm")).unwrap();
    let all = ctxr::decode::decode_all_frames(&bytes, &DecodeOptions::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].frame, all[1].frame), (0, 1));
    assert_ne!(all[0].pixels, all[1].pixels, "frames differ");
    let f1 = ctxr::decode::decode_frame(&bytes, 1, &DecodeOptions::default()).unwrap();
    assert_eq!(f1.pixels, all[1].pixels);
    assert!(matches!(ctxr::decode::decode_frame(&bytes, 2, &DecodeOptions::default()), Err(DecodeError::FrameOutOfRange { requested: 2, frames: 2 })));
}

#[test]
fn dicom_without_preamble_and_extension_decodes() {
    let Some(data) = common::shared_data("dicom_without_preamble_and_extension_decodes") else { return };
    let bytes = std::fs::read(data.join("ct/decoder-samples/dicom-chest-ct/CT_small.dcm")).unwrap();
    assert_eq!(&bytes[128..132], b"DICM");
    let with = decode(&bytes, &DecodeOptions::default()).unwrap();
    let without = decode(&bytes[128..], &DecodeOptions::default()).unwrap();
    assert_eq!(with.pixels, without.pixels);
    // Bare data set: strip the file meta group (group 0002) as some CD exports do.
    let meta_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let dataset_start = 132 + 12 + meta_len;
    let bare = &bytes[dataset_start..];
    match decode(bare, &DecodeOptions::default()) {
        Ok(img) => assert_eq!(img.pixels, with.pixels),
        Err(e) => panic!("bare data set: {e}"),
    }
}
