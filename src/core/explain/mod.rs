//! Explain: Grad-CAM heatmaps for a class at a chosen depth ([`gradcam`]), mapped back onto the
//! original image, and the colour maps that draw them ([`colormap`]).

pub mod colormap;
pub mod gradcam;

pub use colormap::{Colormap, opacity, overlay};
pub use gradcam::{Cam, CamError, grad_cam, to_original};
