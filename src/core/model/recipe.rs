//! Recipe: the data that defines a training run — classes, input size, epochs, batch, learning
//! rate, augmentation ranges, architecture — stored in the manifest beside the weights it
//! produced, so a run can be repeated and a model adapted with the recipe it was trained with.
//! The training code that follows a recipe is in [`crate::train`]; which recipe each model
//! gets is the lab's choice.

use serde::{Deserialize, Serialize};

use super::cnn::ModelConfig;
use super::id::ModelId;
use crate::imaging::{Framing, PreprocessConfig, Tone};

/// Augmentation ranges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Probability of squeezing the image along one axis (ratio in [`squeeze_min`, 1]) so that
    /// black letterbox bars appear: inputs that are not square get such bars from
    /// preprocessing, and the model must not learn them as a cue.
    pub squeeze_prob: f32,
    pub squeeze_min: f32,
    pub flip: bool,
    pub rotation_deg: f32,
    pub scale_min: f32,
    pub shift: f32,
    pub contrast_min: f32,
    pub contrast_max: f32,
    /// Upper end of the field-of-view fraction: above 1 the image shrinks inside the frame
    /// (zoom out), as in exports that show the whole scanner field rather than a crop.
    pub scale_max: f32,
    /// Probability of drawing a CT reconstruction circle: outside the source image (and where
    /// the source is black) but inside a centred circle the frame takes a random grey, outside
    /// the circle it is black (how full-field CT exports look; the gate's CT training sources
    /// are tight crops).
    pub fov_prob: f32,
    /// Export mapping: grey levels go through a gamma drawn log-uniformly in
    /// [1 / `gamma_max`, `gamma_max`] and, with probability `export_prob`, into a narrower
    /// range [lo, hi] (lo ≤ 0.35, hi ≥ 0.65), as when a slice was saved with a wider window
    /// than the lung window (lungs grey rather than black, soft tissue below white). Only the
    /// image content changes; the black letterbox bars stay black, as preprocessing makes them.
    pub gamma_max: f32,
    pub export_prob: f32,
    /// Aspect jitter for stretched framing: one axis, drawn at random, is zoomed by a factor
    /// in [1, `aspect_max`] (the content fills the frame, no bars), as films squashed to a
    /// square by different uploaders differ in aspect. 1 = off.
    pub aspect_max: f32,
    /// Image quality, as sources differ in it (paper figures re-saved at low resolution,
    /// sharp DICOM exports, noisy low-dose slices): with probability `degrade_prob` the image
    /// is blurred by a Gaussian of standard deviation drawn in [0, `blur_max`] pixels, then
    /// gets Gaussian noise of standard deviation drawn in [0, `noise_max`] (in [0, 1] grey
    /// units), so that neither sharpness nor noise can tell a source apart. 0 = off.
    pub degrade_prob: f32,
    pub blur_max: f32,
    pub noise_max: f32,
}

impl AugmentConfig {
    /// Every transform off: the preprocessed image as it is (what the tests of one transform,
    /// and the adaptation tests whose toys carry their signal in a corner, start from).
    pub fn off() -> Self {
        AugmentConfig {
            squeeze_prob: 0.0,
            squeeze_min: 1.0,
            flip: false,
            rotation_deg: 0.0,
            scale_min: 1.0,
            shift: 0.0,
            contrast_min: 1.0,
            contrast_max: 1.0,
            scale_max: 1.0,
            fov_prob: 0.0,
            gamma_max: 1.0,
            export_prob: 0.0,
            aspect_max: 1.0,
            degrade_prob: 0.0,
            blur_max: 0.0,
            noise_max: 0.0,
        }
    }
}

/// The seed papers' ranges (see [`crate::train::augment`]).
impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            squeeze_prob: 0.5,
            squeeze_min: 0.7,
            flip: true,
            rotation_deg: 25.0,
            scale_min: 0.7,
            shift: 0.05,
            contrast_min: 0.5,
            contrast_max: 1.5,
            // The transforms that tell sources apart stay off unless a recipe turns them on.
            ..Self::off()
        }
    }
}

/// Everything that defines a training run (stored in the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelId,
    pub classes: Vec<String>,
    pub input_size: u32,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f32,
    pub seed: u64,
    pub folds: usize,
    pub augment: AugmentConfig,
    pub architecture: ModelConfig,
    pub class_weighted_loss: bool,
    /// Which images of the shared data train and test (absent in older manifests: the seed
    /// sources).
    #[serde(default)]
    pub data: DataPlan,
    /// How each epoch draws its images (absent in older manifests: every image once).
    #[serde(default)]
    pub sampling: Sampling,
    /// How non-square images are framed and how grey levels are normalised (absent in older
    /// manifests: letterbox, windowed).
    #[serde(default)]
    pub framing: Framing,
    #[serde(default)]
    pub tone: Tone,
    /// Blank everything outside the lungs before the model sees it (absent in older manifests:
    /// off).
    #[serde(default)]
    pub mask_to_lungs: bool,
    /// Weight of the source adversary's reversed gradient at the end of its ramp
    /// (`train::adversary`): a head reads each training image's source (balance unit) from the
    /// pooled features, and the trunk is pushed to hide it. 0 (absent in older manifests): off.
    #[serde(default)]
    pub source_adversary: f32,
}

/// Which sources of the shared data a recipe trains on; the lab's `recipe::plan` says which
/// rows each means. Stored so that a model is always evaluated on the split it was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPlan {
    /// The first models: CT on ucsd-covid-ct and sarscov2-ct (MosMed external); X-ray on
    /// kermany-224, radiography-224 and figure1 (Hannover, OpenIST, 1 Kermany patient in 10
    /// external).
    #[default]
    SeedSources,
    /// Every source with the model's labels (see the lab's plan); one-label sets from
    /// pipelines the models never saw stay external.
    AllSources,
}

/// How a training epoch draws its images.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Sampling {
    /// Every training image once, shuffled.
    #[default]
    EveryImage,
    /// `images` draws with replacement, weighted so that within each source (or group of
    /// sources exported the same way) every label it has carries the same total weight: the
    /// label mix of a source then says nothing about an image's label. An image's weight is at
    /// most `max_boost` times what it would have without balancing, so a handful of images
    /// cannot dominate a source.
    BalancedWithinSource { images: usize, max_boost: f32 },
}

impl TrainConfig {
    /// The preprocessing the model is trained with (and the manifest then prescribes).
    pub fn preprocess(&self) -> PreprocessConfig {
        // CT slices are cropped to the lungs: the training sources are tight thorax crops,
        // MosMed and viewer exports show the whole field of view (see `imaging::crop`).
        PreprocessConfig {
            crop_to_lungs: self.model == ModelId::Ct,
            framing: self.framing,
            tone: self.tone,
            mask_to_lungs: self.mask_to_lungs,
            ..PreprocessConfig::new(self.input_size)
        }
    }
}
