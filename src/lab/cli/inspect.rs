//! `ctxr inspect`: what the decoder finds in files — format, size, bit depth, Hounsfield units or
//! not, windows, DICOM facts — as text or one JSON object per file.

use std::path::PathBuf;
use std::process::ExitCode;

use ctxr::decode::{DicomMeta, Intensity, Photometric, Window, decode};
use ctxr::model::{Modality, decode_options};
use ctxr_lab::LabError;
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    files: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
    /// Read 16-bit TIFFs as raw intensities (the radiograph convention) instead of HU + 1024.
    #[arg(long)]
    tiff_raw: bool,
}

#[derive(Serialize)]
struct Inspected<'a> {
    file: String,
    format: &'static str,
    width: u32,
    height: u32,
    bits: u16,
    float: bool,
    channels: u16,
    hounsfield: bool,
    intensity: Intensity,
    photometric: Photometric,
    windows: &'a [Window],
    modality: Option<&'a str>,
    body_part: Option<&'a str>,
    frames: u32,
    min: f32,
    max: f32,
    dicom: Option<&'a DicomMeta>,
}

#[derive(Serialize)]
struct Failed {
    file: String,
    error: String,
}

pub fn run(a: Args) -> Result<ExitCode, LabError> {
    let opts = decode_options(Some(if a.tiff_raw { Modality::Cxr } else { Modality::Ct }));
    let mut failures = 0;
    for f in &a.files {
        let res = std::fs::read(f).map_err(|e| e.to_string()).and_then(|b| decode(&b, &opts).map_err(|e| e.to_string()));
        match res {
            Ok(img) => {
                let (lo, hi) = img.value_range();
                if a.json {
                    let v = Inspected {
                        file: f.display().to_string(),
                        format: img.format.name(),
                        width: img.width,
                        height: img.height,
                        bits: img.bits_stored,
                        float: img.float_samples,
                        channels: img.source_channels,
                        hounsfield: img.intensity == Intensity::Hounsfield,
                        intensity: img.intensity,
                        photometric: img.photometric,
                        windows: &img.windows,
                        modality: img.modality.as_deref(),
                        body_part: img.body_part.as_deref(),
                        frames: img.frames,
                        min: lo,
                        max: hi,
                        dicom: img.dicom.as_ref(),
                    };
                    println!("{}", serde_json::to_string(&v)?);
                } else {
                    let windows: Vec<String> = img.windows.iter().map(|w| format!("C {} / W {}", w.center, w.width)).collect();
                    println!("{}", f.display());
                    println!("  format      {}", img.format.name());
                    println!("  size        {}×{}{}", img.width, img.height, if img.frames > 1 { format!(" × {} frames", img.frames) } else { String::new() });
                    println!(
                        "  bit depth   {}{}{}",
                        img.bits_stored,
                        if img.float_samples { " (float)" } else { "" },
                        if img.source_channels > 1 { format!(", {} channels", img.source_channels) } else { String::new() }
                    );
                    let values = match img.intensity {
                        Intensity::Hounsfield => "Hounsfield units",
                        Intensity::Modality => "modality values (not HU)",
                        Intensity::Raw => "raw intensities",
                    };
                    println!("  values      {values} ({lo} … {hi})");
                    println!("  photometric {:?}", img.photometric);
                    println!("  window      {}", if windows.is_empty() { "none in file".into() } else { windows.join(", ") });
                    println!("  modality    {}", img.modality.as_deref().unwrap_or("-"));
                    if let Some(d) = &img.dicom {
                        println!("  body part   {}", img.body_part.as_deref().unwrap_or("-"));
                        println!("  syntax      {} ({})", d.transfer_syntax_name, d.transfer_syntax_uid);
                        println!(
                            "  stored      {} of {} bits, {}",
                            d.bits_stored,
                            d.bits_allocated,
                            if d.pixel_representation == 1 { "signed" } else { "unsigned" }
                        );
                        println!("  rescale     slope {} intercept {}", d.rescale_slope, d.rescale_intercept);
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if a.json {
                    println!("{}", serde_json::to_string(&Failed { file: f.display().to_string(), error: e })?);
                } else {
                    println!("{}: ERROR: {e}", f.display());
                }
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
