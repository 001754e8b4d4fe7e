//! Explain: true Grad-CAM (Selvaraju et al., 2017). For class c and a trunk stage with maps
//! A_k: α_k = mean over positions of ∂y_c/∂A_k (y_c the class logit), map = ReLU(Σ_k α_k A_k),
//! bilinearly upsampled to the model input and normalised to [0, 1]. Gradients come from
//! burn's per-tensor autodiff, so it runs on any device the model runs on; on the CPU the
//! fused network computes the same gradient itself ([`crate::model::FusedCnn::class_gradient`])
//! and [`cam_from_gradient`] turns it into the map.

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::imaging::{Letterbox, resize};
use crate::model::{Cnn, Maps};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CamError {
    #[error("layer {layer} does not exist: the model has {stages} stages (1..={stages})")]
    NoSuchLayer { layer: usize, stages: usize },
    #[error("class {class} does not exist: the model has {classes} classes")]
    NoSuchClass { class: usize, classes: usize },
    #[error("the input must be one image of shape [1, 1, S, S], got {0:?}")]
    BadInput(Vec<usize>),
    #[error("no gradient reached the target layer")]
    NoGradient,
    #[error("reading a tensor back from the device failed: {0}")]
    Readback(String),
    #[error("the source adversary has no head: an earlier training step failed inside its update")]
    NoSourceHead,
}

/// A Grad-CAM result for one image, one class and one layer.
#[derive(Debug, Clone, Serialize)]
pub struct Cam {
    /// 1-based stage index.
    pub layer: usize,
    pub class: usize,
    /// The class logit y_c.
    pub score: f32,
    /// Size of the stage's feature maps.
    pub map_width: usize,
    pub map_height: usize,
    /// Σ_k α_k A_k before ReLU and normalisation, `map_height × map_width`.
    #[serde(skip)]
    pub linear: Vec<f32>,
    /// α_k, one per channel of the stage.
    #[serde(skip)]
    pub alphas: Vec<f32>,
    /// max of ReLU(map) before normalisation (0 means the class has no positive evidence here).
    pub peak: f32,
    /// ReLU(map) / peak, upsampled to `input_size × input_size`, values in [0, 1].
    #[serde(skip)]
    pub heat: Vec<f32>,
    pub input_size: usize,
}

pub(crate) async fn read(t: Tensor<1>) -> Result<Vec<f32>, CamError> {
    let data: TensorData = t.into_data_async().await.map_err(|e| CamError::Readback(format!("{e:?}")))?;
    data.convert::<f32>().try_to_vec::<f32>().map_err(|e| CamError::Readback(format!("{e:?}")))
}

/// Grad-CAM of `class` at stage `layer` (1-based) for `input` of shape `[1, 1, S, S]`.
/// `model` must be in inference mode (`valid()`), on the same device as `input`.
pub async fn grad_cam(model: &Cnn, input: Tensor<4>, class: usize, layer: usize) -> Result<Cam, CamError> {
    let dims = input.dims();
    if dims[0] != 1 || dims[1] != 1 || dims[2] != dims[3] {
        return Err(CamError::BadInput(dims.to_vec()));
    }
    let stages = model.num_stages();
    if layer == 0 || layer > stages {
        return Err(CamError::NoSuchLayer { layer, stages });
    }
    let a = model.trunk_until(input.detach(), layer - 1);
    grad_cam_from(model, a, dims[2], class, layer).await
}

/// Grad-CAM from `a`, the output of stage `layer` (1-based) for one `size × size` input,
/// however it was computed: the gradient flows from the class logit back to `a` only.
pub async fn grad_cam_from(model: &Cnn, a: Tensor<4>, size: usize, class: usize, layer: usize) -> Result<Cam, CamError> {
    let stages = model.num_stages();
    if layer == 0 || layer > stages {
        return Err(CamError::NoSuchLayer { layer, stages });
    }
    let k = layer - 1;
    let a = a.detach().autodiff().require_grad();
    let logits = model.forward_from(a.clone(), k);
    let [_, classes] = logits.dims();
    if class >= classes {
        return Err(CamError::NoSuchClass { class, classes });
    }
    let score = logits.slice([0..1, class..class + 1]).reshape([1]);
    let grads = score.backward();
    let g = a.grad(&grads).ok_or(CamError::NoGradient)?;
    let a = a.without_autodiff();
    let [_, c, h, w] = a.dims();
    let g = g.without_autodiff();
    let alphas = g.mean_dim(3).mean_dim(2); // [1, C, 1, 1]
    let linear = (a * alphas.clone()).sum_dim(1).reshape([h * w]);
    let score_v = read(score.without_autodiff()).await?.first().copied().unwrap_or(0.0);
    let alphas = read(alphas.reshape([c])).await?;
    let linear = read(linear).await?;
    Ok(Cam::new(layer, class, score_v, [w, h], linear, alphas, size))
}

/// Grad-CAM from a stage's output `a` and the gradient `grad` of the class logit `score` with
/// respect to it (same shape), computed on the host: what the fused CPU network hands over.
pub fn cam_from_gradient(a: &Maps, grad: &Maps, score: f32, class: usize, layer: usize, size: usize) -> Cam {
    let hw = a.height * a.width;
    let alphas = grad.pool();
    let mut linear = vec![0.0; hw];
    for (channel, alpha) in a.data.chunks_exact(hw.max(1)).zip(&alphas) {
        for (l, v) in linear.iter_mut().zip(channel) {
            *l += alpha * v;
        }
    }
    Cam::new(layer, class, score, [a.width, a.height], linear, alphas, size)
}

impl Cam {
    /// The result from the linear map Σ_k α_k A_k (`width × height`) and the α_k: ReLU,
    /// peak, and the heat map at the input size.
    fn new(layer: usize, class: usize, score: f32, [w, h]: [usize; 2], linear: Vec<f32>, alphas: Vec<f32>, size: usize) -> Cam {
        let relu_map: Vec<f32> = linear.iter().map(|v| v.max(0.0)).collect();
        let peak = relu_map.iter().copied().fold(0.0f32, f32::max);
        let heat = upsample_normalised(&relu_map, w, h, size, peak);
        Cam { layer, class, score, map_width: w, map_height: h, linear, alphas, peak, heat, input_size: size }
    }
}

/// ReLU'd map → `size × size` by bilinear interpolation (pixel-centre aligned), divided by `peak`.
pub fn upsample_normalised(map: &[f32], w: usize, h: usize, size: usize, peak: f32) -> Vec<f32> {
    let mut out = vec![0f32; size * size];
    if peak <= 0.0 || !peak.is_finite() || w == 0 || h == 0 || map.len() < w * h {
        return out;
    }
    let (sx, sy) = (w as f32 / size as f32, h as f32 / size as f32);
    for y in 0..size {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(h - 1);
        let ty = fy - y0 as f32;
        for x in 0..size {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(w - 1);
            let tx = fx - x0 as f32;
            let top = map[y0 * w + x0] * (1.0 - tx) + map[y0 * w + x1] * tx;
            let bot = map[y1 * w + x0] * (1.0 - tx) + map[y1 * w + x1] * tx;
            out[y * size + x] = ((top * (1.0 - ty) + bot * ty) / peak).clamp(0.0, 1.0);
        }
    }
    out
}

/// Map a heat map over the square model input back onto the original image's pixel grid
/// (removing the letterbox padding, placing it on the cropped region), `orig_w × orig_h`.
/// Outside the region the model saw, the heat is 0.
pub fn to_original(heat: &[f32], size: u32, lb: Letterbox, orig_w: u32, orig_h: u32) -> Vec<f32> {
    let mut out = vec![0.0; (orig_w as usize) * (orig_h as usize)];
    if heat.len() != (size * size) as usize || lb.width == 0 || lb.height == 0 || lb.x + lb.width > size || lb.y + lb.height > size {
        return out;
    }
    let mut crop = Vec::with_capacity((lb.width * lb.height) as usize);
    for y in lb.y..lb.y + lb.height {
        let start = (y * size + lb.x) as usize;
        crop.extend_from_slice(&heat[start..start + lb.width as usize]);
    }
    let (x0, y0, x1, y1) = lb.source.to_pixels(orig_w, orig_h);
    if x1 <= x0 || y1 <= y0 {
        return out;
    }
    let (rw, rh) = (x1 - x0, y1 - y0);
    let region = resize(&crop, lb.width, lb.height, rw, rh);
    for (row, src) in region.chunks(rw as usize).enumerate() {
        let start = (y0 as usize + row) * orig_w as usize + x0 as usize;
        if let Some(dst) = out.get_mut(start..start + rw as usize) {
            dst.copy_from_slice(src);
        }
    }
    out
}

/// Class Activation Mapping (Zhou et al., 2016) from the head weights, for checking Grad-CAM:
/// CAM_c = Σ_k W[k, c] A_k at the last stage. Returns the `h × w` map.
pub async fn cam_from_head(model: &Cnn, input: Tensor<4>, class: usize) -> Result<Vec<f32>, CamError> {
    let k = model.num_stages().saturating_sub(1);
    let a = model.trunk_until(input, k);
    let [_, c, h, w] = a.dims();
    let wcol = model.head_weight().slice([0..c, class..class + 1]).reshape([1, c, 1, 1]);
    read((a * wcol).sum_dim(1).reshape([h * w])).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::Region;

    /// An 8×8 map whose letterbox rows 2..6 are hot on the left (0.8) and cold on the right,
    /// with the padding rows at 1.0 (which must never reach the original image).
    fn map() -> Vec<f32> {
        (0..64)
            .map(|i| {
                if !(2..6).contains(&(i / 8)) {
                    1.0
                } else if i % 8 < 4 {
                    0.8
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn letterbox_padding_is_dropped_and_the_content_fills_the_original() {
        let lb = Letterbox { x: 0, y: 2, width: 8, height: 4, source: Region::FULL };
        let out = to_original(&map(), 8, lb, 16, 8);
        assert_eq!(out.len(), 16 * 8);
        assert!(out.iter().all(|&v| v <= 0.8 + 1e-6), "padding heat leaked into the image");
        for row in out.chunks(16) {
            assert!(row[..6].iter().all(|&v| (v - 0.8).abs() < 1e-4), "{row:?}");
            assert!(row[10..].iter().all(|&v| v.abs() < 1e-4), "{row:?}");
        }
    }

    #[test]
    fn a_cropped_region_is_placed_where_it_came_from_and_the_rest_is_cold() {
        let lb = Letterbox { x: 0, y: 2, width: 8, height: 4, source: Region { x: 0.5, y: 0.25, width: 0.5, height: 0.5 } };
        let out = to_original(&map(), 8, lb, 16, 8);
        for (y, row) in out.chunks(16).enumerate() {
            assert!(row[..8].iter().all(|&v| v == 0.0), "outside the crop is cold (row {y})");
            if (2..6).contains(&y) {
                assert!((row[8] - 0.8).abs() < 1e-4 && row[15].abs() < 1e-4, "row {y}: {row:?}");
            } else {
                assert!(row.iter().all(|&v| v == 0.0), "rows outside the crop are cold (row {y})");
            }
        }
    }

    #[test]
    fn an_inconsistent_letterbox_gives_a_cold_map() {
        let lb = Letterbox { x: 4, y: 0, width: 8, height: 8, source: Region::FULL };
        assert!(to_original(&map(), 8, lb, 4, 4).iter().all(|&v| v == 0.0));
    }
}
