//! Volume: a CT stack held once, in radiological axial order, from which the 2-D slices the
//! model reads are cut on demand.
//!
//! Why its own type rather than a `Vec<MedImage>`: a 600-slice 512² study is 157 M voxels, and
//! one `f32` copy per slice would be 630 MB before the model runs. The voxels are stored once
//! as `i16` with one linear map to their values (`value = stored × scale + offset`), which is
//! exact for the integer Hounsfield units CT is stored in and quantises anything else to 65,536
//! levels over its range; a slice becomes `f32` only when it is shown or classified.
//!
//! Orientation is fixed at construction, whatever the file's storage order: columns run from
//! the patient's right to their left (the patient's right on the image's left, as radiologists
//! read an axial slice), rows from anterior to posterior, slices from superior to inferior.

use serde::{Deserialize, Serialize};

use super::{Format, Intensity, MedImage, Photometric};

/// How the file placed its voxels in the patient, as the reader found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// From the file's orientation (NIfTI sform/qform, DICOM image position and orientation):
    /// the volume is shown in radiological axial order.
    Oriented,
    /// The file says nothing about orientation (NIfTI with `qform_code` and `sform_code` 0):
    /// the voxels are shown in stored order, which may be mirrored or not axial.
    StoredOrder,
}

/// A plane through a volume, for viewing: the axial slices the model reads, and the coronal
/// and sagittal reformats a reader uses to see where a slice lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

/// A decoded 3-D volume (see the module doc for its orientation and storage).
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub format: Format,
    /// Voxels along a row (patient right → left), rows (anterior → posterior), slices
    /// (superior → inferior).
    pub columns: u32,
    pub rows: u32,
    pub slices: u32,
    /// Voxel size in millimetres: column, row, slice.
    pub spacing_mm: [f32; 3],
    /// Position of each slice along the patient's foot–head axis in millimetres (the world
    /// z of the slice's centre; superior is larger), `slices` entries.
    pub slice_z_mm: Vec<f32>,
    pub placement: Placement,
    pub intensity: Intensity,
    /// `value = stored × scale + offset`.
    pub scale: f32,
    pub offset: f32,
    /// True when `scale`/`offset` came from quantising non-integer values (not exact).
    pub quantised: bool,
    #[serde(skip)]
    pub voxels: Vec<i16>,
    /// Non-finite samples replaced by the volume's lowest value.
    pub replaced_non_finite: u64,
    /// Volumes in the file (4-D files: only the first is read).
    pub volumes_in_file: u64,
    /// A short description of the source for reports ("NIfTI-1, int16, gzip").
    pub source: String,
}

impl Volume {
    /// Voxels in one slice.
    pub fn slice_len(&self) -> usize {
        self.columns as usize * self.rows as usize
    }

    /// The value of one stored voxel.
    #[inline]
    pub fn value(&self, stored: i16) -> f32 {
        f32::from(stored) * self.scale + self.offset
    }

    /// Axial slice `k` (0 = most superior) as a 2-D image, or `None` past the end.
    pub fn axial(&self, k: u32) -> Option<MedImage> {
        let n = self.slice_len();
        let start = (k as usize).checked_mul(n)?;
        let stored = self.voxels.get(start..start.checked_add(n)?)?;
        let pixels = stored.iter().map(|&v| self.value(v)).collect();
        Some(self.image(self.columns, self.rows, pixels, k, self.slices))
    }

    /// Coronal reformat at row `r` (anterior → posterior): columns across, slices down.
    pub fn coronal(&self, r: u32) -> Option<MedImage> {
        if r >= self.rows {
            return None;
        }
        let (c, n) = (self.columns as usize, self.slice_len());
        let mut pixels = Vec::with_capacity(c * self.slices as usize);
        for k in 0..self.slices as usize {
            let start = k * n + r as usize * c;
            pixels.extend(self.voxels.get(start..start + c)?.iter().map(|&v| self.value(v)));
        }
        Some(self.image(self.columns, self.slices, pixels, r, self.rows))
    }

    /// Sagittal reformat at column `col` (right → left): rows (anterior → posterior) across,
    /// slices down.
    pub fn sagittal(&self, col: u32) -> Option<MedImage> {
        if col >= self.columns {
            return None;
        }
        let (c, n) = (self.columns as usize, self.slice_len());
        let mut pixels = Vec::with_capacity(self.rows as usize * self.slices as usize);
        for k in 0..self.slices as usize {
            for r in 0..self.rows as usize {
                pixels.push(self.value(*self.voxels.get(k * n + r * c + col as usize)?));
            }
        }
        Some(self.image(self.rows, self.slices, pixels, col, self.columns))
    }

    fn image(&self, width: u32, height: u32, pixels: Vec<f32>, frame: u32, frames: u32) -> MedImage {
        MedImage {
            float_samples: self.quantised,
            photometric: Photometric::Monochrome2,
            frame,
            frames,
            replaced_non_finite: self.replaced_non_finite,
            modality: (self.intensity == Intensity::Hounsfield).then(|| "CT".to_string()),
            ..MedImage::new(self.format, width, height, pixels, self.intensity, 16)
        }
    }

    /// How many images `plane` cuts from the volume.
    pub fn count(&self, plane: Plane) -> u32 {
        match plane {
            Plane::Axial => self.slices,
            Plane::Coronal => self.rows,
            Plane::Sagittal => self.columns,
        }
    }

    /// Image `index` of `plane` ([`Volume::axial`], [`Volume::coronal`], [`Volume::sagittal`]).
    pub fn cut(&self, plane: Plane, index: u32) -> Option<MedImage> {
        match plane {
            Plane::Axial => self.axial(index),
            Plane::Coronal => self.coronal(index),
            Plane::Sagittal => self.sagittal(index),
        }
    }

    /// Millimetres of one pixel of `plane`'s images, across and down: a reformat's pixels are
    /// rarely square (5 mm slices under 0.7 mm pixels), so a viewer must stretch it by these.
    pub fn pixel_mm(&self, plane: Plane) -> [f32; 2] {
        let [c, r, s] = self.spacing_mm;
        match plane {
            Plane::Axial => [c, r],
            Plane::Coronal => [c, s],
            Plane::Sagittal => [r, s],
        }
    }

    /// Lowest and highest value (0, 0 when empty).
    pub fn value_range(&self) -> (f32, f32) {
        let (lo, hi) = self.voxels.iter().fold((i16::MAX, i16::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if lo > hi { (0.0, 0.0) } else { (self.value(lo), self.value(hi)) }
    }
}

/// Whether values look like CT Hounsfield units: air near −1000 is present and the range
/// reaches soft tissue. A volume file carries no modality, and the lung window must only be
/// applied to HU (a 0–255 export of the same scan would turn black under it).
pub(crate) fn looks_like_hounsfield(lo: f32, hi: f32, below_minus_900: u64, total: u64) -> bool {
    lo <= -900.0 && hi >= 0.0 && below_minus_900.saturating_mul(50) >= total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube() -> Volume {
        // 3 columns × 2 rows × 2 slices, value = 100·k + 10·r + c.
        let mut voxels = Vec::new();
        for k in 0..2i16 {
            for r in 0..2i16 {
                for c in 0..3i16 {
                    voxels.push(100 * k + 10 * r + c);
                }
            }
        }
        Volume {
            format: Format::Nifti,
            columns: 3,
            rows: 2,
            slices: 2,
            spacing_mm: [1.0, 1.0, 2.5],
            slice_z_mm: vec![2.5, 0.0],
            placement: Placement::Oriented,
            intensity: Intensity::Hounsfield,
            scale: 1.0,
            offset: -1000.0,
            quantised: false,
            voxels,
            replaced_non_finite: 0,
            volumes_in_file: 1,
            source: "test".into(),
        }
    }

    #[test]
    fn cuts_axial_coronal_and_sagittal_planes() {
        let v = cube();
        let a = v.axial(1).unwrap();
        assert_eq!((a.width, a.height, a.frame, a.frames), (3, 2, 1, 2));
        assert_eq!(a.pixels, vec![-900.0, -899.0, -898.0, -890.0, -889.0, -888.0]);
        let c = v.coronal(1).unwrap();
        assert_eq!((c.width, c.height), (3, 2));
        assert_eq!(c.pixels, vec![-990.0, -989.0, -988.0, -890.0, -889.0, -888.0]);
        let s = v.sagittal(2).unwrap();
        assert_eq!((s.width, s.height), (2, 2));
        assert_eq!(s.pixels, vec![-998.0, -988.0, -898.0, -888.0]);
        assert!(v.axial(2).is_none() && v.coronal(2).is_none() && v.sagittal(3).is_none());
        assert_eq!(v.value_range(), (-1000.0, -888.0));
    }
}
