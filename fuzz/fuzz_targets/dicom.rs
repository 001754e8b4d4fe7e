//! DICOM parsing: the fuzzer's bytes become the data set of a Part 10 file (preamble, "DICM",
//! then the fuzzed meta group and body) or, by the first byte, a bare data set, so that
//! mutations explore the DICOM parser, pixel-data decoding and the rescale/window logic.
#![no_main]

use ctxr::decode::{DecodeOptions, Limits, decode_all_frames, dicom_stored_frame};
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
    let opts = DecodeOptions { limits: Limits { max_file_bytes: 16 << 20, max_pixels: 4 << 20 }, ..DecodeOptions::default() };
    if let Ok(frames) = decode_all_frames(&bytes, &opts) {
        for f in frames {
            assert_eq!(f.pixels.len(), f.width as usize * f.height as usize);
        }
    }
    let _ = dicom_stored_frame(&bytes, u32::from(mode >> 4), &opts);
});
