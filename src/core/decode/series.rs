//! Series: stack the slices of a DICOM folder into CT volumes, one per series, in anatomical
//! order, or say why a series cannot be stacked as it is.
//!
//! A folder from a PACS export or a hospital CD mixes studies and series (localisers, thin and
//! thick reconstructions, reformats) under file names that say nothing about order. Slices are
//! grouped by Study and Series Instance UID, image size and orientation; ordered by their
//! position along the slice normal (Image Position · normal), or by Instance Number when a
//! series carries no positions; and checked. Localisers and non-axial reformats are set aside
//! with the reason; a missing slice, irregular spacing, a duplicate position or a gantry tilt
//! is reported with the series, never silently stacked as if it were regular.
//!
//! Each slice is kept as `i16` Hounsfield units as soon as it is added, so a 300-file folder
//! costs its voxels once, not one `f32` image per file.

use serde::Serialize;

use super::volume::{Placement, Volume};
use super::{DecodeOptions, Format, Intensity, MedImage, SliceGeometry, Unrecognised, for_each_frame, sniff};

/// Why a file is not in any stacked series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetAside {
    pub file: String,
    pub reason: String,
    /// The file is not DICOM at all (a PNG slice, a text file): a front end may read it as a
    /// single image instead.
    pub not_dicom: bool,
}

/// What is irregular about a stacked series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StackProblem {
    /// A gap of `gap_mm` after slice `after` where the series' spacing says `missing` slices
    /// should be.
    MissingSlices { after: u32, missing: u32, gap_mm: f32 },
    /// Spacing between neighbours varies beyond 10 % of the median (not explained by gaps).
    IrregularSpacing { min_mm: f32, max_mm: f32, median_mm: f32 },
    /// The slices are not stacked along their normal (a tilted gantry): the volume is sheared.
    GantryTilt { degrees: f32 },
    /// Two files at the same position; the second is left out.
    DuplicatePosition { kept: String, dropped: String },
    /// No Image Position/Orientation: ordered by Instance Number, spacing unknown.
    NoPositions,
}

/// One stacked series.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub slice_thickness_mm: Option<f64>,
    /// The files in volume order (superior first).
    pub files: Vec<String>,
    pub problems: Vec<StackProblem>,
    pub volume: Volume,
}

/// What a reader is told about a series beside its volume: which one it is, how many files
/// made it, and what is irregular about it (the CLI's JSON and the page's series list).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesFacts {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub slice_thickness_mm: Option<f64>,
    pub files: usize,
    pub problems: Vec<StackProblem>,
}

impl Series {
    /// The series' facts, and its volume (taken out, not copied).
    pub fn into_parts(self) -> (SeriesFacts, Volume) {
        let facts = SeriesFacts {
            study_instance_uid: self.study_instance_uid,
            series_instance_uid: self.series_instance_uid,
            series_number: self.series_number,
            description: self.description,
            slice_thickness_mm: self.slice_thickness_mm,
            files: self.files.len(),
            problems: self.problems,
        };
        (facts, self.volume)
    }
}

/// The outcome of a folder: its series and the files set aside.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSet {
    pub series: Vec<Series>,
    pub set_aside: Vec<SetAside>,
}

struct Pending {
    file: String,
    geometry: SliceGeometry,
    description: Option<String>,
    width: u32,
    height: u32,
    values: Vec<i16>,
    rounded: bool,
    intensity: Intensity,
}

/// Collects decoded slices one by one (see the module doc) and stacks them at the end.
#[derive(Default)]
pub struct SeriesBuilder {
    pending: Vec<Pending>,
    set_aside: Vec<SetAside>,
    voxels: u64,
    max_voxels: u64,
}

impl SeriesBuilder {
    /// A builder that sets files aside once the folder holds `max_voxels` voxels.
    pub fn new(max_voxels: u64) -> Self {
        SeriesBuilder { max_voxels, ..Default::default() }
    }

    /// Record a file that could not be decoded (so the report lists it); frames of it added
    /// before its failure are taken out again, so a file is stacked whole or not at all.
    pub fn set_aside(&mut self, file: impl Into<String>, reason: impl Into<String>) {
        let file = file.into();
        let frame_of = |p: &Pending| p.file.strip_prefix(file.as_str()).is_some_and(|rest| rest.starts_with('#'));
        let dropped: u64 = self.pending.iter().filter(|p| frame_of(p)).map(|p| u64::from(p.width) * u64::from(p.height)).sum();
        self.pending.retain(|p| !frame_of(p));
        self.voxels = self.voxels.saturating_sub(dropped);
        self.set_aside.push(SetAside { file, reason: reason.into(), not_dicom: false });
    }

    /// Add one decoded image of a folder (each frame of a multi-frame file separately, see
    /// [`super::for_each_frame`]).
    pub fn add(&mut self, file: impl Into<String>, img: &MedImage) {
        let file = file.into();
        let Some(meta) = &img.dicom else {
            return self.set_aside(file, format!("a {} image, not a DICOM slice", img.format));
        };
        // A frame of a multi-frame (enhanced) file is one slice, with its own geometry.
        let file = if img.frames > 1 { format!("{file}#{}", img.frame + 1) } else { file };
        if meta.geometry.image_type.iter().any(|t| t == "LOCALIZER") {
            return self.set_aside(file, "a localiser (scout) image");
        }
        let n = u64::from(img.width) * u64::from(img.height);
        if self.voxels.saturating_add(n) > self.max_voxels {
            return self.set_aside(file, format!("the folder's slices exceed the limit of {} voxels", self.max_voxels));
        }
        self.voxels += n;
        let mut rounded = false;
        let values = img
            .pixels
            .iter()
            .map(|&v| {
                let r = v.round();
                rounded |= r != v;
                r.clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        self.pending.push(Pending {
            file,
            geometry: meta.geometry.clone(),
            description: meta.series_description.clone(),
            width: img.width,
            height: img.height,
            values,
            rounded,
            intensity: img.intensity,
        });
    }

    fn set_aside_not_dicom(&mut self, file: &str, reason: String) {
        self.set_aside.push(SetAside { file: file.to_string(), reason, not_dicom: true });
    }

    /// Add every frame of one file of a folder, or set the file aside with the reason it
    /// cannot be stacked. Returns whether the file is DICOM: anything else (a PNG slice, a
    /// text file) is set aside after sniffing its first bytes, without being decoded, so a
    /// front end can read such files as single images instead.
    pub fn add_file(&mut self, file: &str, bytes: &[u8], opts: &DecodeOptions) -> bool {
        // A CD's index (PS3.10 names it DICOMDIR): the slices are found by walking the folder
        // and carry the same UIDs and descriptions in their own headers.
        if file.rsplit(['/', '\\']).next() == Some("DICOMDIR") {
            self.set_aside(file, "the folder's DICOMDIR index (the series are read from the slice files themselves)");
            return true;
        }
        match sniff(bytes) {
            Ok(Format::Dicom | Format::DicomRaw) => {}
            Ok(format) => {
                self.set_aside_not_dicom(file, format!("a {format} file, not a DICOM slice"));
                return false;
            }
            Err(e) => {
                let what = match e {
                    Unrecognised::Empty => "an empty file".to_string(),
                    Unrecognised::Known(name) => format!("a {name} file"),
                    Unrecognised::Text => "a text file".to_string(),
                    Unrecognised::Unknown => "not an image format ctxr reads".to_string(),
                };
                self.set_aside_not_dicom(file, format!("{what}, not a DICOM slice"));
                return false;
            }
        }
        if let Err(e) = for_each_frame(bytes, opts, |img| self.add(file, &img)) {
            self.set_aside(file, e.to_string());
        }
        true
    }

    /// Group, order, check and stack.
    pub fn finish(self) -> SeriesSet {
        let mut set_aside = self.set_aside;
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        for p in self.pending {
            match groups.iter_mut().find(|g| g.first().is_some_and(|q| same_group(q, &p))) {
                Some(g) => g.push(p),
                None => groups.push(vec![p]),
            }
        }
        let mut series = Vec::new();
        for g in groups {
            match stack(g) {
                Ok(s) => series.push(s),
                Err(aside) => set_aside.extend(aside),
            }
        }
        series.sort_by(|a, b| {
            (&a.study_instance_uid, a.series_number, &a.series_instance_uid).cmp(&(&b.study_instance_uid, b.series_number, &b.series_instance_uid))
        });
        SeriesSet { series, set_aside }
    }
}

fn same_group(a: &Pending, b: &Pending) -> bool {
    let orient = |p: &Pending| p.geometry.image_orientation.map(|o| o.map(|v| (v * 100.0).round() as i64));
    a.geometry.study_instance_uid == b.geometry.study_instance_uid
        && a.geometry.series_instance_uid == b.geometry.series_instance_uid
        && (a.width, a.height) == (b.width, b.height)
        && orient(a) == orient(b)
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn unit(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(a, a).sqrt();
    (n > 1e-6).then(|| a.map(|v| v / n))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Stack one group (same series, size and orientation) into a [`Series`].
fn stack(mut g: Vec<Pending>) -> Result<Series, Vec<SetAside>> {
    let Some(first) = g.first() else { return Err(Vec::new()) };
    let aside =
        |g: Vec<Pending>, reason: &str| g.into_iter().map(|p| SetAside { file: p.file, reason: reason.to_string(), not_dicom: false }).collect::<Vec<_>>();
    let (width, height) = (first.width, first.height);
    let [row_sp, col_sp] = first.geometry.pixel_spacing.unwrap_or([1.0, 1.0]);
    let thickness = first.geometry.slice_thickness;
    let orientation = first.geometry.image_orientation.and_then(|o| Some((unit([o[0], o[1], o[2]])?, unit([o[3], o[4], o[5]])?)));
    let positioned = orientation.is_some() && g.iter().all(|p| p.geometry.image_position.is_some());
    let mut problems = Vec::new();
    let (row_dir, col_dir) = orientation.unwrap_or(([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]));
    let Some(normal) = unit(cross(row_dir, col_dir)).filter(|_| dot(row_dir, col_dir).abs() < 0.5) else {
        return Err(aside(g, "an Image Orientation whose row and column directions are not perpendicular"));
    };
    if normal[2].abs() < 0.8 {
        let plane = if normal[0].abs() >= normal[1].abs() { "sagittal" } else { "coronal" };
        return Err(aside(g, &format!("a {plane} series (the CT model reads axial slices)")));
    }
    // Superior first: LPS +z is superior, so order by position along the normal pointing up.
    let up = if normal[2] >= 0.0 { normal } else { normal.map(|v| -v) };
    let positions: Vec<f64> = if positioned {
        // Each slice's position along the normal, computed once; superior (larger) first.
        let mut placed: Vec<(f64, Pending)> = g.into_iter().map(|p| (p.geometry.image_position.map_or(0.0, |x| dot(x, up)), p)).collect();
        placed.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut kept: Vec<(f64, Pending)> = Vec::with_capacity(placed.len());
        for (d, p) in placed {
            match kept.last() {
                Some((dq, q)) if (dq - d).abs() < 0.01 => {
                    problems.push(StackProblem::DuplicatePosition { kept: q.file.clone(), dropped: p.file.clone() });
                }
                _ => kept.push((d, p)),
            }
        }
        let (positions, slices) = kept.into_iter().unzip();
        g = slices;
        positions
    } else {
        g.sort_by_key(|p| (p.geometry.instance_number.unwrap_or(i64::MAX), p.file.clone()));
        problems.push(StackProblem::NoPositions);
        Vec::new()
    };
    let gaps: Vec<f64> = positions.iter().zip(positions.iter().skip(1)).map(|(a, b)| a - b).collect();
    let spacing = if gaps.is_empty() { None } else { Some(median(&gaps)) };
    if let Some(m) = spacing.filter(|m| *m > 0.0) {
        let mut unexplained = Vec::new();
        for (i, &d) in gaps.iter().enumerate() {
            let ratio = d / m;
            if ratio > 1.5 {
                problems.push(StackProblem::MissingSlices { after: i as u32, missing: (ratio.round() as u32).saturating_sub(1).max(1), gap_mm: d as f32 });
            } else if !(0.9..=1.1).contains(&ratio) {
                unexplained.push(d);
            }
        }
        if !unexplained.is_empty() {
            let (lo, hi) = gaps.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &d| (lo.min(d), hi.max(d)));
            problems.push(StackProblem::IrregularSpacing { min_mm: lo as f32, max_mm: hi as f32, median_mm: m as f32 });
        }
    }
    if let (true, Some(a), Some(b)) = (positioned, g.first().and_then(|p| p.geometry.image_position), g.last().and_then(|p| p.geometry.image_position)) {
        let d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let len = dot(d, d).sqrt();
        if len > 1e-3 {
            let degrees = (dot(d, up).abs() / len).clamp(-1.0, 1.0).acos().to_degrees();
            if degrees > 0.5 {
                problems.push(StackProblem::GantryTilt { degrees: degrees as f32 });
            }
        }
    }

    // In-plane: columns towards the patient's left (+x in DICOM's LPS), rows towards posterior
    // (+y); transposed when the rows run along y, flipped where a direction points the other way.
    let transpose = row_dir[0].abs() < col_dir[0].abs();
    let (across, down) = if transpose { (col_dir, row_dir) } else { (row_dir, col_dir) };
    let (flip_x, flip_y) = (across[0] < 0.0, down[1] < 0.0);
    let (columns, rows) = if transpose { (height, width) } else { (width, height) };
    let (sx, sy) = if transpose { (row_sp, col_sp) } else { (col_sp, row_sp) };
    let n = (columns as usize) * (rows as usize);
    let mut voxels = Vec::with_capacity(n * g.len());
    for p in &g {
        for r in 0..rows as usize {
            for c in 0..columns as usize {
                let (c, r) = (if flip_x { columns as usize - 1 - c } else { c }, if flip_y { rows as usize - 1 - r } else { r });
                let (x, y) = if transpose { (r, c) } else { (c, r) };
                voxels.push(p.values.get(y * width as usize + x).copied().unwrap_or(0));
            }
        }
    }
    let centre = |p: &Pending| {
        p.geometry.image_position.map(|ipp| {
            let (half_c, half_r) = ((width as f64 - 1.0) / 2.0 * col_sp, (height as f64 - 1.0) / 2.0 * row_sp);
            (ipp[2] + row_dir[2] * half_c + col_dir[2] * half_r) as f32
        })
    };
    let slice_sp = spacing.filter(|m| *m > 0.0).or(thickness).unwrap_or(1.0);
    let slice_z_mm = g.iter().enumerate().map(|(i, p)| centre(p).unwrap_or(-(i as f32) * slice_sp as f32)).collect();
    let first = g.first().map(|p| (p.geometry.clone(), p.description.clone(), p.intensity));
    let Some((geometry, description, intensity)) = first else { return Err(Vec::new()) };
    let volume = Volume {
        format: Format::Dicom,
        columns,
        rows,
        slices: g.len() as u32,
        spacing_mm: [sx as f32, sy as f32, slice_sp as f32],
        slice_z_mm,
        placement: if positioned { Placement::Oriented } else { Placement::StoredOrder },
        intensity,
        scale: 1.0,
        offset: 0.0,
        quantised: g.iter().any(|p| p.rounded),
        voxels,
        replaced_non_finite: 0,
        volumes_in_file: 1,
        source: format!("DICOM series of {} files", g.len()),
    };
    Ok(Series {
        study_instance_uid: geometry.study_instance_uid,
        series_instance_uid: geometry.series_instance_uid,
        series_number: geometry.series_number,
        description,
        slice_thickness_mm: geometry.slice_thickness,
        files: g.into_iter().map(|p| p.file).collect(),
        problems,
        volume,
    })
}
