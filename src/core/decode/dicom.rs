//! DICOM: parse with dicom-rs (Part 10 with or without the 128-byte preamble, or a bare data
//! set), decode pixel data with its pure-Rust codecs (native, RLE, JPEG, JPEG 2000), then apply
//! the modality LUT (rescale slope/intercept, in floating point) so CT values are Hounsfield units.
//! MONOCHROME1 is recorded, not inverted here: inversion belongs after windowing (preprocess).

use std::io::Cursor;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxRegistry, entries};
use serde::Serialize;

use super::{DecodeError, DecodeOptions, Format, Intensity, MedImage, Photometric, Upstream, Window, check_pixels, luma};

/// DICOM facts that matter for reading the pixels right.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DicomMeta {
    pub transfer_syntax_uid: String,
    pub transfer_syntax_name: String,
    pub photometric_interpretation: String,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub pixel_representation: u16,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub rescale_type: Option<String>,
    /// True when the file carries a VOI LUT Sequence (a LUT instead of, or beside, a window).
    pub has_voi_lut_sequence: bool,
    pub voi_lut_function: Option<String>,
    pub sop_class_uid: Option<String>,
    pub study_description: Option<String>,
    pub series_description: Option<String>,
    /// Where the slice lies in its study: what stacking a series into a volume needs.
    pub geometry: SliceGeometry,
}

/// The identity and patient-space placement of one DICOM image (all optional: a secondary
/// capture or an anonymised export may lack any of them).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SliceGeometry {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub series_number: Option<i64>,
    pub instance_number: Option<i64>,
    /// Image Position (Patient): the centre of the first transmitted pixel, LPS millimetres.
    pub image_position: Option<[f64; 3]>,
    /// Image Orientation (Patient): the row direction then the column direction, LPS.
    pub image_orientation: Option<[f64; 6]>,
    /// Pixel Spacing: between rows, then between columns (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    /// Image Type values (`ORIGINAL\PRIMARY\AXIAL`, `…\LOCALIZER`).
    pub image_type: Vec<String>,
}

/// Stored pixel values of one frame (before the modality LUT), for checking decoders.
#[derive(Debug, Clone)]
pub struct StoredFrame {
    pub width: u32,
    pub height: u32,
    pub samples_per_pixel: u16,
    pub values: Vec<i64>,
    pub meta: DicomMeta,
}

const FMT: Format = Format::Dicom;

fn malformed(detail: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed { format: FMT, detail: super::plain(detail.to_string()), source: None }
}

/// A DICOM library error as ours, the error kept as the source.
fn malformed_by(detail: impl std::fmt::Display, e: impl std::error::Error + Send + Sync + 'static) -> DecodeError {
    DecodeError::Malformed { format: FMT, detail: super::plain(detail.to_string()), source: Some(Upstream::new(e)) }
}

fn parse(bytes: &[u8], format: Format) -> Result<DefaultDicomObject, DecodeError> {
    // Every declared length is checked against the file before the parser allocates by it.
    super::dicom_scan::check_lengths(bytes, format != Format::Dicom).map_err(malformed)?;
    match format {
        Format::Dicom => {
            let preamble = if bytes.get(128..132) == Some(b"DICM") { ReadPreamble::Always } else { ReadPreamble::Never };
            OpenFileOptions::new().read_preamble(preamble).from_reader(Cursor::new(bytes)).map_err(|e| malformed_by(e.to_string(), e))
        }
        _ => {
            // A bare data set: guess the VR encoding from the first element.
            let explicit = bytes.get(4..6).is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase));
            let ts = if explicit { entries::EXPLICIT_VR_LITTLE_ENDIAN.erased() } else { entries::IMPLICIT_VR_LITTLE_ENDIAN.erased() };
            let obj = InMemDicomObject::read_dataset_with_ts(Cursor::new(bytes), &ts).map_err(|e| malformed_by(e.to_string(), e))?;
            let sop_class = str_of(&obj, tags::SOP_CLASS_UID).unwrap_or_else(|| "1.2.840.10008.5.1.4.1.1.7".into());
            let sop_instance = str_of(&obj, tags::SOP_INSTANCE_UID).unwrap_or_else(|| "2.25.0".into());
            obj.with_meta(
                FileMetaTableBuilder::new().transfer_syntax(ts.uid()).media_storage_sop_class_uid(sop_class).media_storage_sop_instance_uid(sop_instance),
            )
            .map_err(|e| malformed_by(e.to_string(), e))
        }
    }
}

/// JPEG 2000 frames must match the header before decoding: the codec adapter writes every
/// decoded sample into a buffer sized from Rows × Columns × Samples per Pixel and panics (which
/// kills the WebAssembly module) when the codestream's SIZ marker declares more. Found by
/// `cargo fuzz run dicom`.
fn check_jpeg2000(obj: &DefaultDicomObject, h: &Header, frame: u32) -> Result<(), DecodeError> {
    use dicom_encoding::adapters::PixelDataObject;
    if !h.meta.transfer_syntax_uid.starts_with("1.2.840.10008.1.2.4.9") && !h.meta.transfer_syntax_uid.starts_with("1.2.840.10008.1.2.4.20") {
        return Ok(());
    }
    let Some(data) = obj.frame_pixel_data(frame) else { return Ok(()) };
    // SOC (FF4F) then SIZ (FF51): Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz.
    let head = data.get(..data.len().min(4096)).unwrap_or_default();
    let Some(at) = head.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]) else { return Ok(()) };
    let be32 = |o: usize| data.get(at + o..at + o + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
    let be16 = |o: usize| data.get(at + o..at + o + 2).and_then(|b| b.try_into().ok()).map(u16::from_be_bytes);
    let siz = (be32(8), be32(12), be32(16), be32(20), be16(40));
    let (Some(xsiz), Some(ysiz), Some(xo), Some(yo), Some(csiz)) = siz else {
        return Err(malformed("the JPEG 2000 codestream header is cut short"));
    };
    let (w, hgt) = (xsiz.saturating_sub(xo), ysiz.saturating_sub(yo));
    if (w, hgt) != (h.cols, h.rows) || csiz != h.meta.samples_per_pixel {
        return Err(malformed(format!(
            "the JPEG 2000 image is {w}×{hgt} with {csiz} component(s), but the DICOM header says {}×{} with {}",
            h.cols, h.rows, h.meta.samples_per_pixel
        )));
    }
    Ok(())
}

fn str_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.value().to_str().ok()?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string();
    (!s.is_empty()).then_some(s)
}

/// Decimal strings may be multi-valued ("40\-600") and written like "-01.024000E+03".
fn floats_of(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    let Some(e) = obj.get(tag) else { return Vec::new() };
    if let Ok(v) = e.value().to_multi_float64() {
        return v.into_iter().filter(|x| x.is_finite()).collect();
    }
    let Ok(s) = e.value().to_str() else { return Vec::new() };
    s.split('\\').filter_map(|p| p.trim_matches(|c: char| c.is_whitespace() || c == '\0').parse::<f64>().ok()).filter(|x| x.is_finite()).collect()
}

fn u16_of(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    obj.get(tag)?.value().to_int::<u16>().ok()
}

fn u32_of(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag)?.value().to_int::<u32>().ok().or_else(|| str_of(obj, tag)?.parse().ok())
}

fn geometry(ds: &InMemDicomObject) -> SliceGeometry {
    let fixed = |tag: Tag| floats_of(ds, tag);
    let int = |tag: Tag| str_of(ds, tag).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()).map(|v| v.round() as i64);
    SliceGeometry {
        study_instance_uid: str_of(ds, tags::STUDY_INSTANCE_UID),
        series_instance_uid: str_of(ds, tags::SERIES_INSTANCE_UID),
        series_number: int(tags::SERIES_NUMBER),
        instance_number: int(tags::INSTANCE_NUMBER),
        image_position: fixed(tags::IMAGE_POSITION_PATIENT).first_chunk::<3>().copied(),
        image_orientation: fixed(tags::IMAGE_ORIENTATION_PATIENT).first_chunk::<6>().copied(),
        pixel_spacing: fixed(tags::PIXEL_SPACING).first_chunk::<2>().copied().filter(|s| s.iter().all(|v| *v > 0.0)),
        slice_thickness: fixed(tags::SLICE_THICKNESS).first().copied().filter(|v| *v > 0.0),
        image_type: str_of(ds, tags::IMAGE_TYPE).map(|t| t.split('\\').map(|p| p.trim().to_ascii_uppercase()).collect()).unwrap_or_default(),
    }
}

/// One frame's geometry in a multi-frame (enhanced) image: the file's, overridden by the
/// frame's own functional groups (Plane Position, Plane Orientation, Pixel Measures), which the
/// per-frame sequence carries for each frame and the shared sequence for all.
fn frame_geometry(ds: &InMemDicomObject, frame: u32, file: &SliceGeometry) -> SliceGeometry {
    let item = |seq: Tag, index: usize| ds.get(seq).and_then(|e| e.value().items()).and_then(|items| items.get(index));
    let groups = [item(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame as usize), item(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0)];
    let find = |macro_seq: Tag, tag: Tag| -> Vec<f64> {
        groups
            .iter()
            .flatten()
            .filter_map(|g| g.get(macro_seq).and_then(|e| e.value().items()).and_then(|items| items.first()))
            .map(|m| floats_of(m, tag))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    };
    let mut g = file.clone();
    g.instance_number = Some(i64::from(frame) + 1);
    if let Some(p) = find(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT).first_chunk::<3>() {
        g.image_position = Some(*p);
    }
    if let Some(o) = find(tags::PLANE_ORIENTATION_SEQUENCE, tags::IMAGE_ORIENTATION_PATIENT).first_chunk::<6>() {
        g.image_orientation = Some(*o);
    }
    if let Some(s) = find(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING).first_chunk::<2>().filter(|s| s.iter().all(|v| *v > 0.0)) {
        g.pixel_spacing = Some(*s);
    }
    if let Some(&t) = find(tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS).first().filter(|t| **t > 0.0) {
        g.slice_thickness = Some(t);
    }
    g
}

struct Header {
    rows: u32,
    cols: u32,
    frames: u32,
    meta: DicomMeta,
    windows: Vec<Window>,
    modality: Option<String>,
    body_part: Option<String>,
}

fn header(obj: &DefaultDicomObject) -> Result<Header, DecodeError> {
    let ts_uid = obj.meta().transfer_syntax().trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
    let ds: &InMemDicomObject = obj;
    if ds.get(tags::PIXEL_DATA).is_none() {
        if ds.get(tags::FLOAT_PIXEL_DATA).is_some() || ds.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some() {
            return Err(DecodeError::Unsupported { format: FMT, what: "float pixel data (7FE0,0008/0009)".into(), source: None });
        }
        return Err(DecodeError::NoPixelData);
    }
    let rows = u16_of(ds, tags::ROWS).ok_or_else(|| malformed("missing Rows (0028,0010)"))? as u32;
    let cols = u16_of(ds, tags::COLUMNS).ok_or_else(|| malformed("missing Columns (0028,0011)"))? as u32;
    let frames = u32_of(ds, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let bits_allocated = u16_of(ds, tags::BITS_ALLOCATED).ok_or_else(|| malformed("missing Bits Allocated (0028,0100)"))?;
    let bits_stored = u16_of(ds, tags::BITS_STORED).unwrap_or(bits_allocated);
    let high_bit = u16_of(ds, tags::HIGH_BIT).unwrap_or(bits_stored.saturating_sub(1));
    let pixel_representation = u16_of(ds, tags::PIXEL_REPRESENTATION).unwrap_or(0);
    let samples_per_pixel = u16_of(ds, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let photometric = str_of(ds, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into()).to_ascii_uppercase();
    let slope = floats_of(ds, tags::RESCALE_SLOPE).first().copied().filter(|s| *s != 0.0).unwrap_or(1.0);
    let intercept = floats_of(ds, tags::RESCALE_INTERCEPT).first().copied().unwrap_or(0.0);
    let centers = floats_of(ds, tags::WINDOW_CENTER);
    let widths = floats_of(ds, tags::WINDOW_WIDTH);
    let windows = centers.iter().zip(widths.iter()).filter(|(_, w)| **w > 0.0).map(|(c, w)| Window { center: *c as f32, width: *w as f32 }).collect();
    let ts_name = TransferSyntaxRegistry.get(&ts_uid).map(|t| t.name().to_string()).unwrap_or_else(|| "unknown transfer syntax".into());
    let meta = DicomMeta {
        transfer_syntax_uid: ts_uid,
        transfer_syntax_name: ts_name,
        photometric_interpretation: photometric,
        samples_per_pixel,
        bits_allocated,
        bits_stored,
        high_bit,
        pixel_representation,
        rescale_slope: slope,
        rescale_intercept: intercept,
        rescale_type: str_of(ds, tags::RESCALE_TYPE),
        has_voi_lut_sequence: ds.get(tags::VOILUT_SEQUENCE).is_some(),
        voi_lut_function: str_of(ds, tags::VOILUT_FUNCTION),
        sop_class_uid: str_of(ds, tags::SOP_CLASS_UID),
        study_description: str_of(ds, tags::STUDY_DESCRIPTION),
        series_description: str_of(ds, tags::SERIES_DESCRIPTION),
        geometry: geometry(ds),
    };
    Ok(Header {
        rows,
        cols,
        frames,
        meta,
        windows,
        modality: str_of(ds, tags::MODALITY).map(|m| m.to_ascii_uppercase()),
        body_part: str_of(ds, tags::BODY_PART_EXAMINED),
    })
}

fn check_syntax(meta: &DicomMeta) -> Result<(), DecodeError> {
    let named = || format!("{} {}", meta.transfer_syntax_name, meta.transfer_syntax_uid);
    match TransferSyntaxRegistry.get(&meta.transfer_syntax_uid) {
        None => Err(DecodeError::UnsupportedTransferSyntax(format!("unknown {}", meta.transfer_syntax_uid))),
        Some(ts) if !ts.can_decode_all() => Err(DecodeError::UnsupportedTransferSyntax(named())),
        Some(_) => Ok(()),
    }
}

fn check_layout(h: &Header) -> Result<(), DecodeError> {
    let m = &h.meta;
    if !matches!(m.bits_allocated, 1 | 8 | 16 | 32) {
        return Err(DecodeError::Unsupported { format: FMT, what: format!("Bits Allocated {}", m.bits_allocated), source: None });
    }
    if m.bits_stored == 0 || m.bits_stored > m.bits_allocated || m.high_bit >= m.bits_allocated || m.high_bit + 1 < m.bits_stored {
        return Err(malformed(format!("inconsistent bit layout: allocated {}, stored {}, high bit {}", m.bits_allocated, m.bits_stored, m.high_bit)));
    }
    if !matches!(m.samples_per_pixel, 1 | 3) {
        return Err(DecodeError::Unsupported { format: FMT, what: format!("Samples per Pixel {}", m.samples_per_pixel), source: None });
    }
    let pi = m.photometric_interpretation.as_str();
    let known = matches!(pi, "MONOCHROME1" | "MONOCHROME2" | "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_RCT" | "YBR_ICT");
    if !known {
        return Err(DecodeError::Unsupported { format: FMT, what: format!("photometric interpretation {pi}"), source: None });
    }
    if (m.samples_per_pixel == 3) == pi.starts_with("MONOCHROME") {
        return Err(malformed(format!("{pi} with {} samples per pixel", m.samples_per_pixel)));
    }
    Ok(())
}

/// Parse and decode the stored values of one frame (no modality LUT), with the header facts.
pub fn dicom_stored_frame(bytes: &[u8], frame: u32, opts: &DecodeOptions) -> Result<StoredFrame, DecodeError> {
    let format = super::precheck(bytes, opts)?;
    if !matches!(format, Format::Dicom | Format::DicomRaw) {
        return Err(DecodeError::Unsupported { format, what: "not a DICOM file".into(), source: None });
    }
    let obj = parse(bytes, format)?;
    let h = header(&obj)?;
    stored(&obj, &h, frame, opts)
}

fn stored(obj: &DefaultDicomObject, h: &Header, frame: u32, opts: &DecodeOptions) -> Result<StoredFrame, DecodeError> {
    check_layout(h)?;
    check_pixels(FMT, h.cols as u64, h.rows as u64, 1, &opts.limits)?;
    check_syntax(&h.meta)?;
    if frame >= h.frames {
        return Err(DecodeError::FrameOutOfRange { requested: frame, frames: h.frames });
    }
    check_jpeg2000(obj, h, frame)?;
    let decoded = obj.decode_pixel_data_frame(frame).map_err(|e| {
        let message = e.to_string();
        // dicom-pixeldata reports a frame past the data's end only in words.
        if message.contains("out of range") {
            malformed_by("the pixel data is shorter than the rows × columns × frames in the header", e)
        } else {
            malformed_by(format!("pixel data: {message}"), e)
        }
    })?;
    let m = &h.meta;
    let spp = m.samples_per_pixel as usize;
    let n = (h.rows as usize) * (h.cols as usize) * spp;
    let bytes_per = if m.bits_allocated == 1 { 1 } else { (m.bits_allocated / 8) as usize };
    let Some(data) = decoded.data().get(..n * bytes_per) else {
        return Err(malformed(format!("pixel data holds {} bytes, {} needed for frame {frame}", decoded.data().len(), n * bytes_per)));
    };
    // Decoders hand back samples already expanded to whole bytes, little-endian.
    let bits = SampleBits { shift: (m.high_bit + 1 - m.bits_stored) as u32, stored: m.bits_stored as u32, signed: m.pixel_representation == 1 };
    let extract = |raw: u64| bits.extract(raw);
    let mut values: Vec<i64> = match m.bits_allocated {
        1 => data.iter().map(|&b| i64::from(b != 0)).collect(),
        8 => data.iter().map(|&b| extract(u64::from(b))).collect(),
        16 => data.as_chunks::<2>().0.iter().map(|&c| extract(u64::from(u16::from_le_bytes(c)))).collect(),
        _ => data.as_chunks::<4>().0.iter().map(|&c| extract(u64::from(u32::from_le_bytes(c)))).collect(),
    };
    let planar = u16_of(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1;
    // Encapsulated decoders return interleaved RGB; native planar data must be re-interleaved.
    if spp == 3 && planar && decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst {
        values = interleave_planes(&values);
    }
    Ok(StoredFrame { width: h.cols, height: h.rows, samples_per_pixel: m.samples_per_pixel, values, meta: m.clone() })
}

/// Where a stored value sits in its allocated bits: `stored` bits ending at High Bit, so
/// `shift` bits below them, two's complement when `signed`.
#[derive(Debug, Clone, Copy)]
struct SampleBits {
    shift: u32,
    stored: u32,
    signed: bool,
}

impl SampleBits {
    /// The stored value in an allocated sample `raw`: shifted down, masked to its bits (other
    /// bits may hold overlays or garbage), sign-extended when signed.
    fn extract(self, raw: u64) -> i64 {
        let v = (raw >> self.shift) & ((1u64 << self.stored) - 1);
        if self.signed && self.stored < 64 && (v >> (self.stored - 1)) & 1 == 1 { v as i64 - (1i64 << self.stored) } else { v as i64 }
    }
}

/// Re-interleave colour-by-plane samples (RR…GG…BB…) into colour-by-pixel order (RGBRGB…).
fn interleave_planes(planar: &[i64]) -> Vec<i64> {
    let px = planar.len() / 3;
    // px ≤ len / 3, so both splits are in bounds (split_at cannot panic here).
    let (r, gb) = planar.split_at(px);
    let (g, b) = gb.split_at(px);
    r.iter().zip(g).zip(b).flat_map(|((&r, &g), &b)| [r, g, b]).collect()
}

pub(super) fn decode(bytes: &[u8], format: Format, frame: Option<u32>, opts: &DecodeOptions) -> Result<Vec<MedImage>, DecodeError> {
    let obj = parse(bytes, format)?;
    let h = header(&obj)?;
    let wanted: Vec<u32> = match frame {
        Some(f) => vec![f],
        None => {
            check_pixels(FMT, h.cols as u64, h.rows as u64, h.frames as u64, &opts.limits)?;
            (0..h.frames).collect()
        }
    };
    let mut out = Vec::with_capacity(wanted.len());
    for f in wanted {
        out.push(frame_image(&obj, &h, f, format, opts)?);
    }
    Ok(out)
}

/// Visit every frame of a file, decoded one at a time from one parse (a 300-frame enhanced CT
/// never holds more than one frame as `f32`); the caller bounds the total.
pub(super) fn for_each_frame(bytes: &[u8], format: Format, opts: &DecodeOptions, mut visit: impl FnMut(MedImage)) -> Result<(), DecodeError> {
    let obj = parse(bytes, format)?;
    let h = header(&obj)?;
    for f in 0..h.frames {
        visit(frame_image(&obj, &h, f, format, opts)?);
    }
    Ok(())
}

fn frame_image(obj: &DefaultDicomObject, h: &Header, frame: u32, format: Format, opts: &DecodeOptions) -> Result<MedImage, DecodeError> {
    let s = stored(obj, h, frame, opts)?;
    let mut img = to_image(s, h, frame, format);
    if h.frames > 1
        && let Some(m) = img.dicom.as_mut()
    {
        m.geometry = frame_geometry(obj, frame, &m.geometry);
    }
    Ok(img)
}

fn to_image(s: StoredFrame, h: &Header, frame: u32, format: Format) -> MedImage {
    let m = &s.meta;
    let (slope, intercept) = (m.rescale_slope, m.rescale_intercept);
    let pi = m.photometric_interpretation.as_str();
    let (pixels, photometric): (Vec<f32>, Photometric) = if s.samples_per_pixel == 3 {
        let ybr = pi.starts_with("YBR") && !matches!(pi, "YBR_RCT" | "YBR_ICT");
        let px = s.values.as_chunks::<3>().0.iter().map(|&[a, b, cc]| {
            let (a, b, cc) = (a as f32, b as f32, cc as f32);
            // Y of YBR_FULL is already luminance; RGB → BT.601 luma.
            if ybr { a } else { luma(a, b, cc) }
        });
        (px.collect(), Photometric::Rgb)
    } else {
        let px = s.values.iter().map(|&v| (v as f64 * slope + intercept) as f32).collect();
        (px, if pi == "MONOCHROME1" { Photometric::Monochrome1 } else { Photometric::Monochrome2 })
    };
    let is_ct = h.modality.as_deref() == Some("CT");
    let hu_type = m.rescale_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("HU"));
    let intensity = if s.samples_per_pixel == 1 && is_ct && hu_type {
        Intensity::Hounsfield
    } else if s.samples_per_pixel == 1 {
        Intensity::Modality
    } else {
        Intensity::Raw
    };
    let bits_stored = m.bits_stored;
    MedImage {
        source_channels: s.samples_per_pixel,
        photometric,
        windows: h.windows.clone(),
        modality: h.modality.clone(),
        body_part: h.body_part.clone(),
        frame,
        frames: h.frames,
        dicom: Some(s.meta),
        ..MedImage::new(format, s.width, s.height, pixels, intensity, bits_stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bits_are_masked_shifted_and_sign_extended() {
        // 12 bits stored in 16 allocated, High Bit 11: the top nibble is not part of the value.
        let u12 = SampleBits { shift: 0, stored: 12, signed: false };
        assert_eq!(u12.extract(0xF123), 0x123);
        let s12 = SampleBits { shift: 0, stored: 12, signed: true };
        assert_eq!(s12.extract(0x0FFF), -1);
        assert_eq!(s12.extract(0x0800), -2048);
        assert_eq!(s12.extract(0x07FF), 2047);
        // High Bit 15 with 12 bits stored: the value sits in the top 12 bits.
        let high = SampleBits { shift: 4, stored: 12, signed: true };
        assert_eq!(high.extract(0xFFF0), -1);
        assert_eq!(high.extract(0x0010), 1);
        let s16 = SampleBits { shift: 0, stored: 16, signed: true };
        assert_eq!(s16.extract(u64::from(u16::from_le_bytes((-1024i16).to_le_bytes()))), -1024);
    }

    #[test]
    fn colour_planes_are_reinterleaved_by_pixel() {
        assert_eq!(interleave_planes(&[1, 2, 10, 20, 100, 200]), vec![1, 10, 100, 2, 20, 200]);
        assert!(interleave_planes(&[]).is_empty());
    }
}
