//! Set-up commands and shared loading: the manifest and records for the other subcommands,
//! untrained weights, the model card's measured section and the hostile-input corpus.

use std::path::Path;
use std::process::ExitCode;

use burn::module::Module;
use burn::tensor::Device;
use ctxr::imaging::PreprocessConfig;
use ctxr::infer::Classifier;
use ctxr::model::device;
use ctxr::model::{EntrySpec, Manifest, ModelConfig, ModelId, RecordDtype, record_bytes};
use ctxr_lab::LabError;
use ctxr_lab::train::write;
use ctxr_lab::weights::{read_manifest, write_manifest};

use crate::DeviceArg;

/// The manifest in `dir`, each entry with its details ([`read_manifest`]).
pub fn load_manifest(dir: &Path) -> Result<Manifest, LabError> {
    let path = dir.join("manifest.json");
    if let Err(e) = std::fs::metadata(&path) {
        return Err(LabError::Usage(format!(
            "cannot read {}: {e}. Train models (see README) or write untrained ones with `ctxr init-weights --out DIR`.",
            path.display()
        )));
    }
    read_manifest(dir)
}

pub fn load_classifier(dir: &Path, manifest: &Manifest, id: ModelId, device: &Device) -> Result<Classifier, LabError> {
    let entry = manifest.model(id)?.clone();
    let path = dir.join(&entry.record);
    let bytes = std::fs::read(&path).map_err(|e| LabError::io(&path, e))?;
    Ok(Classifier::load(entry, &bytes, device.clone())?)
}

pub fn make_device(d: DeviceArg) -> Result<Device, LabError> {
    match d {
        DeviceArg::Cpu => Ok(device::cpu()),
        DeviceArg::Wgpu => pollster::block_on(device::wgpu()).map_err(|e| LabError::Usage(format!("no wgpu device: {e}"))),
    }
}

pub fn init_weights(out: &Path, input_size: u32) -> Result<ExitCode, LabError> {
    std::fs::create_dir_all(out).map_err(|e| LabError::io(out, e))?;
    let device = device::cpu();
    let mut manifest = Manifest::default();
    for (id, classes) in [(ModelId::Ct, vec!["noncovid", "covid"]), (ModelId::Cxr, vec!["normal", "pneumonia", "covid"])] {
        let classes: Vec<String> = classes.into_iter().map(String::from).collect();
        let arch = ModelConfig::new(classes.len());
        let model = arch.init(&device);
        let bytes = record_bytes(&model, false)?;
        let title = format!("UNTRAINED {id} model (random weights, for testing the pipeline only)");
        let spec = EntrySpec {
            id,
            title: &title,
            classes: &classes,
            dtype: RecordDtype::F32,
            params: model.num_params(),
            architecture: arch,
            preprocess: PreprocessConfig::new(input_size),
        };
        let mut entry = ctxr::model::ModelEntry::new(spec, &bytes);
        // Never under a shipped record's name: a trained model replaces these entries.
        entry.record = format!("{id}.untrained.bpk");
        entry.notes = vec!["Random initialisation. Outputs are meaningless.".into()];
        write(&out.join(&entry.record), &bytes)?;
        manifest.upsert(entry);
    }
    write_manifest(out, &manifest)?;
    eprintln!("wrote UNTRAINED weights to {} (outputs are meaningless; for pipeline tests only)", out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn card(weights: &Path, out: &Path) -> Result<ExitCode, LabError> {
    let m = load_manifest(weights)?;
    let old = std::fs::read_to_string(out).unwrap_or_default();
    write(out, ctxr_lab::card::splice(&old, &ctxr_lab::card::render(&m)).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn corpus(out: &Path) -> Result<ExitCode, LabError> {
    let cases = ctxr_lab::corpus::cases();
    ctxr_lab::corpus::write(out, &cases).map_err(|e| LabError::io(out, e))?;
    eprintln!("wrote {} corpus files and expected.json to {}", cases.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn export_onnx(weights: &Path, id: ModelId, out: &Path) -> Result<ExitCode, LabError> {
    let manifest = load_manifest(weights)?;
    let clf = load_classifier(weights, &manifest, id, &device::cpu())?;
    let bytes = ctxr_lab::onnx::export(clf.model()?, clf.entry.preprocess.input_size as usize)?;
    std::fs::write(out, &bytes).map_err(|e| LabError::io(out, e))?;
    eprintln!("wrote {} ({} bytes): {id} as ONNX, input [N, 1, {s}, {s}], output logits", out.display(), bytes.len(), s = clf.entry.preprocess.input_size);
    Ok(ExitCode::SUCCESS)
}
