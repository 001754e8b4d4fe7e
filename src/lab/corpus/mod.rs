//! The hostile and odd input corpus, generated (never copied from `../shared`): every file a
//! person might drop on the page that is broken, lying, huge or merely unusual, each with the
//! outcome it must have. `ctxr corpus --out tests/corpus` writes the files and `expected.json`
//! in a build step of its own; the native tests generate the same cases in memory and the
//! browser test reads the written corpus.

use std::path::Path;

use ctxr::decode::{Intensity, MedImage, Photometric, Volume};

mod writers;

use writers::*;

/// What decoding a corpus file must give.
pub enum Expect {
    /// A typed error of this kind (`DecodeError::kind`).
    Error(&'static str),
    /// An image of this size whose properties `check` verifies.
    Image { width: u32, height: u32, check: Check },
    /// A volume (read with `decode_volume`) of this size whose properties `check` verifies.
    /// The 2-D path answers `is_volume` for it.
    Volume { columns: u32, rows: u32, slices: u32, check: VolumeCheck },
}

pub type Check = fn(&MedImage) -> Result<(), String>;
pub type VolumeCheck = fn(&Volume) -> Result<(), String>;

pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// What the case is about, in words (printed and written to expected.json).
    pub about: &'static str,
}

const N: u32 = 64;

/// Hounsfield units of a chest-like phantom: air outside, soft tissue body, two lungs.
pub fn phantom_hu(x: usize, y: usize) -> i16 {
    let (fx, fy) = (x as f32 - 32.0, y as f32 - 32.0);
    let inside = |cx: f32, rx: f32, ry: f32| ((fx - cx) / rx).powi(2) + (fy / ry).powi(2) <= 1.0;
    if inside(-10.0, 7.0, 12.0) || inside(10.0, 7.0, 12.0) {
        -850
    } else if inside(0.0, 28.0, 20.0) {
        40
    } else {
        -1000
    }
}

fn phantom_u8(x: usize, y: usize) -> u16 {
    ((phantom_hu(x, y) as i32 + 1000) * 255 / 1040) as u16
}

fn ok(c: bool, what: &str) -> Result<(), String> {
    if c { Ok(()) } else { Err(what.to_string()) }
}

fn no_check(_: &MedImage) -> Result<(), String> {
    Ok(())
}

fn distinct(img: &MedImage) -> usize {
    let mut v: Vec<i64> = img.pixels.iter().map(|&p| (p * 16.0) as i64).collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}

fn at(img: &MedImage, x: u32, y: u32) -> f32 {
    img.pixels.get((y * img.width + x) as usize).copied().unwrap_or(f32::NAN)
}

/// 16-bit stored CT pixels of the phantom (`stored = (HU − intercept) / slope`), in `be` order.
fn ct_pixels(frames: u32, be: bool, f: &dyn Fn(usize, usize, u32) -> u16) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..frames {
        for y in 0..N as usize {
            for x in 0..N as usize {
                let v = f(x, y, k);
                out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
            }
        }
    }
    out
}

fn signed_phantom(be: bool) -> Vec<u8> {
    ct_pixels(1, be, &|x, y, _| phantom_hu(x, y) as u16)
}

fn ct_dicom(ts: &str, photometric: &str, slope: &str, intercept: &str, extra: Vec<El>) -> Vec<u8> {
    let be = ts == EXPLICIT_BE;
    let mut els = ct_elements(N as u16, N as u16, 1, photometric, true, slope, intercept, be, Some(signed_phantom(be)));
    els.extend(extra);
    dicom_file(ts, &els)
}

fn check_phantom_hu(img: &MedImage) -> Result<(), String> {
    ok(img.intensity == Intensity::Hounsfield, "Hounsfield units")?;
    ok(at(img, 0, 0) == -1000.0 && at(img, 22, 32) == -850.0 && at(img, 32, 32) == 40.0, "phantom HU values at (0,0), (22,32), (32,32)")
}

fn truncations(out: &mut Vec<Case>, stem: &str, bytes: &[u8], cuts: &[(usize, &'static str)], about: &'static str) {
    for &(cut, kind) in cuts {
        out.push(Case { name: format!("{stem}-truncated-{cut}"), bytes: bytes[..cut.min(bytes.len())].to_vec(), expect: Expect::Error(kind), about });
    }
}

fn jpeg(w: u32, h: u32, grey: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    if grey {
        let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([phantom_u8(x as usize % 64, y as usize % 64) as u8]));
        img.write_with_encoder(enc).expect("jpeg encodes");
    } else {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = phantom_u8(x as usize % 64, y as usize % 64) as u8;
            image::Rgb([v, v / 2, 255 - v])
        });
        img.write_with_encoder(enc).expect("jpeg encodes");
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(n: usize, mut s: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// Makes one group of cases.
pub type Generator = fn() -> Vec<Case>;

/// The corpus in named groups, each generated on demand (a failing case is reported with its
/// group and file, and a test of one group builds only that group).
pub const GROUPS: [(&str, Generator); 7] = [
    ("not_images", not_images_cases),
    ("png", png_cases),
    ("jpeg", jpeg_cases),
    ("tiff", tiff_cases),
    ("dicom", dicom_cases),
    ("bmp", bmp_cases),
    ("nifti", nifti_cases),
];

/// Every case of the corpus.
pub fn cases() -> Vec<Case> {
    GROUPS.iter().flat_map(|(_, make)| make()).collect()
}

/// Files that are not images at all.
fn not_images_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let mut push = |name: &str, bytes: Vec<u8>, expect: Expect, about: &'static str| c.push(Case { name: name.into(), bytes, expect, about });
    push("empty.bin", Vec::new(), Expect::Error("empty"), "zero bytes");
    push("random.bin", noise(4096, 0x9E37_79B9_7F4A_7C15), Expect::Error("unknown_format"), "random bytes");
    push("notes.txt", b"Patient notes: chest CT, see attached.\nNo image here.\n".repeat(20), Expect::Error("text"), "a text file");
    push("page.html", b"<!DOCTYPE html><html><body><img src=x.png></body></html>\n".to_vec(), Expect::Error("text"), "an HTML page");
    push("report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec(), Expect::Error("not_an_image"), "a PDF header");
    push("archive.zip", b"PK\x03\x04\x14\x00\x00\x00\x08\x00".iter().copied().chain(noise(200, 7)).collect(), Expect::Error("not_an_image"), "a ZIP archive");
    c
}

/// PNG: bit depths, colour types, interlacing, bombs, corruption.
fn png_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let mut push = |name: &str, bytes: Vec<u8>, expect: Expect, about: &'static str| c.push(Case { name: name.into(), bytes, expect, about });
    let grey8 = |x: usize, y: usize| vec![phantom_u8(x, y)];
    let png8 = png(N, N, 8, GREY, false, None, &grey8);
    push(
        "grey8.png",
        png8.clone(),
        Expect::Image { width: N, height: N, check: |i| ok(i.bits_stored == 8 && distinct(i) == 3, "8-bit, three grey levels") },
        "8-bit grey PNG",
    );
    push(
        "grey8-interlaced.png",
        png(N, N, 8, GREY, true, None, &grey8),
        Expect::Image {
            width: N,
            height: N,
            check: |i| {
                ok(
                    at(i, 32, 32) == phantom_u8(32, 32) as f32 && at(i, 22, 32) == phantom_u8(22, 32) as f32 && at(i, 63, 63) == phantom_u8(63, 63) as f32,
                    "Adam7 pixels land where they belong",
                )
            },
        },
        "Adam7-interlaced PNG",
    );
    push(
        "grey1.png",
        png(N, N, 1, GREY, false, None, &|x, y| vec![u16::from(phantom_hu(x, y) > -900)]),
        Expect::Image { width: N, height: N, check: |i| ok(distinct(i) == 2 && at(i, 32, 32) > at(i, 0, 0), "two levels, body bright") },
        "1-bit PNG",
    );
    push(
        "palette.png",
        png(N, N, 8, PALETTE, false, Some(&[[0, 0, 0], [90, 90, 90], [200, 200, 200]]), &|x, y| {
            vec![match phantom_hu(x, y) {
                -1000 => 0,
                -850 => 1,
                _ => 2,
            }]
        }),
        Expect::Image {
            width: N,
            height: N,
            check: |i| ok(at(i, 32, 32) > at(i, 22, 32) && at(i, 22, 32) > at(i, 0, 0), "palette expanded to its grey levels"),
        },
        "palette (indexed) PNG",
    );
    push(
        "grey16.png",
        png(N, N, 16, GREY, false, None, &|x, y| vec![(phantom_hu(x, y) as i32 + 1024) as u16 * 16]),
        Expect::Image { width: N, height: N, check: |i| ok(i.bits_stored == 16 && at(i, 32, 32) == 1064.0 * 16.0, "16-bit values kept at full depth") },
        "16-bit grey PNG",
    );
    push(
        "rgba.png",
        png(N, N, 8, RGBA, false, None, &|x, y| {
            let v = phantom_u8(x, y);
            vec![v, v, v, if x < 8 { 0 } else { 255 }]
        }),
        Expect::Image { width: N, height: N, check: |i| ok(at(i, 2, 32) == 0.0 && at(i, 32, 32) > 100.0, "transparent pixels composited over black") },
        "RGBA PNG with a transparent strip",
    );
    push(
        "bomb-30000.png",
        png_from_idat(30000, 30000, 8, GREY, false, None, &zlib_stored(&[0; 1024])),
        Expect::Error("too_many_pixels"),
        "PNG header claiming 30000×30000 (decompression bomb)",
    );
    push(
        "bomb-wide.png",
        png_from_idat(1 << 24, 16, 8, GREY, false, None, &zlib_stored(&[0; 1024])),
        Expect::Error("too_many_pixels"),
        "PNG header claiming 16777216×16",
    );
    push(
        "short-idat.png",
        png_from_idat(N, N, 8, GREY, false, None, &zlib_stored(&[0; 100])),
        Expect::Error("malformed"),
        "PNG whose data stops after 100 bytes",
    );
    let mut bad_crc = png8.clone();
    if let Some(b) = bad_crc.get_mut(20) {
        *b ^= 0x40;
    }
    push("bad-crc.png", bad_crc, Expect::Error("malformed"), "PNG with a corrupted header checksum");
    truncations(
        &mut c,
        "grey8.png",
        &png8,
        &[(8, "malformed"), (30, "malformed"), (png8.len() / 2, "malformed"), (png8.len() - 12, "malformed")],
        "PNG cut short",
    );
    c
}

/// JPEG: grey, colour, truncation.
fn jpeg_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let jpg = jpeg(N, N, true);
    c.push(Case { name: "grey.jpg".into(), bytes: jpg.clone(), expect: Expect::Image { width: N, height: N, check: no_check }, about: "baseline grey JPEG" });
    c.push(Case {
        name: "colour.jpg".into(),
        bytes: jpeg(80, 48, false),
        expect: Expect::Image {
            width: 80,
            height: 48,
            check: |i| ok(i.photometric == Photometric::Rgb && i.colourfulness > 10.0, "colour converted to luminance, colourfulness measured"),
        },
        about: "colour JPEG",
    });
    truncations(&mut c, "grey.jpg", &jpg, &[(2, "malformed"), (20, "malformed"), (jpg.len() / 2, "malformed"), (jpg.len() - 2, "malformed")], "JPEG cut short");
    c
}

/// TIFF: byte orders, sample formats, photometrics, bombs.
fn tiff_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let t8: Vec<u8> = (0..N as usize * N as usize).map(|i| phantom_u8(i % 64, i / 64) as u8).collect();
    let tif8 = tiff(false, tiff_tags(N, N, 8, 1, 1, 1), &t8);
    c.push(Case {
        name: "grey8.tif".into(),
        bytes: tif8.clone(),
        expect: Expect::Image { width: N, height: N, check: |i| ok(at(i, 32, 32) == phantom_u8(32, 32) as f32, "8-bit values") },
        about: "8-bit TIFF",
    });
    let t16: Vec<u8> = (0..N as usize * N as usize).flat_map(|i| ((phantom_hu(i % 64, i / 64) as i32 + 1024) as u16).to_be_bytes()).collect();
    c.push(Case {
        name: "u16-bigendian.tif".into(),
        bytes: tiff(true, tiff_tags(N, N, 16, 1, 1, 1), &t16),
        expect: Expect::Image { width: N, height: N, check: check_phantom_hu },
        about: "big-endian 16-bit TIFF (COVID-CTset's HU + 1024)",
    });
    let mut tf: Vec<u8> = Vec::new();
    for i in 0..(N * N) as usize {
        let v = match i {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            _ => f32::from(phantom_hu(i % 64, i / 64)),
        };
        tf.extend_from_slice(&v.to_le_bytes());
    }
    c.push(Case {
        name: "float-nan-inf.tif".into(),
        bytes: tiff(false, tiff_tags(N, N, 32, 1, 1, 3), &tf),
        expect: Expect::Image {
            width: N,
            height: N,
            check: |i| ok(i.float_samples && i.replaced_non_finite == 3 && i.pixels.iter().all(|v| v.is_finite()), "NaN/±Inf replaced and counted"),
        },
        about: "float32 TIFF with NaN and ±Inf",
    });
    c.push(Case {
        name: "float-all-nan.tif".into(),
        bytes: tiff(false, tiff_tags(N, N, 32, 1, 1, 3), &f32::NAN.to_le_bytes().repeat((N * N) as usize)),
        expect: Expect::Error("no_finite_values"),
        about: "float32 TIFF of NaN only",
    });
    c.push(Case {
        name: "white-is-zero.tif".into(),
        bytes: tiff(false, tiff_tags(N, N, 8, 1, 0, 1), &t8),
        expect: Expect::Image {
            width: N,
            height: N,
            check: |i| ok(i.photometric == Photometric::Monochrome1, "WhiteIsZero read as MONOCHROME1 (inverted after windowing)"),
        },
        about: "TIFF WhiteIsZero",
    });
    let cmyk: Vec<u8> = (0..(N * N) as usize)
        .flat_map(|i| {
            let k = 255 - phantom_u8(i % 64, i / 64) as u8;
            [0, 0, 0, k]
        })
        .collect();
    let mut cmyk_tags = tiff_tags(N, N, 8, 4, 5, 1);
    cmyk_tags.push(Tag(332, 3, vec![1]));
    c.push(Case {
        name: "cmyk.tif".into(),
        bytes: tiff(false, cmyk_tags, &cmyk),
        expect: Expect::Image {
            width: N,
            height: N,
            check: |i| ok(at(i, 32, 32) > at(i, 22, 32) && at(i, 22, 32) > at(i, 0, 0), "CMYK converted: body brighter than lungs brighter than air"),
        },
        about: "CMYK TIFF",
    });
    c.push(Case {
        name: "bomb-100000.tif".into(),
        bytes: tiff(false, tiff_tags(100_000, 100_000, 8, 1, 1, 1), &t8),
        expect: Expect::Error("too_many_pixels"),
        about: "TIFF header claiming 100000×100000",
    });
    c.push(Case {
        name: "short-strip.tif".into(),
        bytes: tiff(false, tiff_tags(N, N, 8, 1, 1, 1), &t8[..500]),
        expect: Expect::Error("malformed"),
        about: "TIFF strip shorter than the image",
    });
    truncations(&mut c, "grey8.tif", &tif8, &[(4, "malformed"), (60, "malformed"), (tif8.len() - 1000, "malformed")], "TIFF cut short");
    c
}

/// DICOM: transfer syntaxes, rescale, LUTs, frames, lying lengths, codecs.
fn dicom_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let dcm = ct_dicom(EXPLICIT_LE, "MONOCHROME2", "1", "0", vec![]);
    c.push(Case {
        name: "ct-explicit-le.dcm".into(),
        bytes: dcm.clone(),
        expect: Expect::Image { width: N, height: N, check: check_phantom_hu },
        about: "CT, explicit VR little endian",
    });
    c.push(Case {
        name: "ct-implicit-le".into(),
        bytes: ct_dicom(IMPLICIT_LE, "MONOCHROME2", "1", "0", vec![]),
        expect: Expect::Image { width: N, height: N, check: check_phantom_hu },
        about: "CT, implicit VR, no extension",
    });
    c.push(Case {
        name: "ct-explicit-be.dcm".into(),
        bytes: ct_dicom(EXPLICIT_BE, "MONOCHROME2", "1", "0", vec![]),
        expect: Expect::Image { width: N, height: N, check: check_phantom_hu },
        about: "CT, explicit VR big endian (retired, still on old CDs)",
    });
    let raw_set = encode(&ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, Some(signed_phantom(false))), false, false);
    c.push(Case {
        name: "ct-no-preamble".into(),
        bytes: raw_set,
        expect: Expect::Image { width: N, height: N, check: check_phantom_hu },
        about: "bare implicit-VR data set: no preamble, no DICM, no meta",
    });
    // Stored = 2·(HU + 1024) + 1 with slope 0.5, intercept −1024.5: HU comes back exactly only in floating point.
    let half = ct_pixels(1, false, &|x, y, _| (2 * (phantom_hu(x, y) as i32 + 1024) + 1) as u16);
    let mut els = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", false, "0.5", "-1024.5", false, Some(half));
    els.push(text(0x0028, 0x1050, "DS", "-600"));
    els.push(text(0x0028, 0x1051, "DS", "1500"));
    c.push(Case {
        name: "ct-slope-half.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &els),
        expect: Expect::Image {
            width: N,
            height: N,
            check: |i| {
                check_phantom_hu(i)?;
                ok(i.windows.first().is_some_and(|w| w.center == -600.0 && w.width == 1500.0), "window from the file")
            },
        },
        about: "rescale slope 0.5, intercept −1024.5, unsigned",
    });
    let mut cr = ct_elements(
        N as u16,
        N as u16,
        1,
        "MONOCHROME1",
        false,
        "1",
        "0",
        false,
        Some(ct_pixels(1, false, &|x, y, _| 4000 - (phantom_hu(x, y) as i32 + 1024) as u16)),
    );
    cr.retain(|e| (e.group, e.elem) != (0x0008, 0x0060) && (e.group, e.elem) != (0x0028, 0x1052) && (e.group, e.elem) != (0x0028, 0x1053));
    cr.push(text(0x0008, 0x0060, "CS", "CR"));
    c.push(Case {
        name: "cr-monochrome1.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &cr),
        expect: Expect::Image {
            width: N,
            height: N,
            check: |i| {
                ok(i.photometric == Photometric::Monochrome1 && i.intensity != Intensity::Hounsfield, "MONOCHROME1 radiograph")?;
                let p =
                    ctxr::imaging::preprocess(i, &ctxr::imaging::PreprocessConfig::new(64), ctxr::imaging::WindowChoice::Auto).map_err(|e| e.to_string())?;
                // Low stored values are bright in MONOCHROME1: the body (low) must come out brighter than air.
                ok(p.seen.get(32 * 64 + 32) > p.seen.get(64 + 1), "inverted after windowing: body bright, air dark")
            },
        },
        about: "MONOCHROME1 radiograph",
    });
    let item = sequence_item(&encode(
        &[
            us(0x0028, 0x3002, 4, false),
            text(0x0028, 0x3003, "LO", "NORMAL"),
            el(0x0028, 0x3006, "OW", [0u16, 100, 200, 4095].iter().flat_map(|v| v.to_le_bytes()).collect()),
        ],
        true,
        false,
    ));
    c.push(Case {
        name: "ct-voi-lut.dcm".into(),
        bytes: ct_dicom(EXPLICIT_LE, "MONOCHROME2", "1", "0", vec![el(0x0028, 0x3010, "SQ", item)]),
        expect: Expect::Image {
            width: N,
            height: N,
            check: |i| {
                check_phantom_hu(i)?;
                ok(i.dicom.as_ref().is_some_and(|d| d.has_voi_lut_sequence), "VOI LUT Sequence noticed")
            },
        },
        about: "CT with a VOI LUT Sequence",
    });
    let lying_data = El { length_override: Some(0x7FFF_0000), ..el(0x0028, 0x3006, "OW", vec![0; 8]) };
    let item = sequence_item(&encode(&[us(0x0028, 0x3002, 4, false), lying_data], true, false));
    c.push(Case {
        name: "ct-lut-lying-length.dcm".into(),
        bytes: ct_dicom(EXPLICIT_LE, "MONOCHROME2", "1", "0", vec![el(0x0028, 0x3010, "SQ", item)]),
        expect: Expect::Error("malformed"),
        about: "a VOI LUT whose data claims 2 GB inside a 10 kB file (refused before allocation)",
    });
    let mf = ct_pixels(3, false, &|x, y, k| (phantom_hu(x, y) as i32 + 100 * k as i32) as u16);
    c.push(Case {
        name: "ct-3-frames.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &ct_elements(N as u16, N as u16, 3, "MONOCHROME2", true, "1", "0", false, Some(mf))),
        expect: Expect::Image { width: N, height: N, check: |i| ok(i.frames == 3 && at(i, 32, 32) == 40.0, "three frames, first shown") },
        about: "multi-frame CT (3 frames)",
    });
    c.push(Case {
        name: "ct-huge-rows.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &ct_elements(65535, 65535, 1, "MONOCHROME2", true, "1", "0", false, Some(signed_phantom(false)))),
        expect: Expect::Error("too_many_pixels"),
        about: "DICOM claiming 65535×65535",
    });
    c.push(Case {
        name: "ct-huge-frames.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &ct_elements(4096, 4096, 5000, "MONOCHROME2", true, "1", "0", false, Some(signed_phantom(false)))),
        expect: Expect::Error("malformed"),
        about: "DICOM claiming 5000 frames of 4096² with one small frame of data",
    });
    c.push(Case {
        name: "ct-no-pixel-data.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, None)),
        expect: Expect::Error("no_pixel_data"),
        about: "DICOM without Pixel Data",
    });
    let short = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, Some(vec![0u8; 1000]));
    c.push(Case {
        name: "ct-short-pixels.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &short),
        expect: Expect::Error("malformed"),
        about: "Pixel Data shorter than rows × columns",
    });
    let mut lying = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, Some(signed_phantom(false)));
    if let Some(e) = lying.iter_mut().find(|e| (e.group, e.elem) == (0x0018, 0x0015)) {
        e.length_override = Some(0x7FF0);
    }
    c.push(Case {
        name: "ct-lying-length.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &lying),
        expect: Expect::Error("malformed"),
        about: "an element length pointing past the end of the file",
    });
    let mut odd = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, Some(signed_phantom(false)));
    odd.push(el(0x0009, 0x0010, "LO", b"ACME 1.0".to_vec()));
    odd.push(el(0x0009, 0x1001, "UN", vec![1, 2, 3, 4, 5, 6]));
    odd.push(el(0x0011, 0x0010, "LO", b"VENDOR".to_vec()));
    c.push(Case {
        name: "ct-private-un.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &odd),
        expect: Expect::Image { width: N, height: N, check: check_phantom_hu },
        about: "private elements with VR UN",
    });
    let mut bad_vr = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, Some(signed_phantom(false)));
    if let Some(e) = bad_vr.iter_mut().find(|e| (e.group, e.elem) == (0x0018, 0x0015)) {
        e.vr = *b"Q%";
    }
    c.push(Case {
        name: "ct-bad-vr.dcm".into(),
        bytes: dicom_file(EXPLICIT_LE, &bad_vr),
        expect: Expect::Error("malformed"),
        about: "an element with an invalid VR",
    });
    let mut jls = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, None);
    let mut frag =
        vec![0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xF7, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
    let mut px = el(0x7FE0, 0x0010, "OB", Vec::new());
    px.value.append(&mut frag);
    px.length_override = Some(0xFFFF_FFFF);
    jls.push(px);
    c.push(Case {
        name: "ct-jpeg-ls.dcm".into(),
        bytes: dicom_file(JPEG_LS, &jls),
        expect: Expect::Error("unsupported_transfer_syntax"),
        about: "JPEG-LS compressed DICOM (no pure-Rust codec)",
    });
    // JPEG 2000 whose codestream (SIZ) claims 600×600 inside a 64×64 DICOM: the codec adapter
    // used to write past its buffer and panic (a `cargo fuzz run dicom` crash).
    let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
    for v in [600u32, 600, 0, 0, 600, 600, 0, 0] {
        siz.extend_from_slice(&v.to_be_bytes());
    }
    siz.extend_from_slice(&[0, 1, 15, 1, 1, 0xFF, 0xD9]);
    let mut frag = vec![0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0];
    frag.extend_from_slice(&((siz.len() + 1) as u32 & !1).to_le_bytes());
    frag.extend_from_slice(&siz);
    frag.resize(frag.len() + (siz.len() % 2), 0);
    frag.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    let mut j2k = ct_elements(N as u16, N as u16, 1, "MONOCHROME2", true, "1", "0", false, None);
    let mut px = el(0x7FE0, 0x0010, "OB", frag);
    px.length_override = Some(0xFFFF_FFFF);
    j2k.push(px);
    c.push(Case {
        name: "ct-j2k-size-mismatch.dcm".into(),
        bytes: dicom_file("1.2.840.10008.1.2.4.90", &j2k),
        expect: Expect::Error("malformed"),
        about: "JPEG 2000 codestream larger than the DICOM header (the check added for a fuzzer crash)",
    });
    truncations(
        &mut c,
        "ct.dcm",
        &dcm,
        &[(132, "malformed"), (200, "malformed"), (dcm.len() / 2, "malformed"), (dcm.len() - 2, "malformed")],
        "DICOM cut short",
    );
    c
}

/// BMP: an ordinary file and a lying header.
fn bmp_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let mut bmp = Vec::new();
    image::GrayImage::from_fn(N, N, |x, y| image::Luma([phantom_u8(x as usize, y as usize) as u8]))
        .write_to(&mut std::io::Cursor::new(&mut bmp), image::ImageFormat::Bmp)
        .expect("bmp encodes");
    c.push(Case { name: "grey.bmp".into(), bytes: bmp.clone(), expect: Expect::Image { width: N, height: N, check: no_check }, about: "BMP" });
    let mut bmp_bomb = bmp.clone();
    if bmp_bomb.len() > 26 {
        bmp_bomb[18..22].copy_from_slice(&50_000i32.to_le_bytes());
        bmp_bomb[22..26].copy_from_slice(&50_000i32.to_le_bytes());
    }
    c.push(Case { name: "bomb-50000.bmp".into(), bytes: bmp_bomb, expect: Expect::Error("too_many_pixels"), about: "BMP header claiming 50000×50000" });
    c
}

/// The phantom as a `slices`-deep int16 HU volume stored LAS (x flipped, as the writers'
/// sform says), with slice k darker by k HU so that the slice order is visible.
fn nifti_phantom_i16(slices: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..slices {
        for y in 0..N as usize {
            for x in 0..N as usize {
                // Stored row y runs posterior → anterior (+y), so row N-1-y of the phantom.
                out.extend_from_slice(&(phantom_hu(x, N as usize - 1 - y) - k as i16).to_le_bytes());
            }
        }
    }
    out
}

/// The phantom read back in radiological order: HU at (column, row) of slice 0 is the
/// phantom's, minus (slices − 1) because slice 0 is the most superior stored slice.
fn check_nifti_phantom(v: &Volume) -> Result<(), String> {
    let s0 = v.axial(0).ok_or("no slice 0")?;
    let top = v.slices as i16 - 1;
    let want = |x: usize, y: usize| f32::from(phantom_hu(x, y) - top);
    ok(v.intensity == Intensity::Hounsfield, "read as Hounsfield units")?;
    ok(at(&s0, 22, 32) == want(22, 32) && at(&s0, 32, 32) == want(32, 32) && at(&s0, 0, 0) == want(0, 0), "phantom values in radiological order")?;
    ok((v.spacing_mm[2] - 2.5).abs() < 1e-4 && v.slice_z_mm.first() > v.slice_z_mm.last(), "2.5 mm slices, superior first")
}

/// NIfTI volumes: good ones in each container and version, and every way a header can lie.
fn nifti_cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let mut push = |name: &str, bytes: Vec<u8>, expect: Expect, about: &'static str| c.push(Case { name: name.into(), bytes, expect, about });
    let good = |slices: u32| Expect::Volume { columns: N, rows: N, slices, check: check_nifti_phantom };
    let n = i64::from(N);
    let i16_header = |version: u8, slices: i64| NiftiHeader::new(version, [n, n, slices], 4, 16);
    let file = |h: &NiftiHeader, data: &[u8]| [h.bytes(), data.to_vec()].concat();
    let data = nifti_phantom_i16(4);
    let ct = file(&i16_header(1, 4), &data);
    push("ct.nii", ct.clone(), good(4), "NIfTI-1 int16 CT volume, LAS storage");
    push("ct.nii.gz", gzip(&ct), good(4), "the same volume gzip-compressed");
    push("ct-nifti2.nii.gz", gzip(&file(&i16_header(2, 4), &data)), good(4), "NIfTI-2 int16 CT volume, gzip");
    let f32_data: Vec<u8> = data.chunks_exact(2).flat_map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])).to_le_bytes()).collect();
    push("ct-float32.nii", file(&NiftiHeader::new(1, [n, n, 4], 16, 32), &f32_data), good(4), "float32 Hounsfield units");
    let mut scaled = NiftiHeader::new(1, [n, n, 4], 4, 16);
    scaled.inter = -1024.0;
    let plus1024: Vec<u8> = data.chunks_exact(2).flat_map(|b| (i16::from_le_bytes([b[0], b[1]]) + 1024).to_le_bytes()).collect();
    push("ct-scl-inter.nii", file(&scaled, &plus1024), good(4), "HU + 1024 stored with scl_inter = −1024");
    // Damage and lies.
    push("truncated.nii", ct[..ct.len() - 3000].to_vec(), Expect::Error("malformed"), "NIfTI cut inside its voxels");
    let gz = gzip(&ct);
    push("truncated.nii.gz", gz[..gz.len() / 2].to_vec(), Expect::Error("malformed"), "gzip NIfTI cut in half");
    push("gzip-bomb.nii.gz", gzip_with_zeros(&ct, 200 << 20), good(4), "gzip NIfTI followed by 200 MB of zeros: only what the header declares is read");
    push("header-cut.nii", ct[..300].to_vec(), Expect::Error("unknown_format"), "a NIfTI-1 header cut before its magic string");
    let mut lie = i16_header(1, 4);
    lie.dim = [3, 30_000, 30_000, 30_000, 1, 1, 1, 1];
    push("lying-dims.nii", file(&lie, &data), Expect::Error("too_many_pixels"), "header claiming 30000³ voxels");
    let mut lie = i16_header(2, 4);
    lie.dim = [3, 512, 512, 5_000, 1, 1, 1, 1];
    push("lying-slices.nii", file(&lie, &data), Expect::Error("too_many_voxels"), "NIfTI-2 header claiming 5000 slices of 512²");
    let mut lie = i16_header(1, 4);
    lie.dim[2] = -64;
    push("negative-dim.nii", file(&lie, &data), Expect::Error("malformed"), "a negative size");
    let mut lie = i16_header(1, 4);
    lie.dim[0] = 9;
    push("dim0-9.nii", file(&lie, &data), Expect::Error("malformed"), "dim[0] beyond 7");
    let mut lie = i16_header(1, 4);
    lie.vox_offset = 100.0;
    push("vox-offset-inside.nii", file(&lie, &data), Expect::Error("malformed"), "vox_offset inside the header");
    let mut lie = i16_header(1, 4);
    lie.vox_offset = 1.0e9;
    push("vox-offset-beyond.nii.gz", gzip(&file(&lie, &data)), Expect::Error("malformed"), "vox_offset a gigabyte past the header (gzip)");
    let mut lie = i16_header(1, 4);
    lie.bitpix = 8;
    push("bitpix-lie.nii", file(&lie, &data), Expect::Error("malformed"), "int16 datatype with bitpix 8");
    push("rgb.nii", file(&NiftiHeader::new(1, [n, n, 1], 128, 24), &vec![0u8; (N * N * 3) as usize]), Expect::Error("unsupported"), "RGB voxels");
    let mut pair = i16_header(1, 4);
    pair.single_file = false;
    push("pair.hdr", pair.bytes()[..348].to_vec(), Expect::Error("unsupported"), "header of a .hdr/.img pair");
    let mut huge = i16_header(2, 4);
    huge.slope = -3.0e231;
    push("huge-slope.nii", file(&huge, &data), Expect::Error("unsupported"), "NIfTI-2 scl_slope of −3e231: values beyond 32-bit floats (found by fuzzing)");
    let nan: Vec<u8> = (0..N * N).flat_map(|_| f32::NAN.to_le_bytes()).collect();
    push("all-nan.nii", file(&NiftiHeader::new(1, [n, n, 1], 16, 32), &nan), Expect::Error("no_finite_values"), "float32 volume of NaN only");
    push("not-nifti.gz", gzip(b"just some text in a gzip file\n"), Expect::Error("not_an_image"), "a gzip file that holds no NIfTI");
    c
}

/// A decimal-string (DS) value: numbers with six decimals, joined by backslashes.
fn ds(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join("\\")
}

/// One slice of a generated CT series, with the identity and geometry a PACS export carries.
pub struct SeriesSlice<'a> {
    pub study_uid: &'a str,
    pub series_uid: &'a str,
    pub series_number: i32,
    pub instance: i32,
    /// Image Position (Patient), LPS millimetres.
    pub position: [f64; 3],
    /// Image Orientation (Patient): row direction, column direction.
    pub orientation: [f64; 6],
    /// Between rows, between columns (mm).
    pub spacing: [f64; 2],
    pub thickness: f64,
    /// Image Type, e.g. `ORIGINAL\PRIMARY\AXIAL`.
    pub image_type: &'a str,
    pub width: u16,
    pub height: u16,
    /// Hounsfield units, row-major.
    pub hu: &'a [i16],
}

/// A DICOM file (explicit VR little endian, signed 16-bit, slope 1, intercept 0) for `s`.
pub fn ct_series_slice(s: &SeriesSlice) -> Vec<u8> {
    let pixels: Vec<u8> = s.hu.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut els = ct_elements(s.height, s.width, 1, "MONOCHROME2", true, "1", "0", false, Some(pixels));
    els.extend([
        text(0x0008, 0x0008, "CS", s.image_type),
        text(0x0018, 0x0050, "DS", &ds(&[s.thickness])),
        text(0x0020, 0x000D, "UI", s.study_uid),
        text(0x0020, 0x000E, "UI", s.series_uid),
        text(0x0020, 0x0011, "IS", &s.series_number.to_string()),
        text(0x0020, 0x0013, "IS", &s.instance.to_string()),
        text(0x0020, 0x0032, "DS", &ds(&s.position)),
        text(0x0020, 0x0037, "DS", &ds(&s.orientation)),
        text(0x0028, 0x0030, "DS", &ds(&s.spacing)),
    ]);
    dicom_file(EXPLICIT_LE, &els)
}

/// A multi-frame (enhanced) CT file: one frame per entry of `frames` (Hounsfield units,
/// `width × height` each), each frame's Image Position in the per-frame functional groups and
/// the orientation, pixel spacing and thickness in the shared ones, as scanners write them.
pub fn ct_enhanced(study_uid: &str, series_uid: &str, positions: &[[f64; 3]], frames: &[&[i16]], width: u16, height: u16) -> Vec<u8> {
    let seq = |group: u16, elem: u16, items: Vec<Vec<u8>>| el(group, elem, "SQ", items.concat());
    let item = |els: &[El]| sequence_item(&encode(els, true, false));
    let pixels: Vec<u8> = frames.iter().flat_map(|f| f.iter().flat_map(|v| v.to_le_bytes())).collect();
    let mut els = ct_elements(height, width, frames.len() as u32, "MONOCHROME2", true, "1", "0", false, Some(pixels));
    let per_frame: Vec<Vec<u8>> = positions.iter().map(|p| item(&[seq(0x0020, 0x9113, vec![item(&[text(0x0020, 0x0032, "DS", &ds(p))])])])).collect();
    let shared = item(&[
        seq(0x0020, 0x9116, vec![item(&[text(0x0020, 0x0037, "DS", &ds(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))])]),
        seq(0x0028, 0x9110, vec![item(&[text(0x0018, 0x0050, "DS", "2.5"), text(0x0028, 0x0030, "DS", &ds(&[0.7, 0.7]))])]),
    ]);
    els.extend([
        text(0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL"),
        text(0x0020, 0x000D, "UI", study_uid),
        text(0x0020, 0x000E, "UI", series_uid),
        text(0x0020, 0x0011, "IS", "7"),
        seq(0x5200, 0x9229, vec![shared]),
        seq(0x5200, 0x9230, per_frame),
    ]);
    dicom_file(EXPLICIT_LE, &els)
}

/// A NIfTI-1 file of int16 voxels `hu` (`[x, y, z]`, x fastest) under the voxel → RAS
/// affine `srow` (rows x, y, z), optionally gzip-compressed.
pub fn nifti_i16(dims: [i64; 3], srow: [[f64; 4]; 3], hu: &[i16], gz: bool) -> Vec<u8> {
    let mut h = NiftiHeader::new(1, dims, 4, 16);
    h.srow = srow;
    let data: Vec<u8> = hu.iter().flat_map(|v| v.to_le_bytes()).collect();
    let file = [h.bytes(), data].concat();
    if gz { gzip(&file) } else { file }
}

/// Write every case and `expected.json` into `dir` (emptied first).
pub fn write(dir: &Path, cases: &[Case]) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut list = Vec::new();
    for c in cases {
        std::fs::write(dir.join(&c.name), &c.bytes)?;
        // A volume file opens as a study on the page: whatever the volume decoder says (a
        // study of this size, or the header's or the data's fault); the native corpus test
        // checks that against the case's expectation.
        let (outcome, kind, w, h, slices) = if ctxr::decode::is_volume(&c.bytes) {
            match ctxr::decode::decode_volume(&c.bytes, &Default::default()) {
                Ok(v) => ("volume", None, Some(v.columns), Some(v.rows), Some(v.slices)),
                Err(e) => ("error", Some(e.kind()), None, None, None),
            }
        } else {
            match &c.expect {
                Expect::Error(k) => ("error", Some(*k), None, None, None),
                Expect::Image { width, height, .. } => ("image", None, Some(*width), Some(*height), None),
                Expect::Volume { .. } => ("error", Some("not_a_volume"), None, None, None),
            }
        };
        list.push(serde_json::json!({ "file": c.name, "outcome": outcome, "kind": kind, "width": w, "height": h, "slices": slices, "about": c.about }));
    }
    std::fs::write(dir.join("expected.json"), serde_json::to_string_pretty(&list).unwrap_or_default())
}
