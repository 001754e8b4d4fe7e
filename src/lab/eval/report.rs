//! The cross-fitted calibration error of a cross-validation fold (the lab's part of the
//! reports; the report itself is built by [`ctxr::train::report`]).

use ctxr::infer::decision::softmax;
use ctxr::train::metrics::{ece, fit_temperature};
use ctxr::train::report::Outputs;

use crate::stable_hash;

/// Fit a temperature on one half of `o`'s patients and measure ECE on the other half, both
/// ways, so the calibrated ECE never sees the data its temperature was fitted on.
pub fn cross_fitted_ece(o: &Outputs, groups: &[String]) -> (f64, f64) {
    let half: Vec<bool> = groups.iter().map(|g| stable_hash(g, 0).is_multiple_of(2)).collect();
    let mut eces = Vec::new();
    let mut raws = Vec::new();
    for side in [true, false] {
        let fit: Vec<usize> = (0..o.truth.len()).filter(|&i| half[i] == side).collect();
        let test: Vec<usize> = (0..o.truth.len()).filter(|&i| half[i] != side).collect();
        if fit.is_empty() || test.is_empty() {
            continue;
        }
        let fl: Vec<Vec<f32>> = fit.iter().map(|&i| o.logits[i].clone()).collect();
        let ft: Vec<usize> = fit.iter().map(|&i| o.truth[i]).collect();
        let t = fit_temperature(&fl, &ft);
        let tp: Vec<Vec<f64>> = test.iter().map(|&i| softmax(&o.logits[i], t)).collect();
        let rp: Vec<Vec<f64>> = test.iter().map(|&i| softmax(&o.logits[i], 1.0)).collect();
        let tt: Vec<usize> = test.iter().map(|&i| o.truth[i]).collect();
        eces.push(ece(&tp, &tt, 15));
        raws.push(ece(&rp, &tt, 15));
    }
    let m = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    (m(&raws), m(&eces))
}
