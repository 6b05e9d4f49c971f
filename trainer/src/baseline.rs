//! A deliberately simple baseline: one-vs-rest logistic regression on log-mel features
//! pooled over time (per-band mean and maximum). It has no notion of time–frequency
//! shape, so it is not a model to deploy; it measures how hard the benchmark's shift is
//! before any deep model is trained.

use crate::data::loader::FeatureSet;

/// Pools `(n_mels, frames)` features to `2 · n_mels` values per example: per-band mean
/// then per-band maximum over frames.
pub fn pool(set: &FeatureSet) -> Vec<f32> {
    let (n_mels, frames) = set.shape;
    let mut out = Vec::with_capacity(set.n * 2 * n_mels);
    for example in set.x.chunks_exact(n_mels * frames) {
        let rows: Vec<&[f32]> = example.chunks_exact(frames).collect();
        out.extend(rows.iter().map(|r| r.iter().sum::<f32>() / frames as f32));
        out.extend(
            rows.iter()
                .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max)),
        );
    }
    out
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Full-batch gradient steps.
    pub steps: usize,
    /// Learning rate.
    pub learning_rate: f32,
    /// L2 penalty on the weights.
    pub l2: f32,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            steps: 400,
            learning_rate: 0.5,
            l2: 1e-3,
        }
    }
}

/// A fitted one-vs-rest logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticBaseline {
    dims: usize,
    classes: usize,
    mean: Vec<f32>,
    scale: Vec<f32>,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl LogisticBaseline {
    /// Fits on pooled features `x` (`n × dims`) and multi-hot targets `y` (`n × classes`),
    /// standardising each feature with the training mean and deviation.
    pub fn fit(x: &[f32], y: &[f32], dims: usize, classes: usize, opts: FitOptions) -> Self {
        let n = x.len() / dims;
        let mut mean = vec![0.0f32; dims];
        let mut scale = vec![0.0f32; dims];
        for row in x.chunks_exact(dims) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m += v / n as f32);
        }
        for row in x.chunks_exact(dims) {
            for ((s, m), v) in scale.iter_mut().zip(&mean).zip(row) {
                *s += (v - m) * (v - m) / n as f32;
            }
        }
        scale.iter_mut().for_each(|s| *s = 1.0 / s.sqrt().max(1e-6));
        let mut model = Self {
            dims,
            classes,
            mean,
            scale,
            weights: vec![0.0; classes * dims],
            bias: vec![0.0; classes],
        };
        let xs: Vec<f32> = model.standardise(x);
        for _ in 0..opts.steps {
            let mut grad_w = vec![0.0f32; classes * dims];
            let mut grad_b = vec![0.0f32; classes];
            for (row, target) in xs.chunks_exact(dims).zip(y.chunks_exact(classes)) {
                for c in 0..classes {
                    let w = &model.weights[c * dims..(c + 1) * dims];
                    let z = model.bias[c] + w.iter().zip(row).map(|(a, b)| a * b).sum::<f32>();
                    let err = sigmoid(z) - target[c];
                    grad_b[c] += err;
                    grad_w[c * dims..(c + 1) * dims]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(g, v)| *g += err * v);
                }
            }
            let step = opts.learning_rate / n as f32;
            for (w, g) in model.weights.iter_mut().zip(&grad_w) {
                *w -= step * g + opts.learning_rate * opts.l2 * *w;
            }
            for (b, g) in model.bias.iter_mut().zip(&grad_b) {
                *b -= step * g;
            }
        }
        model
    }

    fn standardise(&self, x: &[f32]) -> Vec<f32> {
        x.chunks_exact(self.dims)
            .flat_map(|row| {
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.scale)
                    .map(|((v, m), s)| (v - m) * s)
            })
            .collect()
    }

    /// Probabilities `(n, classes)` for pooled features `x`.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let xs = self.standardise(x);
        xs.chunks_exact(self.dims)
            .flat_map(|row| {
                (0..self.classes).map(move |c| {
                    let w = &self.weights[c * self.dims..(c + 1) * self.dims];
                    sigmoid(self.bias[c] + w.iter().zip(row).map(|(a, b)| a * b).sum::<f32>())
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_data_is_learned() {
        // Class 0 when feature 0 is high, class 1 when feature 1 is high.
        let x = [3.0, 0.0, 2.5, 0.2, 0.1, 3.0, 0.0, 2.7];
        let y = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let model = LogisticBaseline::fit(&x, &y, 2, 2, FitOptions::default());
        let p = model.predict(&x);
        for (pi, yi) in p.iter().zip(&y) {
            assert!((pi - yi).abs() < 0.2, "{p:?}");
        }
    }

    #[test]
    fn pooling_takes_mean_and_max_per_band() {
        let set = FeatureSet {
            x: vec![1.0, 3.0, 0.0, -2.0],
            y: vec![1.0],
            n: 1,
            shape: (2, 2),
            classes: 1,
        };
        assert_eq!(pool(&set), vec![2.0, -1.0, 3.0, 0.0]);
    }
}
