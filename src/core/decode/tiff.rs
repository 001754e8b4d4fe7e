//! TIFF: greyscale 8/16/32-bit integer and 32/64-bit float slices read at full depth with the
//! `tiff` crate (CT conventions below); colour, palette and sub-byte TIFFs go through `image`.
//!
//! Conventions: unsigned 16-bit grey is COVID-CTset's `HU + 1024` unless the caller says
//! otherwise ([`TiffU16`]); signed 16/32-bit and floating-point grey hold Hounsfield units.

use std::io::Cursor;

use tiff::decoder::{Decoder, DecodingResult, Limits as TiffLimits};
use tiff::tags::Tag;
use tiff::{ColorType, TiffError};

use super::{DecodeError, DecodeOptions, Format, Intensity, MedImage, Photometric, TiffU16, Upstream, check_pixels, raster};

const FMT: Format = Format::Tiff;

pub(super) fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<MedImage, DecodeError> {
    let mut limits = TiffLimits::default();
    let budget = usize::try_from(opts.limits.max_pixels.saturating_mul(8)).unwrap_or(usize::MAX);
    limits.decoding_buffer_size = budget;
    limits.intermediate_buffer_size = budget;
    let mut dec = Decoder::new(Cursor::new(bytes)).map_err(map_err)?.with_limits(limits);
    let (w, h) = dec.dimensions().map_err(map_err)?;
    check_pixels(FMT, w as u64, h as u64, 1, &opts.limits)?;

    let color = dec.colortype().map_err(map_err)?;
    let bits = match color {
        ColorType::Gray(b) if matches!(b, 8 | 16 | 32 | 64) => b,
        // Colour, palette, 1/2/4-bit, alpha: the image crate converts these.
        _ => return raster::decode(bytes, FMT, opts),
    };
    let white_is_zero = matches!(dec.find_tag_unsigned::<u16>(Tag::PhotometricInterpretation), Ok(Some(0)));
    let data = dec.read_image().map_err(map_err)?;
    let n = (w as usize).saturating_mul(h as usize);
    let (mut pixels, intensity, float_samples): (Vec<f32>, Intensity, bool) = match data {
        DecodingResult::U8(v) => (v.into_iter().map(f32::from).collect(), Intensity::Raw, false),
        DecodingResult::U16(v) => match opts.tiff_u16 {
            TiffU16::HuPlus1024 => (v.into_iter().map(|x| f32::from(x) - 1024.0).collect(), Intensity::Hounsfield, false),
            TiffU16::Raw => (v.into_iter().map(f32::from).collect(), Intensity::Raw, false),
        },
        DecodingResult::I8(v) => (v.into_iter().map(f32::from).collect(), Intensity::Raw, false),
        DecodingResult::I16(v) => (v.into_iter().map(f32::from).collect(), Intensity::Hounsfield, false),
        DecodingResult::I32(v) => (v.into_iter().map(|x| x as f32).collect(), Intensity::Hounsfield, false),
        DecodingResult::U32(v) => (v.into_iter().map(|x| x as f32).collect(), Intensity::Raw, false),
        DecodingResult::F16(v) => (v.into_iter().map(f32::from).collect(), Intensity::Hounsfield, true),
        DecodingResult::F32(v) => (v, Intensity::Hounsfield, true),
        DecodingResult::F64(v) => (v.into_iter().map(|x| x as f32).collect(), Intensity::Hounsfield, true),
        DecodingResult::U64(_) | DecodingResult::I64(_) => {
            return Err(DecodeError::Unsupported { format: FMT, what: "64-bit integer samples".into(), source: None });
        }
    };
    if pixels.len() < n {
        return Err(DecodeError::Malformed { format: FMT, detail: format!("{} samples for {w}×{h} pixels", pixels.len()), source: None });
    }
    pixels.truncate(n);
    let replaced_non_finite = if float_samples { replace_non_finite(&mut pixels)? } else { 0 };
    Ok(MedImage {
        float_samples,
        photometric: if white_is_zero { Photometric::Monochrome1 } else { Photometric::Monochrome2 },
        replaced_non_finite,
        ..MedImage::new(FMT, w, h, pixels, intensity, u16::from(bits))
    })
}

/// NaN becomes the lowest finite value, ±Inf the lowest/highest finite value.
fn replace_non_finite(px: &mut [f32]) -> Result<u64, DecodeError> {
    let (mut lo, mut hi, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, 0u64);
    for &v in px.iter() {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        } else {
            bad += 1;
        }
    }
    if bad == 0 {
        return Ok(0);
    }
    if lo > hi {
        return Err(DecodeError::NoFiniteValues);
    }
    for v in px.iter_mut() {
        if v.is_nan() || *v == f32::NEG_INFINITY {
            *v = lo;
        } else if *v == f32::INFINITY {
            *v = hi;
        }
    }
    Ok(bad)
}

/// The tiff crate's error as ours, by its variant; the error itself is kept as the source.
fn map_err(e: TiffError) -> DecodeError {
    match &e {
        TiffError::UnsupportedError(u) => DecodeError::Unsupported { format: FMT, what: u.to_string(), source: Some(Upstream::new(e)) },
        TiffError::LimitsExceeded => DecodeError::ResourceLimit { format: FMT },
        _ => DecodeError::Malformed { format: FMT, detail: super::plain(e.to_string()), source: Some(Upstream::new(e)) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_samples_take_the_finite_extremes_and_are_counted() {
        let mut px = vec![f32::NAN, -5.0, f32::INFINITY, 7.0, f32::NEG_INFINITY];
        assert_eq!(replace_non_finite(&mut px), Ok(3));
        assert_eq!(px, vec![-5.0, -5.0, 7.0, 7.0, -5.0]);
        let mut clean = vec![1.0, 2.0];
        assert_eq!(replace_non_finite(&mut clean), Ok(0));
        assert_eq!(replace_non_finite(&mut [f32::NAN, f32::INFINITY]), Err(DecodeError::NoFiniteValues));
    }
}
