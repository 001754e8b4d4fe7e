//! Decode: turn the bytes a user hands us into one [`MedImage`], whatever the container
//! (PNG, JPEG, BMP, WebP, GIF, TIFF, DICOM), keeping what matters for medicine: values at
//! full depth, whether they are Hounsfield units, the photometric interpretation and the
//! windows the file carries; or, for a volume file (NIfTI), into one [`Volume`] whose slices
//! become `MedImage`s on demand. The format is sniffed from magic bytes, never from a name.

mod dicom;
mod dicom_scan;
mod nifti;
mod raster;
pub mod series;
mod sniff;
mod tiff;
mod volume;

pub use dicom::{DicomMeta, SliceGeometry, StoredFrame, dicom_stored_frame};
pub use sniff::{Format, Unrecognised, sniff};
pub use volume::{Placement, Plane, Volume};

use std::sync::Arc;

use serde::Serialize;

/// A display window (VOI) in the image's value units: centre (level) and width.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Window {
    pub center: f32,
    pub width: f32,
}

/// How to read the pixel values of a [`MedImage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    /// CT Hounsfield units (air ≈ −1000, water 0, bone ≳ 400).
    Hounsfield,
    /// DICOM values after the modality LUT (rescale) that are not CT Hounsfield units
    /// (e.g. radiograph detector values).
    Modality,
    /// Plain image samples (0..=2^bits − 1) with no physical unit.
    Raw,
}

/// Photometric interpretation of the source (after any colour conversion to one channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Photometric {
    /// Bright = high value (the usual case).
    Monochrome2,
    /// Bright = low value: displays must invert *after* windowing.
    Monochrome1,
    /// Colour source converted to luminance (ITU-R BT.601 weights).
    Rgb,
    /// Palette/indexed colour converted to luminance.
    Palette,
}

/// One decoded 2-D image (one frame), single channel, row-major, values as `f32`.
#[derive(Debug, Clone, Serialize)]
pub struct MedImage {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    #[serde(skip)]
    pub pixels: Vec<f32>,
    pub intensity: Intensity,
    /// Bits per sample as stored in the file (8, 12, 16, 32, 64 …).
    pub bits_stored: u16,
    /// Samples per pixel in the source (1 = grey, 3 = colour, 4 = colour + alpha …).
    pub source_channels: u16,
    /// True for floating-point samples (float TIFF).
    pub float_samples: bool,
    pub photometric: Photometric,
    /// Windows the file suggests, first is the default (DICOM Window Center/Width).
    pub windows: Vec<Window>,
    /// DICOM Modality (CT, DX, CR, OT …) when the file says.
    pub modality: Option<String>,
    /// DICOM Body Part Examined when the file says.
    pub body_part: Option<String>,
    /// Index of this frame and number of frames in the file.
    pub frame: u32,
    pub frames: u32,
    /// DICOM facts, when the source is DICOM.
    pub dicom: Option<DicomMeta>,
    /// Count of non-finite samples that were replaced (float TIFF with NaN/Inf).
    pub replaced_non_finite: u64,
    /// Colourfulness of a colour source (Hasler & Süsstrunk, 0 for grey; photos ≳ 30).
    pub colourfulness: f32,
}

impl MedImage {
    /// A single-frame, non-DICOM image with defaults for everything the caller does not set.
    pub fn new(format: Format, width: u32, height: u32, pixels: Vec<f32>, intensity: Intensity, bits_stored: u16) -> Self {
        MedImage {
            format,
            width,
            height,
            pixels,
            intensity,
            bits_stored,
            source_channels: 1,
            float_samples: false,
            photometric: Photometric::Monochrome2,
            windows: Vec::new(),
            modality: None,
            body_part: None,
            frame: 0,
            frames: 1,
            dicom: None,
            replaced_non_finite: 0,
            colourfulness: 0.0,
        }
    }

    /// A copy of everything but the pixels (for reports and results).
    pub fn clone_meta(&self) -> MedImage {
        MedImage {
            format: self.format,
            width: self.width,
            height: self.height,
            pixels: Vec::new(),
            intensity: self.intensity,
            bits_stored: self.bits_stored,
            source_channels: self.source_channels,
            float_samples: self.float_samples,
            photometric: self.photometric,
            windows: self.windows.clone(),
            modality: self.modality.clone(),
            body_part: self.body_part.clone(),
            frame: self.frame,
            frames: self.frames,
            dicom: self.dicom.clone(),
            replaced_non_finite: self.replaced_non_finite,
            colourfulness: self.colourfulness,
        }
    }

    /// Lowest and highest pixel value (0, 0 for an empty image).
    pub fn value_range(&self) -> (f32, f32) {
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for &v in &self.pixels {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi { (0.0, 0.0) } else { (lo, hi) }
    }

    /// Nominal full-scale value of a [`Intensity::Raw`] image (255 for 8-bit, 65535 for 16-bit).
    pub fn nominal_max(&self) -> f32 {
        if self.float_samples {
            1.0
        } else {
            let bits = self.bits_stored.clamp(1, 32) as i32;
            (2f64.powi(bits) - 1.0) as f32
        }
    }
}

/// How to read unsigned 16-bit greyscale TIFFs, which carry no unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TiffU16 {
    /// COVID-CTset's convention: value = HU + 1024 (so HU = value − 1024).
    #[default]
    HuPlus1024,
    /// Plain 16-bit intensities (e.g. a 16-bit radiograph).
    Raw,
}

/// Resource budgets checked before any large allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: usize,
    /// Pixels of one image or slice (all frames together for a multi-frame file).
    pub max_pixels: u64,
    /// Voxels of a volume. The default admits a 600-slice 512² CT (157 M voxels, 315 MB as
    /// the `i16` the volume is stored in).
    pub max_voxels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: 512 * 1024 * 1024, max_pixels: 64 * 1024 * 1024, max_voxels: 160 * 1024 * 1024 }
    }
}

/// Options for [`decode`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    pub limits: Limits,
    pub tiff_u16: TiffU16,
}

/// The decoding library's own error behind a [`DecodeError`], kept as its source so that a
/// developer can see the cause the plain-words message summarises. Two errors compare equal
/// whatever their upstream causes (the kind and the message are what a caller branches on).
#[derive(Debug, Clone)]
pub struct Upstream(Arc<dyn std::error::Error + Send + Sync>);

impl Upstream {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Upstream(Arc::new(e))
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Upstream {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Upstream {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Why a file could not be decoded. Every message is meant for the person who dropped it;
/// where a library's error caused it, that error is the [`std::error::Error::source`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {bytes} bytes, above the {limit}-byte limit")]
    FileTooLarge { bytes: usize, limit: usize },
    #[error("the image is {width}×{height}{}, above the limit of {limit} pixels", if *frames > 1 { format!(" × {frames} frames") } else { String::new() })]
    TooManyPixels { width: u64, height: u64, frames: u64, limit: u64 },
    #[error("the volume is {columns}×{rows}×{slices} voxels, above the limit of {limit} voxels")]
    TooManyVoxels { columns: u64, rows: u64, slices: u64, limit: u64 },
    #[error("this is a {0}, not an image this tool reads (PNG, JPEG, BMP, WebP, GIF, TIFF, DICOM or NIfTI)")]
    NotAnImage(&'static str),
    #[error("this looks like a text file, not an image")]
    Text,
    #[error(
        "this is a {format} volume (a whole scan), not a single image; the page reads single images, and the command line's `ctxr classify` scores a volume as a CT study"
    )]
    IsVolume { format: Format },
    #[error("this {format} file is a single image, not a volume")]
    NotAVolume { format: Format },
    #[error("unrecognised file format (not PNG, JPEG, BMP, WebP, GIF, TIFF, DICOM or NIfTI)")]
    UnknownFormat,
    #[error("the {format} file is damaged or truncated: {detail}")]
    Malformed {
        format: Format,
        detail: String,
        #[source]
        source: Option<Upstream>,
    },
    #[error("unsupported DICOM transfer syntax: {0}")]
    UnsupportedTransferSyntax(String),
    #[error("unsupported {format} content: {what}")]
    Unsupported {
        format: Format,
        what: String,
        #[source]
        source: Option<Upstream>,
    },
    #[error("the DICOM file has no pixel data (it may be a report, a structured document or a DICOMDIR)")]
    NoPixelData,
    #[error("the {format} decoder would need more memory than the limit allows (an oversized or hostile image)")]
    ResourceLimit { format: Format },
    #[error("frame {requested} requested but the file has {frames} frame(s)")]
    FrameOutOfRange { requested: u32, frames: u32 },
    #[error("the image holds no finite values")]
    NoFiniteValues,
}

impl DecodeError {
    /// A stable machine-readable name of the error kind (for tests, JSON and the web page).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::FileTooLarge { .. } => "file_too_large",
            DecodeError::TooManyPixels { .. } | DecodeError::ResourceLimit { .. } => "too_many_pixels",
            DecodeError::TooManyVoxels { .. } => "too_many_voxels",
            DecodeError::IsVolume { .. } => "is_volume",
            DecodeError::NotAVolume { .. } => "not_a_volume",
            DecodeError::NotAnImage(_) => "not_an_image",
            DecodeError::Text => "text",
            DecodeError::UnknownFormat => "unknown_format",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::UnsupportedTransferSyntax(_) => "unsupported_transfer_syntax",
            DecodeError::Unsupported { .. } => "unsupported",
            DecodeError::NoPixelData => "no_pixel_data",
            DecodeError::FrameOutOfRange { .. } => "frame_out_of_range",
            DecodeError::NoFiniteValues => "no_finite_values",
        }
    }
}

/// The decoder's message in plain words: its format prefix and any debug dump removed.
pub(crate) fn plain(detail: String) -> String {
    let mut s = detail.as_str();
    if let Some(i) = s.find(" while decoding") {
        s = &s[..i];
    }
    if let Some(i) = s.find('{') {
        s = &s[..i];
    }
    if let Some(i) = s.find(": ").filter(|_| s.starts_with("Format error")) {
        s = &s[i + 2..];
    }
    s.trim().trim_end_matches('.').to_string()
}

pub(crate) fn check_pixels(format: Format, width: u64, height: u64, frames: u64, limits: &Limits) -> Result<(), DecodeError> {
    let total = width.saturating_mul(height).saturating_mul(frames.max(1));
    if width == 0 || height == 0 {
        return Err(DecodeError::Malformed { format, detail: format!("image size {width}×{height} is empty"), source: None });
    }
    if total > limits.max_pixels {
        return Err(DecodeError::TooManyPixels { width, height, frames, limit: limits.max_pixels });
    }
    Ok(())
}

pub(crate) fn precheck(bytes: &[u8], opts: &DecodeOptions) -> Result<Format, DecodeError> {
    if bytes.len() > opts.limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge { bytes: bytes.len(), limit: opts.limits.max_file_bytes });
    }
    sniff(bytes).map_err(|u| match u {
        Unrecognised::Empty => DecodeError::Empty,
        Unrecognised::Known(name) => DecodeError::NotAnImage(name),
        Unrecognised::Text => DecodeError::Text,
        Unrecognised::Unknown => DecodeError::UnknownFormat,
    })
}

/// Decode the first frame of any supported file.
pub fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<MedImage, DecodeError> {
    decode_frame(bytes, 0, opts)
}

/// Decode one frame (0-based) of any supported file; non-DICOM files have one frame.
pub fn decode_frame(bytes: &[u8], frame: u32, opts: &DecodeOptions) -> Result<MedImage, DecodeError> {
    let format = precheck(bytes, opts)?;
    match format {
        Format::Dicom | Format::DicomRaw => dicom::decode(bytes, format, Some(frame), opts).and_then(first),
        Format::Tiff => only_frame(tiff::decode(bytes, opts)?, frame),
        Format::Nifti => nifti::check(bytes, opts).and(Err(DecodeError::IsVolume { format })),
        other => only_frame(raster::decode(bytes, other, opts)?, frame),
    }
}

/// Decode every frame of a file (multi-frame DICOM); other files give one image.
pub fn decode_all_frames(bytes: &[u8], opts: &DecodeOptions) -> Result<Vec<MedImage>, DecodeError> {
    let format = precheck(bytes, opts)?;
    match format {
        Format::Dicom | Format::DicomRaw => dicom::decode(bytes, format, None, opts),
        Format::Tiff => Ok(vec![tiff::decode(bytes, opts)?]),
        Format::Nifti => nifti::check(bytes, opts).and(Err(DecodeError::IsVolume { format })),
        other => Ok(vec![raster::decode(bytes, other, opts)?]),
    }
}

/// Visit every frame of a file, decoded one at a time (multi-frame DICOM: each with its own
/// geometry); other images give their one image, volumes answer [`DecodeError::IsVolume`].
/// Each frame is checked against the pixel limit; the caller bounds the total.
pub fn for_each_frame(bytes: &[u8], opts: &DecodeOptions, mut visit: impl FnMut(MedImage)) -> Result<(), DecodeError> {
    let format = precheck(bytes, opts)?;
    match format {
        Format::Dicom | Format::DicomRaw => dicom::for_each_frame(bytes, format, opts, visit),
        Format::Tiff => {
            visit(tiff::decode(bytes, opts)?);
            Ok(())
        }
        Format::Nifti => nifti::check(bytes, opts).and(Err(DecodeError::IsVolume { format })),
        other => {
            visit(raster::decode(bytes, other, opts)?);
            Ok(())
        }
    }
}

/// Whether `bytes` hold a volume, to be read with [`decode_volume`] rather than [`decode`].
pub fn is_volume(bytes: &[u8]) -> bool {
    sniff(bytes) == Ok(Format::Nifti)
}

/// Decode a volume file (NIfTI-1 or -2, plain or gzip) into one [`Volume`] in radiological
/// axial order. Files that are single images answer [`DecodeError::NotAVolume`].
pub fn decode_volume(bytes: &[u8], opts: &DecodeOptions) -> Result<Volume, DecodeError> {
    match precheck(bytes, opts)? {
        Format::Nifti => nifti::decode(bytes, opts),
        format => Err(DecodeError::NotAVolume { format }),
    }
}

fn first(mut v: Vec<MedImage>) -> Result<MedImage, DecodeError> {
    v.pop().ok_or(DecodeError::NoPixelData)
}

fn only_frame(img: MedImage, frame: u32) -> Result<MedImage, DecodeError> {
    if frame == 0 { Ok(img) } else { Err(DecodeError::FrameOutOfRange { requested: frame, frames: 1 }) }
}

/// ITU-R BT.601 luma, the weights PIL's `convert("L")` uses (how the datasets were made grey).
#[inline]
pub(crate) fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}
