//! NIfTI: NIfTI-1 and NIfTI-2 single-file volumes (`.nii`, and gzip `.nii.gz` recognised by
//! its magic bytes), read into one [`Volume`] in radiological axial order.
//!
//! A small reader of our own rather than the `nifti` crate: that crate brings `ndarray` and
//! `nalgebra` into the wasm build for what is a fixed 348- or 540-byte header and a block of
//! samples, and it reads the whole (decompressed) file into memory before we could check the
//! header's claims. Here the header is checked against [`Limits`] before any allocation,
//! the samples are streamed from the (possibly compressed) bytes straight into their
//! reoriented place, and a file that decompresses to more than its header promises is simply
//! not read further (a gzip bomb costs only what the header declared).
//!
//! Values: `scl_slope`/`scl_inter` are applied (a slope of 0 means none, as the standard says).
//! Orientation: the sform when `sform_code > 0`, else the qform when `qform_code > 0` (the
//! order nibabel's `get_best_affine` uses); with neither, the voxels stay in stored order and
//! the volume says so ([`Placement::StoredOrder`]). 4-D files: the first volume.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::volume::{Placement, Volume, looks_like_hounsfield};
use super::{DecodeError, DecodeOptions, Format, Limits};

const FMT: Format = Format::Nifti;
/// Extensions between the header and the voxels are small (a few KB); a larger offset is
/// treated as damage so that a hostile header cannot make us inflate gigabytes to skip it.
const MAX_VOX_OFFSET: u64 = 16 << 20;

fn malformed(detail: impl Into<String>) -> DecodeError {
    DecodeError::Malformed { format: FMT, detail: detail.into(), source: None }
}

fn unsupported(what: impl Into<String>) -> DecodeError {
    DecodeError::Unsupported { format: FMT, what: what.into(), source: None }
}

/// Whether `head` (the first bytes of a file, decompressed if it was gzip) is a NIfTI header.
pub(crate) fn is_nifti_header(head: &[u8]) -> bool {
    version_and_order(head).is_some()
}

/// The NIfTI version (1 or 2) and byte order (true = big-endian) of a header, from its size
/// field and magic string. Header-only pairs (`ni1`/`ni2`, data in a separate `.img`) count too,
/// so that they get a precise refusal rather than "unknown format".
fn version_and_order(h: &[u8]) -> Option<(u8, bool, bool)> {
    let size: [u8; 4] = *h.first_chunk::<4>()?;
    let le = i32::from_le_bytes(size);
    let be = i32::from_be_bytes(size);
    let big = match (le, be) {
        (348 | 540, _) => false,
        (_, 348 | 540) => true,
        _ => return None,
    };
    let size = if big { be } else { le };
    if size == 348 {
        match h.get(344..348)? {
            b"n+1\0" => Some((1, big, true)),
            b"ni1\0" => Some((1, big, false)),
            _ => None,
        }
    } else {
        match h.get(4..12)? {
            b"n+2\0\r\n\x1a\n" => Some((2, big, true)),
            b"ni2\0\r\n\x1a\n" => Some((2, big, false)),
            _ => None,
        }
    }
}

/// The header fields the reader uses, whatever the version.
#[derive(Debug, Clone)]
struct Header {
    version: u8,
    big_endian: bool,
    dims: [u64; 7],
    ndim: usize,
    datatype: i32,
    bitpix: i32,
    pixdim: [f64; 8],
    vox_offset: u64,
    slope: f64,
    inter: f64,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
    xyzt_units: i32,
}

/// Little helpers over the header bytes in the file's byte order (a short header reads as 0,
/// but the caller has checked the length first).
struct Fields<'a> {
    b: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.b.get(at..at + N) {
            out.copy_from_slice(s);
        }
        if self.big {
            out.reverse();
        }
        out
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.bytes(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.bytes(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.bytes(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f64::from(f32::from_le_bytes(self.bytes(at)))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.bytes(at))
    }
}

fn parse_header(h: &[u8]) -> Result<Header, DecodeError> {
    let Some((version, big, single)) = version_and_order(h) else {
        return Err(malformed("the NIfTI header is cut short or its magic string is wrong"));
    };
    if !single {
        return Err(unsupported("a header-only NIfTI file (its voxels are in a separate .img file); save the volume as one .nii or .nii.gz"));
    }
    let need = if version == 1 { 348 } else { 540 };
    if h.len() < need {
        return Err(malformed(format!("the header is {} bytes, the NIfTI-{version} header needs {need}", h.len())));
    }
    let f = Fields { b: h, big };
    let (raw_dims, datatype, bitpix, pixdim, vox_offset, slope, inter, qform_code, sform_code, quatern, qoffset, srow, xyzt_units);
    if version == 1 {
        raw_dims = std::array::from_fn::<i64, 8, _>(|i| i64::from(f.i16(40 + 2 * i)));
        datatype = i32::from(f.i16(70));
        bitpix = i32::from(f.i16(72));
        pixdim = std::array::from_fn(|i| f.f32(76 + 4 * i));
        let off = f.f32(108);
        if !off.is_finite() || off < 0.0 {
            return Err(malformed(format!("vox_offset {off} is not a byte position")));
        }
        vox_offset = off as u64;
        slope = f.f32(112);
        inter = f.f32(116);
        qform_code = i32::from(f.i16(252));
        sform_code = i32::from(f.i16(254));
        quatern = [f.f32(256), f.f32(260), f.f32(264)];
        qoffset = [f.f32(268), f.f32(272), f.f32(276)];
        srow = std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c)));
        xyzt_units = i32::from(h.get(123).copied().unwrap_or(0));
    } else {
        raw_dims = std::array::from_fn(|i| f.i64(16 + 8 * i));
        datatype = i32::from(f.i16(12));
        bitpix = i32::from(f.i16(14));
        pixdim = std::array::from_fn(|i| f.f64(104 + 8 * i));
        let off = f.i64(168);
        vox_offset = u64::try_from(off).map_err(|_| malformed(format!("vox_offset {off} is negative")))?;
        slope = f.f64(176);
        inter = f.f64(184);
        qform_code = f.i32(344);
        sform_code = f.i32(348);
        quatern = [f.f64(352), f.f64(360), f.f64(368)];
        qoffset = [f.f64(376), f.f64(384), f.f64(392)];
        srow = std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c)));
        xyzt_units = f.i32(500);
    }
    let [ndim, ..] = raw_dims;
    if !(1..=7).contains(&ndim) {
        return Err(malformed(format!("dim[0] = {ndim}: the number of dimensions must be 1 to 7")));
    }
    let ndim = ndim as usize;
    let mut dims = [1u64; 7];
    for (i, d) in dims.iter_mut().enumerate().take(ndim) {
        let v = raw_dims.get(i + 1).copied().unwrap_or(0);
        *d = u64::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| malformed(format!("dim[{}] = {v}: sizes must be positive", i + 1)))?;
    }
    let min_offset = need as u64;
    if vox_offset < min_offset {
        return Err(malformed(format!("vox_offset {vox_offset} points inside the {need}-byte header")));
    }
    if vox_offset > MAX_VOX_OFFSET {
        return Err(malformed(format!("vox_offset {vox_offset} is far beyond any header and its extensions")));
    }
    Ok(Header {
        version,
        big_endian: big,
        dims,
        ndim,
        datatype,
        bitpix,
        pixdim,
        vox_offset,
        slope,
        inter,
        qform_code,
        sform_code,
        quatern,
        qoffset,
        srow,
        xyzt_units,
    })
}

/// The sample types a CT volume comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    U8,
    I8,
    I16,
    U16,
    I32,
    F32,
    F64,
}

impl Sample {
    fn from_code(code: i32) -> Result<Sample, DecodeError> {
        Ok(match code {
            2 => Sample::U8,
            256 => Sample::I8,
            4 => Sample::I16,
            512 => Sample::U16,
            8 => Sample::I32,
            16 => Sample::F32,
            64 => Sample::F64,
            other => {
                let name = match other {
                    32 | 1792 | 2048 => "complex",
                    128 | 2304 => "RGB colour",
                    768 | 1024 | 1280 => "32/64-bit unsigned or 64-bit integer",
                    1536 => "128-bit float",
                    1 => "1-bit",
                    _ => "unknown",
                };
                return Err(unsupported(format!(
                    "{name} samples (NIfTI datatype {other}); this reader takes uint8, int8, int16, uint16, int32, float32 and float64"
                )));
            }
        })
    }
    fn bytes(self) -> usize {
        match self {
            Sample::U8 | Sample::I8 => 1,
            Sample::I16 | Sample::U16 => 2,
            Sample::I32 | Sample::F32 => 4,
            Sample::F64 => 8,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Sample::U8 => "uint8",
            Sample::I8 => "int8",
            Sample::I16 => "int16",
            Sample::U16 => "uint16",
            Sample::I32 => "int32",
            Sample::F32 => "float32",
            Sample::F64 => "float64",
        }
    }
    /// Samples that fit `i16` as they are (stored raw, the scaling kept as the volume's map).
    fn fits_i16(self) -> bool {
        matches!(self, Sample::U8 | Sample::I8 | Sample::I16)
    }
    fn read(self, b: &[u8], big: bool) -> f64 {
        let mut a = [0u8; 8];
        let n = self.bytes();
        if let (Some(s), Some(d)) = (b.get(..n), a.get_mut(..n)) {
            d.copy_from_slice(s);
            if big {
                d.reverse();
            }
        }
        match self {
            Sample::U8 => f64::from(a[0]),
            Sample::I8 => f64::from(a[0] as i8),
            Sample::I16 => f64::from(i16::from_le_bytes([a[0], a[1]])),
            Sample::U16 => f64::from(u16::from_le_bytes([a[0], a[1]])),
            Sample::I32 => f64::from(i32::from_le_bytes([a[0], a[1], a[2], a[3]])),
            Sample::F32 => f64::from(f32::from_le_bytes([a[0], a[1], a[2], a[3]])),
            Sample::F64 => f64::from_le_bytes(a),
        }
    }
}

/// The voxel → world (RAS, millimetres) affine, rows x, y, z; `None` when the file gives no
/// orientation.
#[allow(clippy::indexing_slicing)] // rows and columns of fixed 3×3 and 3×4 arrays
fn affine(h: &Header) -> Option<[[f64; 4]; 3]> {
    let unit = match h.xyzt_units & 7 {
        1 => 1000.0,
        3 => 0.001,
        _ => 1.0,
    };
    let m = if h.sform_code > 0 {
        h.srow
    } else if h.qform_code > 0 {
        let [b, c, d] = h.quatern;
        let (a, b, c, d) = {
            let s = 1.0 - (b * b + c * c + d * d);
            if s > 1e-7 {
                (s.sqrt(), b, c, d)
            } else {
                let n = (b * b + c * c + d * d).sqrt().max(f64::MIN_POSITIVE);
                (0.0, b / n, c / n, d / n)
            }
        };
        let r = [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let z = |v: f64| if v == 0.0 || !v.is_finite() { 1.0 } else { v };
        let s = [z(h.pixdim[1]), z(h.pixdim[2]), z(h.pixdim[3]) * qfac];
        std::array::from_fn(|row| [r[row][0] * s[0], r[row][1] * s[1], r[row][2] * s[2], h.qoffset[row]])
    } else {
        return None;
    };
    let m = m.map(|row| row.map(|v| v * unit));
    m.iter().flatten().all(|v| v.is_finite()).then_some(m)
}

/// For each output axis (column ← world x, row ← world y, slice ← world z) the voxel axis
/// that runs along it and whether it runs the wrong way (towards +x right, +y anterior,
/// +z superior, when radiological order wants left, posterior, inferior). Greedy on the
/// largest remaining direction cosine, as nibabel's `io_orientation` does for oblique files.
#[allow(clippy::indexing_slicing)] // axis numbers in 0..3 into fixed 3×3 arrays
fn axes(m: &[[f64; 4]; 3]) -> Option<[(usize, bool); 3]> {
    let mut cos = [[0.0f64; 3]; 3];
    for v in 0..3 {
        let n = (0..3).map(|w| m[w][v] * m[w][v]).sum::<f64>().sqrt();
        if n.is_nan() || n <= 0.0 {
            return None;
        }
        for w in 0..3 {
            cos[w][v] = m[w][v] / n;
        }
    }
    let mut out = [(usize::MAX, false); 3];
    let (mut used_w, mut used_v) = ([false; 3], [false; 3]);
    for _ in 0..3 {
        let mut best = (0usize, 0usize, -1.0f64);
        for w in (0..3).filter(|&w| !used_w[w]) {
            for v in (0..3).filter(|&v| !used_v[v]) {
                if cos[w][v].abs() > best.2 {
                    best = (w, v, cos[w][v].abs());
                }
            }
        }
        let (w, v, _) = best;
        used_w[w] = true;
        used_v[v] = true;
        out[w] = (v, cos[w][v] > 0.0);
    }
    Some(out)
}

/// Everything that can be checked before reading the voxels: the header, its sample type,
/// the limits and (uncompressed) the file's length. The single-image path calls this so that
/// a damaged volume gets its precise error there too.
pub(crate) fn check(bytes: &[u8], opts: &DecodeOptions) -> Result<(), DecodeError> {
    prepare(bytes, opts).map(|_| ())
}

fn prepare(bytes: &[u8], opts: &DecodeOptions) -> Result<(Header, Sample, bool), DecodeError> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let head = if gz { inflate_prefix(bytes, 540) } else { bytes.get(..bytes.len().min(540)).unwrap_or_default().to_vec() };
    let h = parse_header(&head)?;
    let sample = Sample::from_code(h.datatype)?;
    if h.bitpix != 8 * sample.bytes() as i32 {
        return Err(malformed(format!("bitpix {} does not match {} samples", h.bitpix, sample.name())));
    }
    let [nx, ny, nz, ..] = h.dims;
    check_voxels(nx, ny, nz, &opts.limits)?;
    let data_bytes = nx.saturating_mul(ny).saturating_mul(nz).saturating_mul(sample.bytes() as u64);
    if !gz && (bytes.len() as u64) < h.vox_offset.saturating_add(data_bytes) {
        return Err(malformed(format!(
            "the file is {} bytes but its header places {nx}×{ny}×{nz} {} voxels at byte {} (needs {})",
            bytes.len(),
            sample.name(),
            h.vox_offset,
            h.vox_offset.saturating_add(data_bytes)
        )));
    }
    Ok((h, sample, gz))
}

/// Decode a NIfTI file (plain or gzip) into a [`Volume`].
pub(crate) fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<Volume, DecodeError> {
    let (h, sample, gz) = prepare(bytes, opts)?;
    let [nx, ny, nz, ..] = h.dims;
    let volumes_in_file = h.dims.iter().skip(3).take(h.ndim.saturating_sub(3)).fold(1u64, |a, &d| a.saturating_mul(d));
    let voxels_n = (nx * ny * nz) as usize;
    let n = [nx as usize, ny as usize, nz as usize];
    let Layout { placement, out_n, base, step, spacing_mm, slice_z_mm } = layout(&h, n);
    let place = |i: usize, j: usize, k: usize| (base[0] + step[0] * i as i64 + base[1] + step[1] * j as i64 + base[2] + step[2] * k as i64) as usize;

    let slope_given = h.slope != 0.0 && h.slope.is_finite();
    let (slope, inter) = if slope_given { (h.slope, if h.inter.is_finite() { h.inter } else { 0.0 }) } else { (1.0, 0.0) };

    let mut voxels: Vec<i16> = Vec::new();
    voxels.try_reserve_exact(voxels_n).map_err(|_| DecodeError::ResourceLimit { format: FMT })?;
    voxels.resize(voxels_n, 0);

    // Pass 1: statistics of the values, and the stored voxels when they can be exact.
    let raw = sample.fits_i16();
    let mut stats = Stats::default();
    let mut exact = true;
    stream(bytes, gz, &h, sample, n, |i, j, k, x| {
        let dst = place(i, j, k);
        let v = x * slope + inter;
        stats.add(v);
        let stored = if raw { Some(x) } else { Some(v).filter(|v| v.fract() == 0.0 && (-32768.0..=32767.0).contains(v)) };
        match (exact, stored) {
            (true, Some(s)) => {
                if let Some(d) = voxels.get_mut(dst) {
                    *d = s as i16;
                }
            }
            _ => exact = false,
        }
    })?;
    if stats.finite == 0 {
        return Err(DecodeError::NoFiniteValues);
    }
    let (scale, offset, quantised) = if exact && raw {
        (slope as f32, inter as f32, false)
    } else if exact {
        (1.0, 0.0, false)
    } else {
        // Pass 2: integers spanning at most 65,536 values shift into i16 exactly; anything
        // else is quantised over its finite range. Non-finite samples take the lowest value.
        let span = stats.hi - stats.lo;
        let exact_shift = stats.integral && span <= 65535.0;
        let scale = if exact_shift || span <= 0.0 { 1.0 } else { span / 65535.0 };
        let offset = stats.lo + 32768.0 * scale;
        let lo = stats.lo;
        stream(bytes, gz, &h, sample, n, |i, j, k, x| {
            let v = x * slope + inter;
            let v = if v.is_finite() { v } else { lo };
            if let Some(d) = voxels.get_mut(place(i, j, k)) {
                *d = ((v - offset) / scale).round().clamp(-32768.0, 32767.0) as i16;
            }
        })?;
        (scale as f32, offset as f32, !exact_shift)
    };

    let intensity = if looks_like_hounsfield(stats.lo as f32, stats.hi as f32, stats.below_minus_900, stats.finite) {
        super::Intensity::Hounsfield
    } else {
        super::Intensity::Raw
    };
    let volume = Volume {
        format: FMT,
        columns: out_n[0] as u32,
        rows: out_n[1] as u32,
        slices: out_n[2] as u32,
        spacing_mm,
        slice_z_mm,
        placement,
        intensity,
        scale,
        offset,
        quantised,
        voxels,
        replaced_non_finite: stats.non_finite,
        volumes_in_file,
        source: format!("NIfTI-{}, {}{}{}", h.version, sample.name(), if h.big_endian { ", big-endian" } else { "" }, if gz { ", gzip" } else { "" }),
    };
    // A slope or range beyond what 32-bit floats hold (found by fuzzing: a NIfTI-2 scl_slope
    // of 1e300) would give infinite voxel values downstream.
    let (lo, hi) = volume.value_range();
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(unsupported(format!("values (after scl_slope {} and scl_inter {}) beyond the range of 32-bit floats", h.slope, h.inter)));
    }
    Ok(volume)
}

/// Where each stored voxel goes in the radiological volume, and the geometry that results.
struct Layout {
    placement: Placement,
    /// Output sizes: columns, rows, slices.
    out_n: [usize; 3],
    /// Each stored axis' contribution to the output index: `base + step × index`.
    base: [i64; 3],
    step: [i64; 3],
    spacing_mm: [f32; 3],
    slice_z_mm: Vec<f32>,
}

// Every index below is an axis number in 0..3 (from `axes` or a 0..3 loop) into a `[_; 3]`.
#[allow(clippy::indexing_slicing)]
fn layout(h: &Header, n: [usize; 3]) -> Layout {
    let m = affine(h);
    let (placement, map) = match m.as_ref().and_then(axes) {
        Some(a) => (Placement::Oriented, a),
        None => (Placement::StoredOrder, [(0, false), (1, false), (2, false)]),
    };
    let out_n = [n[map[0].0], n[map[1].0], n[map[2].0]];
    let out_stride = [1i64, out_n[0] as i64, (out_n[0] * out_n[1]) as i64];
    let mut base = [0i64; 3];
    let mut step = [0i64; 3];
    for (o, &(v, flip)) in map.iter().enumerate() {
        if flip {
            base[v] = out_stride[o] * (n[v] as i64 - 1);
            step[v] = -out_stride[o];
        } else {
            step[v] = out_stride[o];
        }
    }
    let spacing_mm = match &m {
        Some(m) => std::array::from_fn(|o| {
            let v = map[o].0;
            ((0..3).map(|w| m[w][v] * m[w][v]).sum::<f64>().sqrt()) as f32
        }),
        None => [1, 2, 3].map(|i| {
            let p = h.pixdim[i].abs();
            if p > 0.0 && p.is_finite() { p as f32 } else { 1.0 }
        }),
    };
    let slice_z_mm = (0..out_n[2])
        .map(|s| match &m {
            // World z of the centre of output slice s: the stored index along the slice axis
            // (the flip undone), the other two axes at their centre.
            Some(m) => {
                let mut idx = [0.0f64; 3];
                for (o, &(v, flip)) in map.iter().enumerate() {
                    idx[v] = match (o, flip) {
                        (2, true) => (n[v] - 1 - s) as f64,
                        (2, false) => s as f64,
                        _ => (n[v] as f64 - 1.0) / 2.0,
                    };
                }
                (m[2][0] * idx[0] + m[2][1] * idx[1] + m[2][2] * idx[2] + m[2][3]) as f32
            }
            None => -(s as f32) * spacing_mm[2],
        })
        .collect();
    Layout { placement, out_n, base, step, spacing_mm, slice_z_mm }
}

#[derive(Default)]
struct Stats {
    lo: f64,
    hi: f64,
    finite: u64,
    non_finite: u64,
    below_minus_900: u64,
    integral: bool,
}

impl Stats {
    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            self.non_finite += 1;
            return;
        }
        if self.finite == 0 {
            (self.lo, self.hi, self.integral) = (v, v, true);
        }
        self.lo = self.lo.min(v);
        self.hi = self.hi.max(v);
        self.integral &= v.fract() == 0.0;
        self.below_minus_900 += u64::from(v <= -900.0);
        self.finite += 1;
    }
}

fn check_voxels(nx: u64, ny: u64, nz: u64, limits: &Limits) -> Result<(), DecodeError> {
    let plane = nx.saturating_mul(ny);
    if plane > limits.max_pixels || nx > u64::from(u32::MAX) || ny > u64::from(u32::MAX) {
        return Err(DecodeError::TooManyPixels { width: nx, height: ny, frames: nz, limit: limits.max_pixels });
    }
    let total = plane.saturating_mul(nz);
    if total > limits.max_voxels || nz > u64::from(u32::MAX) {
        return Err(DecodeError::TooManyVoxels { columns: nx, rows: ny, slices: nz, limit: limits.max_voxels });
    }
    Ok(())
}

/// As many of the first `n` decompressed bytes as a (possibly damaged) gzip stream yields:
/// enough to recognise a NIfTI header in a file whose later part is broken.
pub(crate) fn inflate_prefix(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let mut r = MultiGzDecoder::new(bytes);
    while let Some(rest) = out.get_mut(got..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    out.truncate(got);
    out
}

/// Feed every voxel of the first volume, in stored order, to `f(i, j, k, sample)`.
fn stream(bytes: &[u8], gz: bool, h: &Header, sample: Sample, n: [usize; 3], mut f: impl FnMut(usize, usize, usize, f64)) -> Result<(), DecodeError> {
    let mut reader: Box<dyn Read + '_> = if gz {
        let mut r = MultiGzDecoder::new(bytes);
        let skipped = std::io::copy(&mut (&mut r).take(h.vox_offset), &mut std::io::sink()).map_err(gz_err)?;
        if skipped < h.vox_offset {
            return Err(malformed(format!("the data ends at byte {skipped}, before the voxels at {}", h.vox_offset)));
        }
        Box::new(r)
    } else {
        Box::new(bytes.get(h.vox_offset as usize..).unwrap_or_default())
    };
    let row_bytes = n[0] * sample.bytes();
    let mut row = vec![0u8; row_bytes];
    let mut done = 0u64;
    for k in 0..n[2] {
        for j in 0..n[1] {
            read_full(&mut reader, &mut row).map_err(|e| match e {
                Short::Eof => malformed(format!("the voxel data stops after {done} of {} rows", n[1] * n[2])),
                Short::Io(e) => gz_err(e),
            })?;
            for (i, s) in row.chunks_exact(sample.bytes()).enumerate() {
                f(i, j, k, sample.read(s, h.big_endian));
            }
            done += 1;
        }
    }
    Ok(())
}

enum Short {
    Eof,
    Io(std::io::Error),
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<(), Short> {
    r.read_exact(buf).map_err(|e| if e.kind() == std::io::ErrorKind::UnexpectedEof { Short::Eof } else { Short::Io(e) })
}

fn gz_err(e: std::io::Error) -> DecodeError {
    DecodeError::Malformed { format: FMT, detail: format!("the gzip stream is damaged: {e}"), source: Some(super::Upstream::new(e)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal NIfTI-1 file: `dims` int16 voxels numbered 0.., an sform of `srow`.
    fn nifti1(dims: [i16; 3], srow: [[f32; 4]; 3]) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        h[0..4].copy_from_slice(&348i32.to_le_bytes());
        let d = [3, dims[0], dims[1], dims[2], 1, 1, 1, 1];
        for (i, v) in d.iter().enumerate() {
            h[40 + 2 * i..42 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        h[70..72].copy_from_slice(&4i16.to_le_bytes());
        h[72..74].copy_from_slice(&16i16.to_le_bytes());
        h[108..112].copy_from_slice(&352f32.to_le_bytes());
        h[254..256].copy_from_slice(&1i16.to_le_bytes());
        for (r, row) in srow.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                h[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c].copy_from_slice(&v.to_le_bytes());
            }
        }
        h[344..348].copy_from_slice(b"n+1\0");
        let n = dims.iter().map(|&d| d as i32).product::<i32>();
        for v in 0..n {
            h.extend_from_slice(&(v as i16).to_le_bytes());
        }
        h
    }

    #[test]
    fn las_storage_is_shown_radiologically() {
        // i → −x (towards the patient's left), j → +y (anterior), k → +z (superior).
        let srow = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]];
        let v = decode(&nifti1([3, 2, 2], srow), &DecodeOptions::default()).unwrap();
        assert_eq!((v.columns, v.rows, v.slices, v.placement), (3, 2, 2, Placement::Oriented));
        // Slice 0 is the most superior stored slice (k = 1), row 0 the most anterior (j = 1),
        // and columns already run right → left (i increases towards the left).
        assert_eq!(v.axial(0).unwrap().pixels, vec![9.0, 10.0, 11.0, 6.0, 7.0, 8.0]);
        assert_eq!(v.slice_z_mm, vec![2.0, 0.0]);
        assert_eq!(v.spacing_mm, [1.0, 1.0, 2.0]);
        assert_eq!(v.intensity, crate::decode::Intensity::Raw);
    }

    #[test]
    fn header_lies_are_typed_errors() {
        let srow = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
        let good = nifti1([4, 4, 4], srow);
        let opts = DecodeOptions::default();
        assert_eq!(decode(&good[..good.len() - 1], &opts).unwrap_err().kind(), "malformed");
        let mut huge = good.clone();
        huge[42..44].copy_from_slice(&i16::MAX.to_le_bytes());
        huge[44..46].copy_from_slice(&i16::MAX.to_le_bytes());
        huge[46..48].copy_from_slice(&i16::MAX.to_le_bytes());
        assert_eq!(decode(&huge, &opts).unwrap_err().kind(), "too_many_pixels");
        let mut inside = good.clone();
        inside[108..112].copy_from_slice(&100f32.to_le_bytes());
        assert_eq!(decode(&inside, &opts).unwrap_err().kind(), "malformed");
        let mut neg = good;
        neg[42..44].copy_from_slice(&(-4i16).to_le_bytes());
        assert_eq!(decode(&neg, &opts).unwrap_err().kind(), "malformed");
    }
}
