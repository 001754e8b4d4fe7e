//! The hostile and odd input corpus, generated (never copied from `../shared`): every file a
//! person might drop on the page that is broken, lying, huge or merely unusual, each with the
//! outcome it must have. `ctxr corpus --out tests/corpus` writes the files and `expected.json`
//! in a build step of its own; the native tests generate the same cases in memory and the
//! browser test reads the written corpus.

use std::path::Path;

use ctxr::decode::{Intensity, MedImage, Photometric};

mod writers;

use writers::*;

/// What decoding a corpus file must give.
pub enum Expect {
    /// A typed error of this kind (`DecodeError::kind`).
    Error(&'static str),
    /// An image of this size whose properties `check` verifies.
    Image { width: u32, height: u32, check: Check },
}

pub type Check = fn(&MedImage) -> Result<(), String>;

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
pub const GROUPS: [(&str, Generator); 6] =
    [("not_images", not_images_cases), ("png", png_cases), ("jpeg", jpeg_cases), ("tiff", tiff_cases), ("dicom", dicom_cases), ("bmp", bmp_cases)];

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

/// Write every case and `expected.json` into `dir` (emptied first).
pub fn write(dir: &Path, cases: &[Case]) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut list = Vec::new();
    for c in cases {
        std::fs::write(dir.join(&c.name), &c.bytes)?;
        let (outcome, kind, w, h) = match &c.expect {
            Expect::Error(k) => ("error", Some(*k), None, None),
            Expect::Image { width, height, .. } => ("image", None, Some(*width), Some(*height)),
        };
        list.push(serde_json::json!({ "file": c.name, "outcome": outcome, "kind": kind, "width": w, "height": h, "about": c.about }));
    }
    std::fs::write(dir.join("expected.json"), serde_json::to_string_pretty(&list).unwrap_or_default())
}
