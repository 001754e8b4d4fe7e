//! A model saved to bytes and loaded back through the browser's path (record + manifest +
//! SHA-256, hashed here or by the browser) gives identical logits; a damaged record, or a
//! digest that is not the manifest's, is refused; f16 records stay close.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use ctxr::imaging::PreprocessConfig;
use ctxr::infer::Classifier;
use ctxr::model::{EntrySpec, Manifest, ModelConfig, ModelEntry, ModelId, Record, RecordDtype, WeightsError, record_bytes, sha256_hex};

fn entry(bytes: &[u8], arch: ModelConfig, dtype: RecordDtype, params: usize) -> ModelEntry {
    let classes = ["noncovid".to_string(), "covid".to_string()];
    ModelEntry::new(
        EntrySpec { id: ModelId::Ct, title: "test", classes: &classes, dtype, params, architecture: arch, preprocess: PreprocessConfig::new(64) },
        bytes,
    )
}

fn logits(model: &ctxr::model::Cnn) -> Vec<f32> {
    let v: Vec<f32> = (0..2 * 64 * 64).map(|i| ((i * 13 % 97) as f32 / 40.0) - 1.2).collect();
    let x = Tensor::<4>::from_data(TensorData::new(v, [2, 1, 64, 64]), &ctxr::model::device::cpu());
    model.forward(x).into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn record_roundtrip_through_manifest_gives_identical_logits() {
    let dev = ctxr::model::device::cpu();
    let arch = ModelConfig::new(2);
    let model = arch.init_seeded(&dev, 42).valid();
    let params = model.num_params();
    assert!(params <= 2_000_000, "≤ 2 M parameters, got {params}");
    let bytes = record_bytes(&model, false).unwrap();
    let mut manifest = Manifest::default();
    manifest.upsert(entry(&bytes, arch, RecordDtype::F32, params));
    let parsed = Manifest::parse(&manifest.to_json()).unwrap();
    let clf = Classifier::load(parsed.model(ModelId::Ct).unwrap().clone(), &bytes, dev.clone()).unwrap();
    // Every parameter comes from the record (the model is built with zeros before it loads).
    assert_eq!(logits(&model), logits(clf.model().unwrap()), "identical logits after the round trip");
    assert!(!clf.entry.is_evaluated());
    // The page's path: the digest computed by the browser (hex in either case).
    let hashed = Record::hashed(&bytes, sha256_hex(&bytes).to_uppercase());
    let clf = Classifier::load(parsed.model(ModelId::Ct).unwrap().clone(), hashed, dev).unwrap();
    assert_eq!(logits(&model), logits(clf.model().unwrap()), "identical logits with the browser's digest");
}

#[test]
fn damaged_record_is_refused() {
    let dev = ctxr::model::device::cpu();
    let arch = ModelConfig::new(2);
    let model = arch.init_seeded(&dev, 42).valid();
    let mut bytes = record_bytes(&model, false).unwrap();
    let e = entry(&bytes, arch, RecordDtype::F32, 0);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    match Classifier::load(e.clone(), &bytes, dev.clone()) {
        Err(WeightsError::ShaMismatch { .. }) => {}
        other => panic!("expected ShaMismatch, got {:?}", other.err()),
    }
    // A digest from the browser is checked as strictly: the damaged bytes' own digest is refused.
    match Classifier::load(e, Record::hashed(&bytes, sha256_hex(&bytes)), dev) {
        Err(WeightsError::ShaMismatch { .. }) => {}
        other => panic!("expected ShaMismatch for the browser's digest, got {:?}", other.err()),
    }
}

#[test]
fn an_architecture_without_channels_or_without_bound_is_refused_before_it_is_built() {
    // A manifest is a user's file when they load an adapted model: the record's hash matches,
    // but the widths it declares must not make the engine build layers without channels
    // (a panic in the kernels) or allocate without bound (an abort).
    let dev = ctxr::model::device::cpu();
    let model = ModelConfig::new(2).init_seeded(&dev, 42).valid();
    let bytes = record_bytes(&model, false).unwrap();
    let mut cases = Vec::new();
    for widths in [vec![0, 48, 96, 192], vec![24, 48, 96, 1_000_000]] {
        cases.push(ModelConfig { stage_widths: widths, ..ModelConfig::new(2) });
    }
    cases.push(ModelConfig { stem_width: 0, ..ModelConfig::new(2) });
    cases.push(ModelConfig { in_channels: 3, ..ModelConfig::new(2) });
    for arch in cases {
        let what = format!("{arch:?}");
        match Classifier::load(entry(&bytes, arch, RecordDtype::F32, 0), &bytes, dev.clone()) {
            Err(WeightsError::Widths { .. }) => {}
            other => panic!("{what}: expected Widths, got {:?}", other.err()),
        }
    }
}

#[test]
fn f16_record_is_half_the_size_and_close() {
    let dev = ctxr::model::device::cpu();
    let arch = ModelConfig::new(2);
    let model = arch.init_seeded(&dev, 42).valid();
    let full = record_bytes(&model, false).unwrap();
    let half = record_bytes(&model, true).unwrap();
    assert!(half.len() < full.len() * 6 / 10, "f16 {} vs f32 {}", half.len(), full.len());
    let clf = Classifier::load(entry(&half, arch, RecordDtype::F16, 0), &half, dev).unwrap();
    let (a, b) = (logits(&model), logits(clf.model().unwrap()));
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    eprintln!("f32 record {} bytes, f16 record {} bytes, max logit difference {max:e}", full.len(), half.len());
    assert!(max < 5e-2, "f16 logits differ by {max}");
}
