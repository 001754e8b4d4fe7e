//! Gate training: the modality network (CT slice vs chest radiograph vs synthetic "neither"),
//! then the Mahalanobis distance model on its features that refuses what is far from every
//! training image, with the distance limit set on held-out chest images.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use ctxr::infer::gate::{N_STATS, image_stats};
use ctxr::infer::{Classifier, Gatekeeper};
use ctxr::model::report::{Evaluation, TrainingSummary};
use ctxr::model::{Cnn, EntrySpec, GateParams, ModelEntry, ModelId, RecordDtype, TrainConfig, record_bytes};

use super::{Draws, Log, RunOptions, cache_batch, read_rows, store_entry, train_model, write};
use crate::LabError;
use crate::data::Cache;
use crate::eval::evaluate_gate_default;
use crate::recipe::{Plan, count_by, credits};

/// Features of cached images, row-major `n × d`.
fn cache_features(model: &Cnn, cache: &Cache, idx: &[usize], mean: f32, std: f32) -> (Vec<f32>, usize) {
    let cpu = Device::flex();
    let size = cache.size as usize;
    let mut out = Vec::new();
    let mut d = 0;
    for batch in idx.chunks(64) {
        let (f, _) = model.gate_features(cache_batch(cache, batch, mean, std, &cpu));
        let fd = f.dims()[1];
        d = fd + N_STATS;
        let fv = read_rows(f);
        for (j, &i) in batch.iter().enumerate() {
            out.extend_from_slice(&fv[j * fd..(j + 1) * fd]);
            out.extend(image_stats(cache.image(i), size));
        }
    }
    (out, d)
}

fn quantile(v: &[f32], q: f64) -> f32 {
    let mut s: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f32::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)]
}

/// Train the modality gate (CT slice vs chest radiograph) on folds 1–4 of both training pools,
/// fit the Mahalanobis model on those training images, set the distance limit on fold 0
/// (validation), then measure acceptance on the external sets and refusal of natural photos.
#[allow(clippy::too_many_arguments)]
pub fn gate_run(
    cfg: &TrainConfig,
    plan: &Plan,
    cache: &Cache,
    labels: &[Option<usize>],
    fold_of: &[usize],
    work: &Path,
    opts: &RunOptions,
    log: &mut Log,
) -> Result<(), LabError> {
    let started = Instant::now();
    let pre = cfg.preprocess();
    // Outlier exposure: synthetic "neither" images (label 2) appended to the cache.
    let size = cache.size as usize;
    let n_real = plan.pool.len();
    let chest: Vec<&[u8]> = (0..n_real).step_by(7).filter(|&i| cache.errors[i].is_none()).map(|i| cache.image(i)).collect();
    let synthetic = super::outliers::generate(2000, size, &chest, cfg.seed ^ 0x5EED);
    let mut images = cache.images.clone();
    let mut errors = cache.errors.clone();
    let mut labels = labels.to_vec();
    let mut fold_of = fold_of.to_vec();
    for (j, img) in synthetic.iter().enumerate() {
        images.extend_from_slice(img);
        errors.push(None);
        labels.push(Some(2));
        fold_of.push(j % cfg.folds);
    }
    let cache = &Cache { size: cache.size, images, errors };
    let (labels, fold_of) = (&labels[..], &fold_of[..]);
    let n = labels.len();
    let ok = |i: &usize| labels[*i].is_some() && cache.errors[*i].is_none();
    let train_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] != 0).filter(ok).collect();
    let real = |i: &usize| labels[*i].is_some_and(|l| l < 2);
    let val_idx: Vec<usize> = (0..n).filter(|&i| fold_of[i] == 0).filter(ok).filter(real).collect();
    log.line(&format!(
        "[gate] {} chest images and {} synthetic outliers ({} training, {} validation chest images)",
        n_real,
        synthetic.len(),
        train_idx.len(),
        val_idx.len()
    ));
    let model = train_model(cfg, cache, labels, &train_idx, &Draws::EveryImage, &[], "fold0", &work.join("checkpoints"), opts.resume, log)?;
    // The distance model describes chest images only.
    let fit_idx: Vec<usize> = train_idx.iter().copied().filter(|i| real(i)).collect();
    let (ft, d) = cache_features(&model, cache, &fit_idx, pre.mean, pre.std);
    let lt: Vec<usize> = fit_idx.iter().map(|&i| labels[i].unwrap_or(0)).collect();
    let (means, precision) = fit_mahalanobis(&ft, &lt, d, 2, 0.05);
    let mut params = GateParams {
        feature_dim: d,
        means,
        precision,
        threshold: 0.0,
        threshold_quantile: 0.999,
        threshold_margin: 1.25,
        max_colourfulness: 20.0,
        ask_below: 0.0,
    };
    let dist_of = |f: &[f32], p: &GateParams| -> Vec<f32> { f.chunks(d).map(|r| p.distance(r)).collect() };
    let (fv, _) = cache_features(&model, cache, &val_idx, pre.mean, pre.std);
    let dv = dist_of(&fv, &params);
    let dt = dist_of(&ft, &params);
    params.threshold = quantile(&dv, params.threshold_quantile as f64) * params.threshold_margin;
    log.line(&format!(
        "[gate] feature dim {d}; training distance q50 {:.1} q99 {:.1} q99.9 {:.1}; validation q99.9 {:.1} → limit {:.1}",
        quantile(&dt, 0.5),
        quantile(&dt, 0.99),
        quantile(&dt, 0.999),
        quantile(&dv, 0.999),
        params.threshold
    ));
    let bytes = record_bytes(&model, true)?;
    let mut entry = ModelEntry {
        training: Some(TrainingSummary {
            config: cfg.clone(),
            pool_sources: count_by(&plan.pool),
            external_sources: None,
            shipped_model: None,
            cross_validation: None,
            trained_on: Some("folds 1-4 of both models' training pools".into()),
            validation: Some("fold 0 (sets the distance limit)".into()),
            minutes: None,
            machine: None,
            leave_one_source_out: None,
        }),
        gate: Some(params.clone()),
        credits: credits(ModelId::Gate),
        notes: vec!["Refuses images that are neither a chest CT slice nor a chest X-ray; a screening aid for the demo, not a guarantee.".into()],
        ..ModelEntry::new(
            EntrySpec {
                id: ModelId::Gate,
                title: "Input gate: chest CT slice vs chest X-ray vs neither",
                classes: &cfg.classes,
                dtype: RecordDtype::F16,
                params: model.num_params(),
                architecture: cfg.architecture.clone(),
                preprocess: pre.clone(),
            },
            &bytes,
        )
    };
    let clf = Classifier::load(entry.clone(), &bytes, Device::flex())?;
    let gk = Gatekeeper { classifier: clf, params };
    let eval = evaluate_gate_default(&gk, &opts.data_dir, true)?;
    log.line(&format!("[gate] {}", serde_json::to_string(&eval)?));
    if let (Some(g), Some(ask)) = (entry.gate.as_mut(), &eval.ask) {
        g.ask_below = ask.ask_below as f32;
    }
    entry.evaluation = Some(Evaluation::Gate(eval));
    std::fs::create_dir_all(&opts.weights_dir).map_err(|e| LabError::io(&opts.weights_dir, e))?;
    write(&opts.weights_dir.join(&entry.record), &bytes)?;
    store_entry(&opts.weights_dir, entry)?;
    log.line(&format!("[gate] done in {:.1} min", started.elapsed().as_secs_f64() / 60.0));
    Ok(())
}

/// Fit class means and a shared covariance (with shrinkage towards its diagonal), return
/// the precision matrix. `feats` is row-major `n × d`.
pub fn fit_mahalanobis(feats: &[f32], labels: &[usize], d: usize, classes: usize, shrinkage: f64) -> (Vec<Vec<f32>>, Vec<f32>) {
    let n = labels.len();
    // One feature row per label; a label ≥ `classes` or a missing row is skipped.
    // `d.max(1)`: with d = 0 every row is empty and the zips below do nothing.
    let samples = || feats.chunks_exact(d.max(1)).zip(labels);
    let mut means = vec![vec![0f64; d]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &c) in samples() {
        if let (Some(mean), Some(count)) = (means.get_mut(c), counts.get_mut(c)) {
            *count += 1;
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
    }
    for (mean, &count) in means.iter_mut().zip(&counts) {
        for v in mean {
            *v /= count.max(1) as f64;
        }
    }
    // Upper triangle (b ≥ a) of the pooled scatter matrix.
    let mut cov = vec![0f64; d * d];
    let mut centred = Vec::with_capacity(d);
    for (row, &c) in samples() {
        let Some(mean) = means.get(c) else { continue };
        centred.clear();
        centred.extend(row.iter().zip(mean).map(|(&x, &m)| x as f64 - m));
        for (a, (cov_row, &da)) in cov.chunks_exact_mut(d.max(1)).zip(&centred).enumerate() {
            for (slot, &db) in cov_row.iter_mut().zip(&centred).skip(a) {
                *slot += da * db;
            }
        }
    }
    let denom = (n.saturating_sub(classes)).max(1) as f64;
    for v in &mut cov {
        *v /= denom;
    }
    mirror_upper(&mut cov, d);
    // The diagonal of a d × d row-major matrix is every (d + 1)-th element.
    let avg_var = cov.iter().step_by(d + 1).sum::<f64>() / d as f64;
    let floor = 1e-6 * avg_var.max(1e-12);
    for (a, cov_row) in cov.chunks_exact_mut(d.max(1)).enumerate() {
        for (b, v) in cov_row.iter_mut().enumerate() {
            let target = if a == b { v.max(floor) } else { 0.0 };
            *v = (1.0 - shrinkage) * *v + shrinkage * target;
            if a == b {
                *v += floor;
            }
        }
    }
    let prec = invert(&cov, d);
    (means.into_iter().map(|m| m.into_iter().map(|v| v as f32).collect()).collect(), prec.into_iter().map(|v| v as f32).collect())
}

/// Copy the upper triangle of a row-major `d × d` matrix onto its lower triangle.
fn mirror_upper(m: &mut [f64], d: usize) {
    for a in 0..d {
        for b in a + 1..d {
            if let Some(&v) = m.get(a * d + b)
                && let Some(lower) = m.get_mut(b * d + a)
            {
                *lower = v;
            }
        }
    }
}

/// Swap rows `i < j` of a row-major matrix with `d` columns.
fn swap_rows(m: &mut [f64], d: usize, i: usize, j: usize) {
    if let Some((top, bottom)) = m.split_at_mut_checked(j * d)
        && let Some(ri) = top.get_mut(i * d..(i + 1) * d)
    {
        for (x, y) in ri.iter_mut().zip(bottom.iter_mut().take(d)) {
            std::mem::swap(x, y);
        }
    }
}

/// Gauss–Jordan inverse of a symmetric positive-definite matrix.
fn invert(m: &[f64], d: usize) -> Vec<f64> {
    let mut a = m.to_vec();
    let mut inv = vec![0f64; d * d];
    for v in inv.iter_mut().step_by(d + 1) {
        *v = 1.0;
    }
    let at = |m: &[f64], r: usize, c: usize| m.get(r * d + c).copied().unwrap_or(0.0);
    for col in 0..d {
        let piv = (col..d).max_by(|&x, &y| at(&a, x, col).abs().total_cmp(&at(&a, y, col).abs())).unwrap_or(col);
        if piv != col {
            swap_rows(&mut a, d, col, piv);
            swap_rows(&mut inv, d, col, piv);
        }
        let p = at(&a, col, col);
        if p.abs() < 1e-300 {
            continue;
        }
        // Normalise the pivot row, then subtract it from every other row (d ≥ 1 here).
        let pivot_row = |m: &[f64]| -> Vec<f64> { m.get(col * d..(col + 1) * d).unwrap_or_default().iter().map(|v| v / p).collect() };
        let (pivot_a, pivot_inv) = (pivot_row(&a), pivot_row(&inv));
        for (r, (ra, ri)) in a.chunks_exact_mut(d).zip(inv.chunks_exact_mut(d)).enumerate() {
            if r == col {
                ra.iter_mut().zip(&pivot_a).for_each(|(x, &v)| *x = v);
                ri.iter_mut().zip(&pivot_inv).for_each(|(x, &v)| *x = v);
                continue;
            }
            let f = ra.get(col).copied().unwrap_or(0.0);
            if f != 0.0 {
                for (x, &v) in ra.iter_mut().zip(&pivot_a) {
                    *x -= f * v;
                }
                for (x, &v) in ri.iter_mut().zip(&pivot_inv) {
                    *x -= f * v;
                }
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mahalanobis_of_known_gaussian() {
        // Two features, unit variance, class means (0,0) and (10,0).
        let mut f = Vec::new();
        let mut l = Vec::new();
        let mut s = 3u64;
        let mut g = || {
            let mut acc = 0.0;
            for _ in 0..12 {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                acc += (s >> 11) as f64 / (1u64 << 53) as f64;
            }
            (acc - 6.0) as f32
        };
        for i in 0..4000 {
            let c = i % 2;
            f.push(g() + if c == 1 { 10.0 } else { 0.0 });
            f.push(g());
            l.push(c);
        }
        let (means, precision) = fit_mahalanobis(&f, &l, 2, 2, 0.0);
        let p = GateParams {
            feature_dim: 2,
            means,
            precision,
            threshold: 9.0,
            threshold_quantile: 0.99,
            threshold_margin: 1.0,
            max_colourfulness: 30.0,
            ask_below: 0.0,
        };
        assert!((p.distance(&[0.0, 2.0]) - 4.0).abs() < 0.4, "{}", p.distance(&[0.0, 2.0]));
        assert!((p.distance(&[10.0, 0.0])).abs() < 0.1);
        assert!(!p.judge(&[5.0, 5.0], &[0.5, 0.5]).accepted);
    }
}
