//! Route: which model reads an image, decided without a network where the file itself says
//! so — the DICOM Modality and Body Part, strong colour, Hounsfield units — and the
//! [`Verdict`] that the gate network completes otherwise. The one routing rule for the page,
//! the CLI and the evaluation.

use serde::{Deserialize, Serialize};

use crate::decode::{Intensity, MedImage};
use crate::model::Modality;

/// What decided a [`Verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictSource {
    /// The DICOM Modality or Body Part attribute.
    Dicom,
    /// The image is a colour picture.
    Colour,
    /// The file holds Hounsfield units (used when no gate network is loaded).
    Hounsfield,
    /// The gate network and its distance to the training images.
    Network,
}

/// What the gate says about one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub accepted: bool,
    pub modality: Option<Modality>,
    /// How the decision was made.
    pub by: VerdictSource,
    /// A sentence for the person who dropped the file.
    pub reason: String,
    /// P(ct), P(cxr), P(neither) from the gate network, when it ran.
    pub probabilities: Option<Vec<f32>>,
    /// Squared Mahalanobis distance and its limit, when the network ran.
    pub distance: Option<f32>,
    pub threshold: Option<f32>,
    /// The network would have accepted the image as `modality`, but with less confidence than
    /// its bar: nothing is classified and the user is asked which model should read it.
    #[serde(default)]
    pub unsure: bool,
}

/// Rules that need no network: DICOM Modality / Body Part, colour.
pub fn by_metadata(img: &MedImage, max_colourfulness: f32) -> Option<Verdict> {
    let refuse = |reason: String| Verdict {
        accepted: false,
        modality: None,
        by: VerdictSource::Dicom,
        reason,
        probabilities: None,
        distance: None,
        threshold: None,
        unsure: false,
    };
    if let Some(bp) = img.body_part.as_deref() {
        let b = bp.to_ascii_uppercase();
        let chest = ["CHEST", "LUNG", "THORAX", "TORSO", "CHEST_ABDOMEN", "CHESTABDOMEN", "CHEST_TO_PELVIS", "WHOLEBODY", "WHOLE_BODY", "TRUNK", "BODY"];
        if !chest.iter().any(|c| b.contains(c)) && !b.is_empty() {
            return Some(refuse(format!("the file says the body part is {bp}; this tool reads chest CT and chest X-rays only")));
        }
    }
    match img.modality.as_deref() {
        Some("CT") => Some(Verdict {
            accepted: true,
            modality: Some(Modality::Ct),
            by: VerdictSource::Dicom,
            reason: "DICOM Modality CT".into(),
            probabilities: None,
            distance: None,
            threshold: None,
            unsure: false,
        }),
        Some(m @ ("DX" | "CR" | "DR" | "RG")) => Some(Verdict {
            accepted: true,
            modality: Some(Modality::Cxr),
            by: VerdictSource::Dicom,
            reason: format!("DICOM Modality {m} (radiograph)"),
            probabilities: None,
            distance: None,
            threshold: None,
            unsure: false,
        }),
        Some(m) => Some(refuse(format!("the DICOM file is modality {m} ({}), not a CT or a radiograph", modality_name(m)))),
        None if img.colourfulness > max_colourfulness => Some(Verdict {
            by: VerdictSource::Colour,
            ..refuse(format!("this is a colour picture (colourfulness {:.0}); CT slices and X-rays are greyscale", img.colourfulness))
        }),
        None => None,
    }
}

fn modality_name(m: &str) -> &'static str {
    match m {
        "MR" => "magnetic resonance",
        "US" => "ultrasound",
        "OT" => "other",
        "PT" => "PET",
        "NM" => "nuclear medicine",
        "MG" => "mammography",
        "XA" => "angiography",
        "SC" => "secondary capture",
        "SR" => "structured report",
        "OP" | "OPT" => "ophthalmic",
        "ES" | "XC" => "photograph",
        "SM" => "microscopy",
        _ => "not chest imaging",
    }
}

/// The route when no gate network is loaded: the file's own metadata, else Hounsfield units
/// mean CT; `None` when neither tells.
pub fn without_network(img: &MedImage) -> Option<Verdict> {
    by_metadata(img, f32::INFINITY).or_else(|| {
        (img.intensity == Intensity::Hounsfield).then(|| Verdict {
            accepted: true,
            modality: Some(Modality::Ct),
            by: VerdictSource::Hounsfield,
            reason: "the file holds Hounsfield units".into(),
            probabilities: None,
            distance: None,
            threshold: None,
            unsure: false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Format;

    fn image(modality: Option<&str>, body_part: Option<&str>, intensity: Intensity) -> MedImage {
        MedImage {
            modality: modality.map(String::from),
            body_part: body_part.map(String::from),
            ..MedImage::new(Format::Dicom, 4, 4, vec![0.0; 16], intensity, 12)
        }
    }

    #[test]
    fn dicom_modality_routes_and_names_what_it_refuses() {
        let ct = by_metadata(&image(Some("CT"), Some("CHEST"), Intensity::Hounsfield), 20.0).unwrap();
        assert_eq!((ct.accepted, ct.modality, ct.by), (true, Some(Modality::Ct), VerdictSource::Dicom));
        let dx = by_metadata(&image(Some("DX"), None, Intensity::Modality), 20.0).unwrap();
        assert_eq!(dx.modality, Some(Modality::Cxr));
        let mr = by_metadata(&image(Some("MR"), None, Intensity::Modality), 20.0).unwrap();
        assert!(!mr.accepted && mr.reason.contains("magnetic resonance"), "{}", mr.reason);
        let knee = by_metadata(&image(Some("CT"), Some("KNEE"), Intensity::Hounsfield), 20.0).unwrap();
        assert!(!knee.accepted && knee.reason.contains("KNEE"));
    }

    #[test]
    fn without_a_network_hounsfield_units_mean_ct_and_plain_pictures_are_undecided() {
        let hu = without_network(&image(None, None, Intensity::Hounsfield)).unwrap();
        assert_eq!((hu.modality, hu.by), (Some(Modality::Ct), VerdictSource::Hounsfield));
        assert!(without_network(&image(None, None, Intensity::Raw)).is_none());
    }
}
