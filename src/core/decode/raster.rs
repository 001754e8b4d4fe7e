//! Everyday raster formats (PNG, JPEG, BMP, WebP, GIF) through the `image` crate, converted to
//! one channel at full depth (colour → BT.601 luminance, alpha composited over black).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::{DecodeError, DecodeOptions, Format, Intensity, MedImage, Photometric, Upstream, check_pixels, luma};

pub(super) fn decode(bytes: &[u8], format: Format, opts: &DecodeOptions) -> Result<MedImage, DecodeError> {
    let image_format = match format {
        Format::Png => ImageFormat::Png,
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Gif => ImageFormat::Gif,
        Format::Bmp => ImageFormat::Bmp,
        Format::Webp => ImageFormat::WebP,
        Format::Tiff => ImageFormat::Tiff,
        Format::Dicom | Format::DicomRaw | Format::Nifti => {
            return Err(DecodeError::Unsupported { format, what: "not a raster format".into(), source: None });
        }
    };
    let malformed = |e: image::ImageError| map_error(format, e);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(u32::try_from(opts.limits.max_pixels).unwrap_or(u32::MAX));
    limits.max_image_height = Some(u32::try_from(opts.limits.max_pixels).unwrap_or(u32::MAX));
    // 16-bit RGBA is 8 bytes a pixel; conversion needs a second buffer.
    limits.max_alloc = Some(opts.limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    if format == Format::Jpeg && !jpeg_has_end(bytes) {
        // zune-jpeg fills a cut-off scan with grey and succeeds: a half image must not be classified.
        return Err(DecodeError::Malformed { format, detail: "the image data stops before the end-of-image marker".into(), source: None });
    }
    let mut decoder = reader.into_decoder().map_err(malformed)?;
    let (w, h) = decoder.dimensions();
    check_pixels(format, w as u64, h as u64, 1, &opts.limits)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(malformed)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(from_dynamic(img, format))
}

/// Convert any `DynamicImage` to a single-channel [`MedImage`].
pub(super) fn from_dynamic(img: DynamicImage, format: Format) -> MedImage {
    let (width, height) = (img.width(), img.height());
    let channels = img.color().channel_count() as u16;
    let bits = img.color().bits_per_pixel() / channels.max(1);
    let has_color = img.color().has_color();
    let colourfulness = if has_color { colourfulness(&img) } else { 0.0 };
    let (pixels, bits_stored, float_samples): (Vec<f32>, u16, bool) = match img {
        DynamicImage::ImageLuma8(b) => (b.into_raw().into_iter().map(f32::from).collect(), 8, false),
        DynamicImage::ImageLuma16(b) => (b.into_raw().into_iter().map(f32::from).collect(), 16, false),
        DynamicImage::ImageLumaA8(b) => (b.into_raw().as_chunks::<2>().0.iter().map(|&[l, a]| f32::from(l) * f32::from(a) / 255.0).collect(), 8, false),
        DynamicImage::ImageLumaA16(b) => (b.into_raw().as_chunks::<2>().0.iter().map(|&[l, a]| f32::from(l) * f32::from(a) / 65535.0).collect(), 16, false),
        DynamicImage::ImageRgb8(b) => {
            (b.into_raw().as_chunks::<3>().0.iter().map(|&[r, g, b]| luma(f32::from(r), f32::from(g), f32::from(b))).collect(), 8, false)
        }
        DynamicImage::ImageRgba8(b) => (
            b.into_raw().as_chunks::<4>().0.iter().map(|&[r, g, b, a]| luma(f32::from(r), f32::from(g), f32::from(b)) * f32::from(a) / 255.0).collect(),
            8,
            false,
        ),
        DynamicImage::ImageRgb16(b) => {
            (b.into_raw().as_chunks::<3>().0.iter().map(|&[r, g, b]| luma(f32::from(r), f32::from(g), f32::from(b))).collect(), 16, false)
        }
        DynamicImage::ImageRgba16(b) => (
            b.into_raw().as_chunks::<4>().0.iter().map(|&[r, g, b, a]| luma(f32::from(r), f32::from(g), f32::from(b)) * f32::from(a) / 65535.0).collect(),
            16,
            false,
        ),
        other => (other.to_rgba32f().into_raw().as_chunks::<4>().0.iter().map(|&[r, g, b, a]| luma(r, g, b) * a).collect(), bits.max(32), true),
    };
    MedImage {
        source_channels: channels,
        float_samples,
        photometric: if has_color { Photometric::Rgb } else { Photometric::Monochrome2 },
        colourfulness,
        ..MedImage::new(format, width, height, pixels, Intensity::Raw, bits_stored)
    }
}

/// Hasler & Süsstrunk (2003) colourfulness on 8-bit RGB, sampled on a grid of ≤ 65 536 pixels.
fn colourfulness(img: &DynamicImage) -> f32 {
    let (w, h) = (img.width().max(1), img.height().max(1));
    let step = (((w as u64 * h as u64) as f64 / 65536.0).sqrt().ceil() as u32).max(1);
    let (mut n, mut srg, mut syb, mut srg2, mut syb2) = (0f64, 0f64, 0f64, 0f64, 0f64);
    let mut y = 0;
    while y < h {
        let mut x = 0;
        while x < w {
            let p = image::GenericImageView::get_pixel(img, x, y).0;
            let (r, g, b) = (p[0] as f64, p[1] as f64, p[2] as f64);
            let (rg, yb) = (r - g, 0.5 * (r + g) - b);
            srg += rg;
            syb += yb;
            srg2 += rg * rg;
            syb2 += yb * yb;
            n += 1.0;
            x += step;
        }
        y += step;
    }
    if n == 0.0 {
        return 0.0;
    }
    let (mrg, myb) = (srg / n, syb / n);
    let (vrg, vyb) = ((srg2 / n - mrg * mrg).max(0.0), (syb2 / n - myb * myb).max(0.0));
    ((vrg + vyb).sqrt() + 0.3 * (mrg * mrg + myb * myb).sqrt()) as f32
}

/// A complete JPEG has an end-of-image marker (FF D9) after its last start-of-scan (FF DA);
/// an embedded EXIF thumbnail's own markers come before the main scan.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes.get(i + 2..).is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9])),
        None => false,
    }
}

/// The image crate's error as ours, by its variant and kind; the error itself is kept as the
/// source.
fn map_error(format: Format, e: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    use image::error::{LimitErrorKind, UnsupportedErrorKind};
    let detail = super::plain(e.to_string());
    match &e {
        E::Limits(l) if matches!(l.kind(), LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory) => DecodeError::ResourceLimit { format },
        // Dimensions whose buffer would overflow the address space (e.g. 50000² RGB on wasm32)
        // are a resource limit, not a missing feature. The image crate reports them only as a
        // generic unsupported feature, so its wording is all that tells them apart.
        E::Unsupported(u) if matches!(u.kind(), UnsupportedErrorKind::GenericFeature(f) if f.contains("dimensions") && f.contains("too large")) => {
            DecodeError::ResourceLimit { format }
        }
        E::Unsupported(_) => DecodeError::Unsupported { format, what: detail, source: Some(Upstream::new(e)) },
        _ => DecodeError::Malformed { format, detail, source: Some(Upstream::new(e)) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_ends_only_with_an_end_marker_after_its_last_scan() {
        let scan = [0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3];
        assert!(!jpeg_has_end(&scan), "cut inside the scan");
        assert!(jpeg_has_end(&[&scan[..], &[0xFF, 0xD9]].concat()));
        // An EXIF thumbnail's end marker before the main scan does not count.
        let thumb_then_cut = [0xFF, 0xD8, 0xFF, 0xDA, 9, 0xFF, 0xD9, 0xFF, 0xDA, 4, 5];
        assert!(!jpeg_has_end(&thumb_then_cut));
        assert!(!jpeg_has_end(&[0xFF, 0xD8]), "no scan at all");
    }
}
