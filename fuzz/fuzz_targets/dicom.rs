//! DICOM parsing: the fuzzer's bytes become the data set of a Part 10 file (preamble, "DICM",
//! then the fuzzed meta group and body) or, by the first byte, a bare data set, so that
//! mutations explore the DICOM parser, pixel-data decoding and the rescale/window logic, and
//! (frame by frame, twice, as two files of one folder) the stacking of series into volumes.
#![no_main]

use ctxr::decode::series::SeriesBuilder;
use ctxr::decode::{DecodeOptions, Limits, decode_all_frames, dicom_stored_frame, for_each_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes: Vec<u8> = if mode % 2 == 0 {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        b.extend_from_slice(rest);
        b
    } else {
        rest.to_vec()
    };
    let opts = DecodeOptions { limits: Limits { max_file_bytes: 16 << 20, max_pixels: 4 << 20, max_voxels: 4 << 20 }, ..DecodeOptions::default() };
    if let Ok(frames) = decode_all_frames(&bytes, &opts) {
        for f in frames {
            assert_eq!(f.pixels.len(), f.width as usize * f.height as usize);
        }
    }
    let _ = dicom_stored_frame(&bytes, u32::from(mode >> 4), &opts);
    let mut series = SeriesBuilder::new(opts.limits.max_voxels);
    for name in ["a", "b"] {
        if let Err(e) = for_each_frame(&bytes, &opts, |img| series.add(name, &img)) {
            series.set_aside(name, e.to_string());
        }
    }
    for s in series.finish().series {
        let v = &s.volume;
        assert_eq!(v.voxels.len(), v.columns as usize * v.rows as usize * v.slices as usize);
        assert_eq!(v.slice_z_mm.len(), v.slices as usize);
    }
});
