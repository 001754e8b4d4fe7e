//! The fused CPU network (batch-norm folded, `ctxr::model::fused`) against burn's layer-by-layer
//! forward pass, for every committed model, on real images of every source and class in
//! `../shared/data`, on the decoder samples and on every hostile-corpus file that gets as far
//! as the model: logits and gate features within 1e-4, and Grad-CAM at every stage from the
//! fused network's own backward pass (the classifier's path on the CPU) equal to Grad-CAM
//! computed by burn's autodiff end to end. Folding must not change the answers (issue 16). The
//! classifier reads its fused network straight from the record (`FusedCnn::from_record`), and
//! serves exactly the logits of the one folded from burn's loaded layers.

use std::collections::BTreeMap;

use super::common::{self, committed_manifest, weights_dir};
use burn::tensor::{Tensor, TensorData};
use ctxr::explain::gradcam::grad_cam;
use ctxr::imaging::{Preprocessed, WindowChoice};
use ctxr::infer::Classifier;
use ctxr::model::{Cnn, FusedCnn, ModelEntry, device, load_model};

const TOLERANCE: f32 = 1e-4;

fn burn_logits_and_features(model: &Cnn, p: &Preprocessed, size: usize) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::<4>::from_data(TensorData::new(p.input.clone(), [1, 1, size, size]), &device::cpu());
    let (f, l) = model.gate_features(x);
    let read = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    (read(f), read(l))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "same length");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Images to compare on: up to `per_cell` of each (source, label) of both modalities, and the
/// decoder samples.
fn real_images(data: &std::path::Path, per_cell: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for modality in ["ct", "cxr"] {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (rel, label, source, _) in common::manifest_rows(&data.join(modality).join("manifest.csv")) {
            let n = seen.entry((source, label)).or_default();
            if *n < per_cell {
                *n += 1;
                out.push((rel.clone(), std::fs::read(data.join(modality).join(&rel)).expect("manifest file readable")));
            }
        }
        let samples = data.join(modality).join("decoder-samples");
        for dir in std::fs::read_dir(&samples).into_iter().flatten().flatten().filter(|d| d.path().is_dir()) {
            for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten().take(per_cell) {
                out.push((f.path().display().to_string(), std::fs::read(f.path()).unwrap()));
            }
        }
    }
    out
}

fn check_model(entry: &ModelEntry, images: &[(String, Vec<u8>)], cams: usize) -> usize {
    let record = std::fs::read(weights_dir().join(&entry.record)).expect("committed record");
    let model = load_model(entry.expected(), &record, &device::cpu()).expect("committed record loads");
    let fused = FusedCnn::from_cnn(&model).expect("committed model folds");
    let clf = Classifier::load(entry.clone(), &record, device::cpu()).unwrap();
    let size = entry.preprocess.input_size as usize;
    let (mut compared, mut worst) = (0, 0.0f32);
    for (name, bytes) in images {
        let Ok((_, p)) = clf.prepare(bytes, WindowChoice::Auto) else { continue };
        let (bf, bl) = burn_logits_and_features(&model, &p, size);
        let (ff, fl) = fused.gate_features(&p.input, size);
        let d = max_diff(&bl, &fl).max(max_diff(&bf, &ff));
        assert!(d < TOLERANCE, "{}: {name}: fused and burn differ by {d} (logits {bl:?} vs {fl:?})", entry.id);
        let served = pollster::block_on(clf.predict(&p)).unwrap();
        assert_eq!(served.logits, fl, "{}: {name}: the classifier serves the fused logits", entry.id);
        worst = worst.max(d);
        if compared < cams {
            let stages = model.num_stages();
            for layer in 1..=stages {
                let x = Tensor::<4>::from_data(TensorData::new(p.input.clone(), [1, 1, size, size]), &device::cpu());
                let want = pollster::block_on(grad_cam(&model, x, served.label_index, layer)).unwrap();
                let got = pollster::block_on(clf.explain(&p, served.label_index, layer)).unwrap();
                assert!((want.score - got.score).abs() < TOLERANCE, "{}: {name}: Grad-CAM score", entry.id);
                let scale = want.linear.iter().map(|v| v.abs()).fold(1e-6, f32::max);
                let dl = max_diff(&want.linear, &got.linear);
                assert!(dl / scale < 1e-3, "{}: {name}: layer {layer} Grad-CAM maps differ by {dl} (scale {scale})", entry.id);
                let alpha_scale = want.alphas.iter().map(|v| v.abs()).fold(1e-9, f32::max);
                let da = max_diff(&want.alphas, &got.alphas);
                assert!(da / alpha_scale < 1e-3, "{}: {name}: layer {layer} Grad-CAM weights differ by {da} (scale {alpha_scale})", entry.id);
            }
        }
        compared += 1;
    }
    eprintln!("{}: {compared} images, largest |Δ| of logits and features {worst:.2e}", entry.id);
    compared
}

#[test]
fn the_fused_network_gives_burns_answers_on_real_images() {
    let Some(data) = common::shared_data("the_fused_network_gives_burns_answers_on_real_images") else { return };
    let images = real_images(&data, 3);
    for entry in &committed_manifest().models {
        let n = check_model(entry, &images, 4);
        assert!(n >= 20, "{}: only {n} real images reached the model", entry.id);
    }
}

#[test]
fn the_fused_network_gives_burns_answers_on_the_hostile_corpus() {
    let cases: Vec<(String, Vec<u8>)> = ctxr_lab::corpus::cases().into_iter().map(|c| (c.name, c.bytes)).collect();
    for entry in &committed_manifest().models {
        let n = check_model(entry, &cases, 2);
        assert!(n >= 10, "{}: only {n} corpus files reached the model", entry.id);
    }
}

#[test]
fn batched_logits_equal_one_image_at_a_time_and_a_malformed_batch_is_refused() {
    let models = common::committed_models();
    let cases = ctxr_lab::corpus::cases();
    for entry in committed_manifest().models.iter().filter(|e| e.id != ctxr::model::ModelId::Gate) {
        let record = std::fs::read(weights_dir().join(&entry.record)).expect("committed record");
        let clf = Classifier::load(entry.clone(), &record, device::cpu()).unwrap();
        let inputs: Vec<Vec<f32>> = cases.iter().filter_map(|c| clf.prepare(&c.bytes, WindowChoice::Auto).ok()).map(|(_, p)| p.input).take(5).collect();
        assert_eq!(inputs.len(), 5, "{}: five corpus files reach the model", entry.id);
        let one: Vec<f32> = inputs.iter().flat_map(|x| pollster::block_on(models.logits(entry.id, x.clone())).unwrap()).collect();
        let batch = pollster::block_on(models.logits(entry.id, inputs.concat())).unwrap();
        assert_eq!(batch.len(), 5 * entry.classes.len());
        assert!(max_diff(&one, &batch) < TOLERANCE, "{}: batch {batch:?} vs one by one {one:?}", entry.id);
        let per = inputs[0].len();
        for bad in [Vec::new(), vec![0.5; per + 1], vec![0.5; per * (ctxr::infer::study::MAX_BATCH + 1)]] {
            let e = pollster::block_on(models.logits(entry.id, bad)).err();
            assert!(matches!(e, Some(ctxr::infer::AnalyzeError::InputSize { .. })), "{}: {e:?}", entry.id);
        }
    }
}
