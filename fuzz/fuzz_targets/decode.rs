//! The decoder entry point as the page calls it: sniff → decode any format → preprocess
//! (with and without the CT lung crop). Must return a value or a typed error, never panic.
#![no_main]

use ctxr::decode::{DecodeOptions, Limits, decode_frame};
use ctxr::imaging::{PreprocessConfig, WindowChoice, preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Smaller budgets than the page's so the fuzzer's memory limit is not the first to trip.
    let opts = DecodeOptions { limits: Limits { max_file_bytes: 16 << 20, max_pixels: 4 << 20, max_voxels: 4 << 20 }, ..DecodeOptions::default() };
    let frame = data.first().map_or(0, |b| u32::from(b % 3));
    if let Ok(img) = decode_frame(data, frame, &opts) {
        assert_eq!(img.pixels.len(), img.width as usize * img.height as usize);
        for crop in [false, true] {
            let cfg = PreprocessConfig { crop_to_lungs: crop, ..PreprocessConfig::new(64) };
            if let Ok(p) = preprocess(&img, &cfg, WindowChoice::Auto) {
                assert!(p.input.iter().all(|v| v.is_finite()));
            }
        }
        let _ = preprocess(&img, &PreprocessConfig::new(32), WindowChoice::FromFile);
    }
});
