//! The front end's path (what the web worker calls through `web.rs`): file bytes → decode →
//! gate → preprocess → model, typed errors, re-windowing without a second decode, Grad-CAM at
//! the display size. Uses the committed weights; with the real data it checks real files,
//! without it generated ones.

use super::common;
use ctxr::explain::Colormap;
use ctxr::imaging::WindowChoice;
use ctxr::infer::analysis::ModelChoice;
use ctxr::infer::{AnalyzeError, Request, VerdictSource};
use ctxr::model::ModelId;

/// An 8-bit PNG of a CT-like phantom (body, two dark lungs) at `size`².
fn phantom_png(size: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(size, size, |x, y| {
        let inside = |cx: f32, cy: f32, rx: f32, ry: f32| ((x as f32 - cx) / rx).powi(2) + ((y as f32 - cy) / ry).powi(2) <= 1.0;
        let s = size as f32;
        let v = if inside(0.33 * s, 0.5 * s, 0.13 * s, 0.22 * s) || inside(0.67 * s, 0.5 * s, 0.13 * s, 0.22 * s) {
            25
        } else if inside(0.5 * s, 0.5 * s, 0.44 * s, 0.34 * s) {
            180
        } else {
            0
        };
        image::Luma([v])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

#[test]
fn forced_model_classifies_rewindows_and_explains() {
    let m = common::committed_models();
    for (model, choice) in [(ModelId::Ct, ModelChoice::Ct), (ModelId::Cxr, ModelChoice::Cxr)] {
        forced_model_case(&m, model, choice);
    }
}

fn forced_model_case(m: &ctxr::infer::Models, model: ModelId, choice: ModelChoice) {
    let bytes = phantom_png(300);
    let (a, mut cur) = pollster::block_on(m.analyze(&bytes, &Request { model: choice, ..Request::default() })).unwrap();
    assert!(!a.refused && a.gate.is_none(), "a chosen model skips the gate");
    assert_eq!(a.model, Some(model));
    let p = a.prediction.as_ref().unwrap();
    assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert_eq!((a.display_width, a.display_height), (300, 300));
    assert_eq!(a.display.len(), 300 * 300);
    assert_eq!(a.seen.len(), (a.seen_size * a.seen_size) as usize);
    assert_eq!(a.layers.len(), 4);
    // A new window changes what the model sees (no second decode needed).
    let before = a.seen.clone();
    let b = pollster::block_on(m.classify_current(&mut cur, WindowChoice::Custom { center: 200.0, width: 50.0 })).unwrap();
    assert_eq!(b.window.width, 50.0);
    assert_ne!(before, b.seen, "a narrow window changes the model input");
    // Grad-CAM at the display size for every class; maps differ between classes.
    let classes = p.classes.len();
    let heats: Vec<_> = (0..classes).map(|c| pollster::block_on(m.explain(&cur, c, 4, Colormap::Cividis)).unwrap()).collect();
    for h in &heats {
        assert_eq!((h.width, h.height), (300, 300));
        assert_eq!(h.rgba.len(), 300 * 300 * 4);
        assert!(h.heat.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    assert!(heats.iter().any(|h| h.peak > 0.0), "some class has positive evidence");
    assert_ne!(heats[0].heat, heats[1].heat, "class 0 and class 1 maps differ");
    assert!(matches!(pollster::block_on(m.explain(&cur, 0, 9, Colormap::Viridis)), Err(AnalyzeError::Classify(_))), "layer 9 does not exist");
}

#[test]
fn bad_files_give_typed_errors() {
    let m = common::committed_models();
    let png = phantom_png(64);
    let cases: [(&[u8], &str); 4] =
        [(&[], "empty"), (&png[..png.len() / 3], "malformed"), (b"%PDF-1.7\n1 0 obj\n", "not_an_image"), (b"hello, this is text\n", "text")];
    for (bytes, kind) in cases {
        let e = pollster::block_on(m.analyze(bytes, &Request::default())).err().expect("an error");
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().len() > 10);
    }
}

#[test]
fn gate_routes_real_files_and_refuses_a_photo() {
    let Some(data) = common::shared_data("gate_routes_real_files_and_refuses_a_photo") else { return };
    let m = common::committed_models();
    let run = |rel: &str| pollster::block_on(m.analyze(&std::fs::read(data.join(rel)).unwrap(), &Request::default()));
    let dicom = run("ct/decoder-samples/dicom-chest-ct/ID_0000_AGE_0060_CONTRAST_1_CT.dcm").unwrap().0;
    let g = dicom.gate.as_ref().unwrap();
    assert!(g.accepted && g.by == VerdictSource::Dicom, "{g:?}");
    assert_eq!(dicom.model, Some(ModelId::Ct));
    assert!(dicom.timings.total_ms > 0.0);
    let cxr = run("cxr/decoder-samples/1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm").unwrap().0;
    assert_eq!(cxr.model, Some(ModelId::Cxr));
    assert!(cxr.display_width <= 768 && cxr.display_height <= 768, "large images are shown downscaled");
    let photo = run("odd-inputs/image-rs/tests/images/jpg/progressive/cat.jpg").unwrap().0;
    assert!(photo.refused && photo.prediction.is_none());
    assert!(!photo.gate.unwrap().reason.is_empty());
    assert_eq!(photo.display.len(), (photo.display_width * photo.display_height) as usize, "a refused image is still shown");
    // A model chosen by hand replaces the gate's network, never its colour rule.
    for choice in [ModelChoice::Ct, ModelChoice::Cxr] {
        let req = Request { model: choice, ..Request::default() };
        let cat =
            pollster::block_on(m.analyze(&std::fs::read(data.join("odd-inputs/image-rs/tests/images/jpg/progressive/cat.jpg")).unwrap(), &req)).unwrap().0;
        let g = cat.gate.as_ref().expect("the colour rule's verdict");
        assert!(cat.refused && cat.model.is_none() && cat.prediction.is_none() && g.by == VerdictSource::Colour, "{choice:?}: {g:?}");
    }
    // The film the gate once took for a CT slice at 39 %: below the gate's bar it asks.
    let film = run("cxr/images/hannover/covid/0a7faa2a.png").unwrap().0;
    let g = film.gate.as_ref().unwrap();
    assert!(film.refused && g.unsure && !g.accepted && film.prediction.is_none() && g.reason.contains("not sure"), "{g:?}");
}

/// Window/level is a display control: another window redraws the image and leaves the
/// result, and the model's input, as they were; the teaching one-off answers for another
/// input without replacing anything, and the same file again gives the same probabilities.
#[test]
fn another_window_changes_the_display_not_the_result() {
    let m = common::committed_models();
    let bytes = phantom_png(200);
    let req = Request { model: ModelChoice::Ct, ..Request::default() };
    let (a, cur) = pollster::block_on(m.analyze(&bytes, &req)).unwrap();
    let narrow = WindowChoice::Custom { center: 200.0, width: 50.0 };
    let d = m.redisplay(&cur, narrow).unwrap();
    assert_eq!((d.display_width, d.display_height), (a.display_width, a.display_height));
    assert_ne!(d.display, a.display, "a narrow window redraws the image");
    let t = pollster::block_on(m.try_window(&cur, narrow)).unwrap();
    let p = a.prediction.as_ref().unwrap();
    assert_eq!(t.window.width, 50.0);
    assert_ne!(t.prediction.probabilities, p.probabilities, "the one-off reads another input");
    let before = pollster::block_on(m.explain(&cur, 1, 4, Colormap::Viridis)).unwrap();
    assert_eq!(before.width, a.display_width, "the analysis kept its own input for Grad-CAM");
    let (again, _) = pollster::block_on(m.analyze(&bytes, &req)).unwrap();
    assert_eq!(again.prediction.unwrap().probabilities, p.probabilities, "the same file, the same probabilities");
    assert_eq!(again.seen, a.seen, "the same model input");
    // The decision in words against its threshold, and the model's measured cautions.
    let d = a.decision.as_ref().expect("the CT model has an operating point");
    let pos = p.probabilities[p.classes.iter().position(|c| *c == d.positive_class).unwrap()];
    let side = if f64::from(pos) >= d.threshold { "is at or above" } else { "is below" };
    assert!(d.rule.starts_with(&format!("P({}) {pos:.3} {side} the {} alert threshold {:.3}", d.positive_class, d.positive_class, d.threshold)), "{}", d.rule);
    let entry = common::committed_manifest().models.into_iter().find(|e| e.id == ModelId::Ct).unwrap();
    assert_eq!(a.cautions, entry.cautions());
    assert!(a.cautions.first().is_some_and(|c| c.starts_with("AUC ")), "{:?}", a.cautions);
    assert_eq!(a.below_bar, entry.below_bar());
}
