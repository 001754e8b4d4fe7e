//! Format detection from magic bytes: the file name and extension are never consulted.

use serde::Serialize;

/// A container format recognised from the first bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Png,
    Jpeg,
    Gif,
    Bmp,
    Webp,
    Tiff,
    /// DICOM Part 10 file (with or without the 128-byte preamble).
    Dicom,
    /// A bare DICOM data set without the Part 10 header ("DICM" and file meta group),
    /// as found on some hospital CDs. Read as Implicit VR Little Endian.
    DicomRaw,
    /// NIfTI-1 or NIfTI-2 volume, plain or gzip-compressed.
    Nifti,
}

impl Format {
    /// A short human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Webp => "WebP",
            Format::Tiff => "TIFF",
            Format::Dicom => "DICOM",
            Format::DicomRaw => "DICOM (no Part 10 header)",
            Format::Nifti => "NIfTI",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the bytes are when they are not an image we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrecognised {
    Empty,
    /// A known non-image (or unsupported image) format, by name.
    Known(&'static str),
    /// Looks like text.
    Text,
    /// Nothing we recognise.
    Unknown,
}

/// Detect the format of `bytes` from its magic numbers.
pub fn sniff(bytes: &[u8]) -> Result<Format, Unrecognised> {
    if bytes.is_empty() {
        return Err(Unrecognised::Empty);
    }
    let starts = |m: &[u8]| bytes.starts_with(m);
    if bytes.get(128..132) == Some(b"DICM") || starts(b"DICM") {
        return Ok(Format::Dicom);
    }
    if starts(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Ok(Format::Png);
    }
    // SOI alone: a JPEG cut after two bytes is still a (damaged) JPEG, not text.
    if starts(&[0xFF, 0xD8]) {
        return Ok(Format::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Ok(Format::Webp);
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return Ok(Format::Tiff);
    }
    if starts(b"BM") && bytes.len() >= 26 {
        return Ok(Format::Bmp);
    }
    if looks_like_raw_dicom(bytes) {
        return Ok(Format::DicomRaw);
    }
    if super::nifti::is_nifti_header(bytes) {
        return Ok(Format::Nifti);
    }
    // A gzip stream is a NIfTI volume when its first bytes are a NIfTI header (`.nii.gz`).
    if starts(b"\x1f\x8b") && super::nifti::is_nifti_header(&super::nifti::inflate_prefix(bytes, 540)) {
        return Ok(Format::Nifti);
    }
    let known: &[(&[u8], &'static str)] = &[
        (b"%PDF", "PDF document"),
        (b"PK\x03\x04", "ZIP archive (or an Office document)"),
        (b"\x1f\x8b", "gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
        (b"Rar!", "RAR archive"),
        (&[0, 0, 1, 0], "Windows icon (ICO)"),
        (&[0, 0, 2, 0], "Windows cursor (CUR)"),
        (b"\x00\x00\x00\x0cjP  ", "JPEG 2000 image"),
        (&[0xFF, 0x4F, 0xFF, 0x51], "JPEG 2000 codestream"),
        (b"\xff\x0a", "JPEG XL image"),
        (b"\x00\x00\x00\x0cJXL ", "JPEG XL image"),
        (b"8BPS", "Photoshop document"),
        (b"\x76\x2f\x31\x01", "OpenEXR image"),
        (b"#?RADIANCE", "Radiance HDR image"),
        (b"qoif", "QOI image"),
        (b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
        (b"\x7fELF", "executable program"),
        (b"MZ", "Windows executable"),
        (b"\0asm", "WebAssembly module"),
        (b"\x93NUMPY", "NumPy array file"),
        (b"\x89HDF", "HDF5 file"),
        (b"P1", "Netpbm image"),
        (b"P2", "Netpbm image"),
        (b"P3", "Netpbm image"),
        (b"P4", "Netpbm image"),
        (b"P5", "Netpbm image"),
        (b"P6", "Netpbm image"),
        (b"DDS ", "DirectDraw surface"),
        (b"farbfeld", "farbfeld image"),
    ];
    for (magic, name) in known {
        if starts(magic) {
            return Err(Unrecognised::Known(name));
        }
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        let brand = bytes.get(8..12).unwrap_or_default();
        return Err(Unrecognised::Known(match brand {
            b"avif" | b"avis" => "AVIF image",
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => "HEIC/HEIF image",
            _ => "MP4/QuickTime video",
        }));
    }
    if looks_like_text(bytes) {
        return Err(Unrecognised::Text);
    }
    Err(Unrecognised::Unknown)
}

/// A bare data set begins with a little-endian tag of group 0x0002, 0x0008 (or another
/// low even group) followed by a plausible length (implicit VR) or a VR code (explicit VR).
fn looks_like_raw_dicom(b: &[u8]) -> bool {
    if b.len() < 16 {
        return false;
    }
    // Tag (group, element), then either a two-letter VR or a four-byte length.
    let Some(&[g0, g1, e0, e1, v0, v1, l2, l3]) = b.first_chunk::<8>() else { return false };
    let group = u16::from_le_bytes([g0, g1]);
    let element = u16::from_le_bytes([e0, e1]);
    if !matches!(group, 0x0002 | 0x0008) {
        return false;
    }
    // The first element of a group is usually its group length (0000) or an element < 0x0100.
    if element > 0x0100 {
        return false;
    }
    let explicit = v0.is_ascii_uppercase() && v1.is_ascii_uppercase();
    if explicit {
        return true;
    }
    let len = u32::from_le_bytes([v0, v1, l2, l3]);
    (len as usize) < b.len() && len < 0x1_0000
}

fn looks_like_text(b: &[u8]) -> bool {
    let head = b.get(..512).unwrap_or(b);
    let printable = head.iter().filter(|&&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80).count();
    let utf8_text = std::str::from_utf8(head).is_ok() && printable == head.len();
    // Not UTF-8: only ASCII counts (bytes ≥ 0x80 in binary headers are not letters).
    let ascii = head.iter().filter(|&&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7f).contains(&c)).count();
    let mostly_printable = ascii * 100 >= head.len() * 97 && !head.contains(&0);
    utf8_text || mostly_printable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_magic_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").ok(), Some(Format::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).ok(), Some(Format::Jpeg));
        assert_eq!(sniff(b"II*\0\x08\0\0\0").ok(), Some(Format::Tiff));
        let mut dcm = vec![0u8; 140];
        dcm[128..132].copy_from_slice(b"DICM");
        assert_eq!(sniff(&dcm).ok(), Some(Format::Dicom));
        assert_eq!(sniff(b"DICM\x02\0\0\0UL\x04\0").ok(), Some(Format::Dicom));
        assert_eq!(sniff(b"%PDF-1.7\n"), Err(Unrecognised::Known("PDF document")));
        assert_eq!(sniff(b"hello, world\n"), Err(Unrecognised::Text));
        assert_eq!(sniff(b""), Err(Unrecognised::Empty));
    }

    #[test]
    fn raw_dataset_without_header() {
        // (0008,0005) implicit VR, length 10.
        let mut b = vec![0x08, 0x00, 0x05, 0x00, 10, 0, 0, 0];
        b.extend_from_slice(b"ISO_IR 100");
        assert_eq!(sniff(&b).ok(), Some(Format::DicomRaw));
    }
}
