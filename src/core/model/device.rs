//! Devices: the run-time choice between burn's `flex` CPU backend and wgpu (WebGPU in the
//! browser, Vulkan/Metal/DX12 natively). One model type runs on either.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// The run-time backend, spelled one way everywhere: "webgpu" or "cpu" (the page's URL
/// parameter, the engine's answer, the analysis's `backend` field, the CLI's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn `flex` on the CPU (SIMD, and threads natively).
    Cpu,
    /// burn `wgpu`: WebGPU in a browser, Vulkan/Metal/DX12 natively (wgpu implements the
    /// WebGPU API on all of them).
    #[serde(rename = "webgpu")]
    WebGpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::WebGpu => "webgpu",
        }
    }

    /// The backend named `s` ("webgpu" or "cpu"; the older "wgpu", "gpu" and "flex" too).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "webgpu" | "wgpu" | "gpu" => Some(BackendKind::WebGpu),
            "cpu" | "flex" => Some(BackendKind::Cpu),
            _ => None,
        }
    }
}

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// Initialise the wgpu device (the only way that works in a browser). Errors when no
/// adapter is found.
#[cfg(feature = "wgpu")]
pub async fn wgpu() -> Result<Device, String> {
    Device::wgpu_options().init_async().await.map_err(|e| format!("{e}"))
}

/// Without the `wgpu` feature there is no GPU device.
#[cfg(not(feature = "wgpu"))]
pub async fn wgpu() -> Result<Device, String> {
    Err("this build has no wgpu support".into())
}
