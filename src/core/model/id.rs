//! Ids: the closed sets the whole product names things by — which model ([`ModelId`]) and
//! which kind of image ([`Modality`]) — and the one convention that depends on the kind of
//! image before any model has read it (how 16-bit TIFFs are decoded).

use serde::{Deserialize, Serialize};

use crate::decode::{DecodeOptions, TiffU16};

/// Which kind of image a model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Ct,
    Cxr,
}

impl Modality {
    pub const ALL: [Modality; 2] = [Modality::Ct, Modality::Cxr];

    pub fn name(self) -> &'static str {
        match self {
            Modality::Ct => "ct",
            Modality::Cxr => "cxr",
        }
    }

    /// The model that reads this modality.
    pub fn model(self) -> ModelId {
        match self {
            Modality::Ct => ModelId::Ct,
            Modality::Cxr => ModelId::Cxr,
        }
    }
}

/// How to decode a file for a model that reads `modality` (`None`: not known yet, before the
/// gate has routed it). The one place for the 16-bit TIFF convention: the CT sources store
/// Hounsfield units + 1024 in unsigned 16-bit TIFFs (the COVID-CTset convention), radiographs
/// store raw detector values, and a file nobody has classified yet is read as CT because a
/// 16-bit greyscale TIFF in this domain is far more often a CT slice than a film.
pub fn decode_options(modality: Option<Modality>) -> DecodeOptions {
    let tiff_u16 = match modality {
        Some(Modality::Cxr) => TiffU16::Raw,
        Some(Modality::Ct) | None => TiffU16::HuPlus1024,
    };
    DecodeOptions { tiff_u16, ..DecodeOptions::default() }
}

/// The closed set of shipped models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelId {
    /// The input gate: chest CT slice, chest X-ray or neither.
    Gate,
    /// The CT slice classifier.
    Ct,
    /// The chest X-ray classifier.
    Cxr,
}

impl ModelId {
    pub const ALL: [ModelId; 3] = [ModelId::Gate, ModelId::Ct, ModelId::Cxr];

    pub fn name(self) -> &'static str {
        match self {
            ModelId::Gate => "gate",
            ModelId::Ct => "ct",
            ModelId::Cxr => "cxr",
        }
    }

    /// The kind of image the model reads (`None` for the gate, which reads any).
    pub fn modality(self) -> Option<Modality> {
        match self {
            ModelId::Gate => None,
            ModelId::Ct => Some(Modality::Ct),
            ModelId::Cxr => Some(Modality::Cxr),
        }
    }

    /// What the model decides, in words: the definition the manifest, the card and the page
    /// state beside every result.
    pub fn definition(self) -> &'static str {
        match self {
            ModelId::Gate => {
                "Whether a file is an axial chest CT slice, a frontal chest radiograph, or neither; files it refuses are not classified unless the user chooses a model."
            }
            ModelId::Ct => {
                "Slice level: does THIS axial chest CT slice show COVID-19 pneumonia (ground-glass opacity or consolidation of COVID-19)? 'noncovid' means no COVID-19 lesion on this slice: a normal slice, another disease, or a lesion-free slice of a COVID-19 patient. A series or study is scored from its slices (the page's series score), never from one slice."
            }
            ModelId::Cxr => {
                "For a frontal (PA/AP) chest radiograph of an adult or a child: normal, pneumonia (bacterial or viral, not COVID-19), or COVID-19 pneumonia."
            }
        }
    }

    /// The record's file name beside the manifest.
    pub fn record_file(self) -> String {
        format!("{}.bpk", self.name())
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A model id that is not one of [`ModelId::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model '{0}' (gate, ct or cxr)")]
pub struct UnknownModel(pub String);

impl std::str::FromStr for ModelId {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelId::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s.trim())).ok_or_else(|| UnknownModel(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_round_trip_through_their_names() {
        for id in ModelId::ALL {
            assert_eq!(id.name().parse::<ModelId>(), Ok(id));
            assert_eq!(serde_json::to_string(&id).ok(), Some(format!("\"{}\"", id.name())));
        }
        assert_eq!("CT".parse::<ModelId>(), Ok(ModelId::Ct));
        assert!("mri".parse::<ModelId>().is_err());
    }

    #[test]
    fn the_tiff_convention_follows_the_modality() {
        assert_eq!(decode_options(Some(Modality::Cxr)).tiff_u16, TiffU16::Raw);
        assert_eq!(decode_options(Some(Modality::Ct)).tiff_u16, TiffU16::HuPlus1024);
        assert_eq!(decode_options(None).tiff_u16, TiffU16::HuPlus1024);
    }
}
