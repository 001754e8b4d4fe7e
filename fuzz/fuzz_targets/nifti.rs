//! The NIfTI volume reader: header parsing, limits, gzip and reorientation, then every slice
//! and both reformats cut from the volume. The first byte picks the framing: odd = the rest
//! is gzip-compressed first (so the fuzzer mutates the NIfTI bytes, not the deflate stream),
//! even = the rest as it is. Must return a volume or a typed error, never panic, and never
//! allocate beyond the limits.
#![no_main]

use std::io::Write;

use ctxr::decode::{DecodeOptions, Limits, decode, decode_volume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode % 2 == 1 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(rest);
        e.finish().unwrap_or_default()
    } else {
        rest.to_vec()
    };
    // Smaller budgets than the page's so the fuzzer's memory limit is not the first to trip.
    let opts = DecodeOptions { limits: Limits { max_file_bytes: 16 << 20, max_pixels: 1 << 20, max_voxels: 4 << 20 }, ..DecodeOptions::default() };
    assert!(decode(&bytes, &opts).is_err(), "a volume file never decodes as a single image");
    if let Ok(v) = decode_volume(&bytes, &opts) {
        assert_eq!(v.voxels.len(), v.columns as usize * v.rows as usize * v.slices as usize);
        assert_eq!(v.slice_z_mm.len(), v.slices as usize);
        for k in 0..v.slices {
            let s = v.axial(k).expect("every slice index is in range");
            assert!(s.pixels.iter().all(|p| p.is_finite()));
        }
        let _ = v.coronal(v.rows / 2);
        let _ = v.sagittal(v.columns / 2);
        assert!(v.axial(v.slices).is_none());
    }
});
