//! Devices: the run-time choice between burn's `flex` CPU backend and wgpu (WebGPU in the
//! browser, Vulkan/Metal/DX12 natively). One model type runs on either.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn `flex` on the CPU (SIMD, and threads natively).
    Cpu,
    /// burn `wgpu`: WebGPU in a browser, Vulkan/Metal/DX12 natively.
    Wgpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
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
