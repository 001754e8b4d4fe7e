//! Grad-CAM checked two independent ways on a model with random weights:
//! (a) at the last stage (followed by GAP + linear head) it equals CAM from the head's weights
//!     scaled by 1/(H·W); (b) at an inner stage its gradients match central finite differences.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use ctxr::explain::gradcam::{cam_from_head, grad_cam};
use ctxr::model::ModelConfig;

fn input(size: usize, seed: u32) -> Tensor<4> {
    // Deterministic pseudo-random input (LCG), roughly standardised.
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    let v: Vec<f32> = (0..size * size)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::<4>::from_data(TensorData::new(v, [1, 1, size, size]), &ctxr::model::device::cpu())
}

#[test]
fn last_stage_grad_cam_equals_cam_over_hw() {
    let dev = ctxr::model::device::cpu();
    let model = ModelConfig::new(3).init_seeded(&dev, 42).valid();
    let x = input(64, 7);
    for class in 0..3 {
        let cam = pollster::block_on(grad_cam(&model, x.clone(), class, model.num_stages())).unwrap();
        let reference = pollster::block_on(cam_from_head(&model, x.clone(), class)).unwrap();
        let hw = (cam.map_width * cam.map_height) as f32;
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max_err = cam.linear.iter().zip(&reference).map(|(g, c)| (g - c / hw).abs()).fold(0f32, f32::max);
        let rel = max_err / (scale / hw);
        eprintln!("class {class}: {}x{} map, relative max error {rel:e}", cam.map_width, cam.map_height);
        assert!(rel <= 1e-4, "Grad-CAM differs from CAM/(H·W): relative max error {rel}");
        assert!(cam.heat.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn inner_stage_gradients_match_finite_differences() {
    let dev = ctxr::model::device::cpu();
    let mut arch = ModelConfig::new(2);
    arch.stem_width = 4;
    arch.stage_widths = vec![4, 8, 16, 32];
    let model = arch.init_seeded(&dev, 42).valid();
    let x = input(16, 3);
    let (layer, class) = (2usize, 1usize);
    let k = layer - 1;
    let a = model.trunk_until(x.clone(), k);
    let dims = a.dims();
    let a_vals: Vec<f32> = a.clone().into_data().try_to_vec::<f32>().unwrap();
    let cam = pollster::block_on(grad_cam(&model, x, class, layer)).unwrap();
    // Recover the full gradient with autodiff as grad_cam does, then test the largest entries.
    let at = a.clone().detach().autodiff().require_grad();
    let y = model.forward_from(at.clone(), k).slice([0..1, class..class + 1]).reshape([1]);
    let g: Vec<f32> = at.grad(&y.backward()).unwrap().without_autodiff().into_data().try_to_vec::<f32>().unwrap();
    // α from grad_cam must be the spatial mean of this gradient.
    let hw = dims[2] * dims[3];
    for (c, alpha) in cam.alphas.iter().enumerate() {
        let mean: f32 = g[c * hw..(c + 1) * hw].iter().sum::<f32>() / hw as f32;
        assert!((alpha - mean).abs() <= 1e-6 + 1e-4 * mean.abs(), "alpha {c}");
    }
    let score = |vals: &[f32]| -> f64 {
        let t = Tensor::<4>::from_data(TensorData::new(vals.to_vec(), dims), &dev);
        let v: Vec<f32> = model.forward_from(t, k).into_data().try_to_vec::<f32>().unwrap();
        v[class] as f64
    };
    // The network is piecewise linear (ReLU), so a central difference is exact unless the step
    // crosses a kink: there the forward and backward one-sided differences disagree, and such
    // entries are skipped. The small model and input keep f32 rounding far below the signal.
    let mut idx: Vec<usize> = (0..g.len()).collect();
    idx.sort_by(|&i, &j| g[j].abs().total_cmp(&g[i].abs()));
    let eps = 2e-3f32;
    let base = score(&a_vals);
    let at_offset = |i: usize, d: f32| -> f64 {
        let mut v = a_vals.clone();
        v[i] += d;
        score(&v)
    };
    let (mut worst, mut checked, mut kinks) = (0f64, 0, 0);
    for &i in idx.iter().take(32) {
        let (up, down) = (at_offset(i, eps), at_offset(i, -eps));
        let (fwd, bwd) = ((up - base) / eps as f64, (base - down) / eps as f64);
        let central = (up - down) / (2.0 * eps as f64);
        if (fwd - bwd).abs() > 5e-3 * central.abs().max(1e-9) {
            kinks += 1;
            continue;
        }
        let rel = (central - g[i] as f64).abs() / (g[i] as f64).abs().max(1e-9);
        worst = worst.max(rel);
        checked += 1;
        assert!(rel <= 1e-2, "element {i}: autodiff {} vs finite difference {central} (relative error {rel})", g[i]);
    }
    assert!(checked >= 12, "only {checked} entries away from ReLU kinks ({kinks} skipped)");
    eprintln!(
        "stage {layer}: {checked} of the 32 largest gradient entries match central differences ({kinks} near kinks skipped), worst relative error {worst:e}"
    );
}
