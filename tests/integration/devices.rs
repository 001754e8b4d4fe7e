//! The same model gives the same logits on flex (CPU) and on wgpu (a GPU, or Mesa's lavapipe
//! Vulkan on machines without one). Without any adapter the test says so and skips, unless
//! `CTXR_REQUIRE_DATA=1` (CI), where a missing adapter fails it.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use ctxr::model::{EntrySpec, ModelConfig, ModelEntry, ModelId, RecordDtype, record_bytes};

use super::common;

#[test]
fn flex_and_wgpu_forward_agree() {
    let wgpu = match std::panic::catch_unwind(|| pollster::block_on(ctxr::model::device::wgpu())) {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            common::skip("flex_and_wgpu_forward_agree", &format!("no wgpu adapter ({e}); install mesa-vulkan-drivers for lavapipe"));
            return;
        }
        Err(_) => {
            common::skip("flex_and_wgpu_forward_agree", "wgpu initialisation panicked (no adapter)");
            return;
        }
    };
    let cpu = ctxr::model::device::cpu();
    let arch = ModelConfig::new(3);
    let model = arch.init_seeded(&cpu, 42).valid();
    let bytes = record_bytes(&model, false).unwrap();
    let classes = ["a".to_string(), "b".to_string(), "c".to_string()];
    let spec = EntrySpec {
        id: ModelId::Cxr,
        title: "t",
        classes: &classes,
        dtype: RecordDtype::F32,
        params: model.num_params(),
        architecture: arch,
        preprocess: ctxr::imaging::PreprocessConfig::new(64),
    };
    let entry = ModelEntry::new(spec, &bytes);
    let on_gpu = ctxr::model::load_model(entry.expected(), &bytes, &wgpu).unwrap();
    let n = 2 * 64 * 64;
    let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let x_cpu = Tensor::<4>::from_data(TensorData::new(v.clone(), [2, 1, 64, 64]), &cpu);
    let x_gpu = Tensor::<4>::from_data(TensorData::new(v, [2, 1, 64, 64]), &wgpu);
    let a: Vec<f32> = model.forward(x_cpu).into_data().try_to_vec::<f32>().unwrap();
    let b: Vec<f32> = pollster::block_on(on_gpu.forward(x_gpu).into_data_async()).unwrap().try_to_vec::<f32>().unwrap();
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    eprintln!("flex vs wgpu ({wgpu:?}): logits {a:?} vs {b:?}, max abs difference {max:e}");
    assert!(max <= 1e-3, "logits differ by {max}");
    // Grad-CAM runs on the GPU device too.
    let x = Tensor::<4>::from_data(TensorData::new(vec![0.1f32; 64 * 64], [1, 1, 64, 64]), &wgpu);
    let cam = pollster::block_on(ctxr::explain::gradcam::grad_cam(&on_gpu, x, 0, 2)).unwrap();
    assert_eq!(cam.heat.len(), 64 * 64);
}
