//! Byte-exact writers for the hostile-input corpus: PNG (any bit depth, colour type, Adam7),
//! baseline TIFF (either byte order, integer or float samples, any photometric) and DICOM
//! (explicit/implicit VR, either byte order) and NIfTI-1/-2 (gzip or not), so each file says
//! exactly what the test wants,
//! including what no encoder library would write (lying headers, wrong lengths).

// ---------------------------------------------------------------- PNG

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// zlib stream of stored (uncompressed) deflate blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let n = c.len() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// PNG colour types.
pub const GREY: u8 = 0;
pub const RGB: u8 = 2;
pub const PALETTE: u8 = 3;
pub const GREY_ALPHA: u8 = 4;
pub const RGBA: u8 = 6;

fn channels(color_type: u8) -> usize {
    match color_type {
        RGB => 3,
        GREY_ALPHA => 2,
        RGBA => 4,
        _ => 1,
    }
}

/// Filter-0 scanlines of the `w × h` sub-image whose samples `sample(x, y)` gives.
fn scanlines(w: usize, h: usize, depth: u8, color_type: u8, sample: &dyn Fn(usize, usize) -> Vec<u16>) -> Vec<u8> {
    let ch = channels(color_type);
    let mut out = Vec::new();
    for y in 0..h {
        out.push(0);
        if depth < 8 {
            let mut acc = 0u8;
            let mut used = 0u8;
            for x in 0..w {
                let v = sample(x, y)[0] as u8 & ((1u16 << depth) - 1) as u8;
                acc |= v << (8 - depth - used);
                used += depth;
                if used == 8 {
                    out.push(acc);
                    acc = 0;
                    used = 0;
                }
            }
            if used > 0 {
                out.push(acc);
            }
        } else {
            for x in 0..w {
                let s = sample(x, y);
                for c in 0..ch {
                    let v = s.get(c).copied().unwrap_or(0);
                    if depth == 16 {
                        out.extend_from_slice(&v.to_be_bytes());
                    } else {
                        out.push(v as u8);
                    }
                }
            }
        }
    }
    out
}

/// A complete PNG. `sample(x, y)` returns the channel values (palette index for colour type 3).
pub fn png(w: u32, h: u32, depth: u8, color_type: u8, interlaced: bool, palette: Option<&[[u8; 3]]>, sample: &dyn Fn(usize, usize) -> Vec<u16>) -> Vec<u8> {
    let mut raw = Vec::new();
    let (w, h) = (w as usize, h as usize);
    if interlaced {
        const PASSES: [(usize, usize, usize, usize); 7] = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
        for (x0, y0, dx, dy) in PASSES {
            let pw = if w > x0 { (w - x0).div_ceil(dx) } else { 0 };
            let ph = if h > y0 { (h - y0).div_ceil(dy) } else { 0 };
            if pw == 0 || ph == 0 {
                continue;
            }
            raw.extend(scanlines(pw, ph, depth, color_type, &|x, y| sample(x0 + x * dx, y0 + y * dy)));
        }
    } else {
        raw = scanlines(w, h, depth, color_type, sample);
    }
    png_from_idat(w as u32, h as u32, depth, color_type, interlaced, palette, &zlib_stored(&raw))
}

/// A PNG with the given header and compressed IDAT payload (which may lie about the header).
pub fn png_from_idat(w: u32, h: u32, depth: u8, color_type: u8, interlaced: bool, palette: Option<&[[u8; 3]]>, idat: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color_type, 0, 0, u8::from(interlaced)]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    if let Some(p) = palette {
        png_chunk(&mut out, b"PLTE", &p.iter().flatten().copied().collect::<Vec<u8>>());
    }
    png_chunk(&mut out, b"IDAT", idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

// ---------------------------------------------------------------- TIFF

/// One TIFF tag: (tag, type, values as u32 or f32 bits). Types: 3 SHORT, 4 LONG.
pub struct Tag(pub u16, pub u16, pub Vec<u32>);

/// A single-strip baseline TIFF; `data` is the strip exactly as stored.
pub fn tiff(big_endian: bool, tags: Vec<Tag>, data: &[u8]) -> Vec<u8> {
    let w16 = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let w32 = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut tags = tags;
    tags.sort_by_key(|t| t.0);
    let n = tags.len() + 2; // + StripOffsets, StripByteCounts
    let ifd_len = 2 + n * 12 + 4;
    let mut extra: Vec<u8> = Vec::new();
    let extra_start = 8 + ifd_len;
    // Values that do not fit in 4 bytes go after the IFD.
    let mut entries: Vec<(u16, u16, u32, [u8; 4])> = Vec::new();
    let mut put = |tag: u16, ty: u16, vals: &[u32], extra: &mut Vec<u8>| {
        let size = if ty == 3 { 2 } else { 4 };
        let mut bytes = Vec::new();
        for &v in vals {
            if ty == 3 {
                bytes.extend_from_slice(&w16(v as u16));
            } else {
                bytes.extend_from_slice(&w32(v));
            }
        }
        let field = if vals.len() * size <= 4 {
            let mut f = [0u8; 4];
            f[..bytes.len()].copy_from_slice(&bytes);
            f
        } else {
            let off = (extra_start + extra.len()) as u32;
            extra.extend_from_slice(&bytes);
            if extra.len() % 2 == 1 {
                extra.push(0);
            }
            w32(off)
        };
        entries.push((tag, ty, vals.len() as u32, field));
    };
    for t in &tags {
        put(t.0, t.1, &t.2, &mut extra);
    }
    let data_off = (extra_start + extra.len() + 64) as u32;
    put(273, 4, &[data_off], &mut extra);
    put(279, 4, &[data.len() as u32], &mut extra);
    entries.sort_by_key(|e| e.0);
    let mut out = Vec::new();
    out.extend_from_slice(if big_endian { b"MM" } else { b"II" });
    out.extend_from_slice(&w16(42));
    out.extend_from_slice(&w32(8));
    out.extend_from_slice(&w16(entries.len() as u16));
    for (tag, ty, count, field) in entries {
        out.extend_from_slice(&w16(tag));
        out.extend_from_slice(&w16(ty));
        out.extend_from_slice(&w32(count));
        out.extend_from_slice(&field);
    }
    out.extend_from_slice(&w32(0));
    out.extend_from_slice(&extra);
    out.resize(data_off as usize, 0);
    out.extend_from_slice(data);
    out
}

/// Tags of a `w × h` image with `spp` samples of `bits` bits, `format` 1 uint / 2 int / 3 float.
pub fn tiff_tags(w: u32, h: u32, bits: u16, spp: u16, photometric: u16, format: u16) -> Vec<Tag> {
    vec![
        Tag(256, 4, vec![w]),
        Tag(257, 4, vec![h]),
        Tag(258, 3, vec![u32::from(bits); spp as usize]),
        Tag(259, 3, vec![1]),
        Tag(262, 3, vec![u32::from(photometric)]),
        Tag(277, 3, vec![u32::from(spp)]),
        Tag(278, 4, vec![h]),
        Tag(339, 3, vec![u32::from(format); spp as usize]),
    ]
}

// ---------------------------------------------------------------- DICOM

pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
pub const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";
pub const CT_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

/// A DICOM element: tag, VR and value bytes (already in the data set's byte order).
#[derive(Clone)]
pub struct El {
    pub group: u16,
    pub elem: u16,
    pub vr: [u8; 2],
    pub value: Vec<u8>,
    /// Write this length instead of the value's (a lying length).
    pub length_override: Option<u32>,
}

pub fn el(group: u16, elem: u16, vr: &str, value: Vec<u8>) -> El {
    let vr = [vr.as_bytes()[0], vr.as_bytes()[1]];
    El { group, elem, vr, value, length_override: None }
}

/// A text value padded to even length (UI with NUL, others with space).
pub fn text(group: u16, elem: u16, vr: &str, s: &str) -> El {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == "UI" { 0 } else { b' ' });
    }
    el(group, elem, vr, v)
}

pub fn us(group: u16, elem: u16, v: u16, be: bool) -> El {
    el(group, elem, "US", if be { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() })
}

fn long_vr(vr: &[u8; 2]) -> bool {
    matches!(vr, b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR")
}

/// One defined-length sequence item (FFFE,E000) holding `content`, little endian.
pub fn sequence_item(content: &[u8]) -> Vec<u8> {
    let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
    item.extend_from_slice(&(content.len() as u32).to_le_bytes());
    item.extend_from_slice(content);
    item
}

/// Encode elements (sorted by tag) in the given transfer syntax's encoding.
pub fn encode(els: &[El], explicit: bool, be: bool) -> Vec<u8> {
    let mut els = els.to_vec();
    els.sort_by_key(|e| (e.group, e.elem));
    let mut out = Vec::new();
    for e in els {
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        out.extend_from_slice(&w16(e.group));
        out.extend_from_slice(&w16(e.elem));
        let len = e.length_override.unwrap_or(e.value.len() as u32);
        if explicit {
            out.extend_from_slice(&e.vr);
            if long_vr(&e.vr) {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&w32(len));
            } else {
                out.extend_from_slice(&w16(len as u16));
            }
        } else {
            out.extend_from_slice(&w32(len));
        }
        out.extend_from_slice(&e.value);
    }
    out
}

/// A Part 10 file: preamble, "DICM", file meta (explicit VR little endian) and `els` in `ts`.
pub fn dicom_file(ts: &str, els: &[El]) -> Vec<u8> {
    let meta_body = encode(
        &[
            el(0x0002, 0x0001, "OB", vec![0, 1]),
            text(0x0002, 0x0002, "UI", CT_STORAGE),
            text(0x0002, 0x0003, "UI", "1.2.826.0.1.3680043.10.1200.1"),
            text(0x0002, 0x0010, "UI", ts),
            text(0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.10.1200"),
        ],
        true,
        false,
    );
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend(encode(&[el(0x0002, 0x0000, "UL", (meta_body.len() as u32).to_le_bytes().to_vec())], true, false));
    out.extend(meta_body);
    let (explicit, be) = match ts {
        IMPLICIT_LE => (false, false),
        EXPLICIT_BE => (true, true),
        _ => (true, false),
    };
    out.extend(encode(els, explicit, be));
    out
}

/// The image elements of a `rows × cols` (× `frames`) 16-bit CT image; `pixels` in the
/// data set's byte order are appended as (7FE0,0010) unless `None`.
pub fn ct_elements(
    rows: u16,
    cols: u16,
    frames: u32,
    photometric: &str,
    signed: bool,
    slope: &str,
    intercept: &str,
    be: bool,
    pixels: Option<Vec<u8>>,
) -> Vec<El> {
    let mut e = vec![
        text(0x0008, 0x0016, "UI", CT_STORAGE),
        text(0x0008, 0x0018, "UI", "1.2.826.0.1.3680043.10.1200.1"),
        text(0x0008, 0x0060, "CS", "CT"),
        text(0x0018, 0x0015, "CS", "CHEST"),
        us(0x0028, 0x0002, 1, be),
        text(0x0028, 0x0004, "CS", photometric),
        us(0x0028, 0x0010, rows, be),
        us(0x0028, 0x0011, cols, be),
        us(0x0028, 0x0100, 16, be),
        us(0x0028, 0x0101, 16, be),
        us(0x0028, 0x0102, 15, be),
        us(0x0028, 0x0103, u16::from(signed), be),
        text(0x0028, 0x1052, "DS", intercept),
        text(0x0028, 0x1053, "DS", slope),
    ];
    if frames > 1 {
        e.push(text(0x0028, 0x0008, "IS", &frames.to_string()));
    }
    if let Some(p) = pixels {
        e.push(el(0x7FE0, 0x0010, "OW", p));
    }
    e
}

// ---------------------------------------------------------------- NIfTI

/// What a NIfTI header says; each field may lie.
pub struct NiftiHeader {
    pub version: u8,
    /// dim[0..8]: dim[0] is the number of dimensions.
    pub dim: [i64; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub vox_offset: f64,
    pub slope: f64,
    pub inter: f64,
    /// The sform rows (code 1); voxel → world RAS in millimetres.
    pub srow: [[f64; 4]; 3],
    /// "n+1" / "n+2" (single file) or "ni1" / "ni2" (header-only pair).
    pub single_file: bool,
}

impl NiftiHeader {
    /// A single-file header for `x × y × z` voxels of `datatype` (`bitpix` bits), with the
    /// voxels right after the header and an LAS sform of 0.7 × 0.7 × 2.5 mm voxels.
    pub fn new(version: u8, [x, y, z]: [i64; 3], datatype: i16, bitpix: i16) -> Self {
        NiftiHeader {
            version,
            dim: [3, x, y, z, 1, 1, 1, 1],
            datatype,
            bitpix,
            vox_offset: if version == 1 { 352.0 } else { 544.0 },
            slope: 1.0,
            inter: 0.0,
            srow: [[-0.7, 0.0, 0.0, 0.0], [0.0, 0.7, 0.0, 0.0], [0.0, 0.0, 2.5, 0.0]],
            single_file: true,
        }
    }

    /// The header bytes, padded with zeros (the extension flag) up to `vox_offset` when that
    /// is a sane size, else to the header's own end + 4.
    pub fn bytes(&self) -> Vec<u8> {
        let size = if self.version == 1 { 348 } else { 540 };
        let pad =
            if self.vox_offset.is_finite() && self.vox_offset >= (size + 4) as f64 && self.vox_offset < 4096.0 { self.vox_offset as usize } else { size + 4 };
        let mut h = vec![0u8; pad];
        let mut put = |at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
        put(0, &(size as i32).to_le_bytes());
        if self.version == 1 {
            for (i, d) in self.dim.iter().enumerate() {
                put(40 + 2 * i, &(*d as i16).to_le_bytes());
            }
            put(70, &self.datatype.to_le_bytes());
            put(72, &self.bitpix.to_le_bytes());
            for i in 0..4 {
                put(76 + 4 * i, &1f32.to_le_bytes());
            }
            put(108, &(self.vox_offset as f32).to_le_bytes());
            put(112, &(self.slope as f32).to_le_bytes());
            put(116, &(self.inter as f32).to_le_bytes());
            put(123, &[2]); // millimetres
            put(254, &1i16.to_le_bytes());
            for (r, row) in self.srow.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    put(280 + 16 * r + 4 * c, &(*v as f32).to_le_bytes());
                }
            }
            put(344, if self.single_file { b"n+1\0" } else { b"ni1\0" });
        } else {
            put(4, if self.single_file { b"n+2\0\r\n\x1a\n" } else { b"ni2\0\r\n\x1a\n" });
            put(12, &self.datatype.to_le_bytes());
            put(14, &self.bitpix.to_le_bytes());
            for (i, d) in self.dim.iter().enumerate() {
                put(16 + 8 * i, &d.to_le_bytes());
            }
            for i in 0..4 {
                put(104 + 8 * i, &1f64.to_le_bytes());
            }
            put(168, &(self.vox_offset as i64).to_le_bytes());
            put(176, &self.slope.to_le_bytes());
            put(184, &self.inter.to_le_bytes());
            put(348, &1i32.to_le_bytes());
            for (r, row) in self.srow.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    put(400 + 32 * r + 8 * c, &v.to_le_bytes());
                }
            }
            put(500, &2i32.to_le_bytes());
        }
        h
    }
}

/// gzip of `bytes` (real deflate, so that a bomb is small on disk).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

/// gzip of `head` followed by `zeros` zero bytes, compressed as it streams.
pub fn gzip_with_zeros(head: &[u8], zeros: usize) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = e.write_all(head);
    let block = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len());
        let _ = e.write_all(&block[..n]);
        left -= n;
    }
    e.finish().unwrap_or_default()
}
