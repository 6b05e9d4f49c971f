//! AudioProtoPNet (Heinrich et al.): an interpretable classifier that compares every
//! position of a ConvNeXt feature map with learned prototypes.
//!
//! Backbone feature map (before the final LayerNorm) → bilinear ×2 upsampling (half-pixel
//! mapping, as PyTorch's default) → cosine similarity with K prototypes per class, divided
//! by 1.01 → ReLU → maximum over positions → a last layer in which each class sees only
//! its own K prototypes, with non-negative weights (init 1.0, bias −2.0). Training adds an
//! orthogonality penalty that keeps a class's prototypes apart.

use burn::module::{Param, ParamId};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::convnext::{ConvNext, ConvNextConfig};

/// AudioProtoPNet hyper-parameters.
#[derive(Config, Debug, PartialEq)]
pub struct ProtoPNetConfig {
    /// The backbone (its `num_classes` is unused by this model).
    pub backbone: ConvNextConfig,
    /// Prototypes per class (the paper: 5).
    #[config(default = 5)]
    pub prototypes_per_class: usize,
    /// Cosine similarities are divided by this (the reference code's 1.01).
    #[config(default = 1.01)]
    pub similarity_scale: f64,
    /// Initial last-layer weight.
    #[config(default = 1.0)]
    pub last_weight_init: f64,
    /// Initial last-layer bias.
    #[config(default = -2.0)]
    pub last_bias_init: f64,
}

impl ProtoPNetConfig {
    /// Builds the model; prototypes are drawn from U[0, 1) as in the paper.
    pub fn init(&self, device: &Device) -> AudioProtoPNet {
        let classes = self.backbone.num_classes;
        let channels = *self.backbone.dims.last().unwrap_or(&1);
        let k = self.prototypes_per_class;
        let prototypes = Tensor::random(
            [classes * k, channels],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            device,
        );
        AudioProtoPNet {
            backbone: self.backbone.init(device),
            prototypes: Param::from_tensor(prototypes),
            last_weight: Param::from_tensor(Tensor::full(
                [classes, k],
                self.last_weight_init,
                device,
            )),
            last_bias: Param::from_tensor(Tensor::full([classes], self.last_bias_init, device)),
            similarity_scale: self.similarity_scale,
            prototypes_per_class: k,
        }
    }
}

/// What the model computes for a batch, for classification and interpretation.
#[derive(Debug, Clone)]
pub struct ProtoOutput {
    /// `[batch, classes]`.
    pub logits: Tensor<2>,
    /// Each prototype's maximum similarity: `[batch, classes · K]` (class-major).
    pub activations: Tensor<2>,
    /// Similarity maps after ReLU: `[batch, classes · K, positions]`, positions row-major
    /// over the upsampled feature map of [`ProtoOutput::map_shape`].
    pub similarity: Tensor<3>,
    /// `(height, width)` of the upsampled feature map.
    pub map_shape: (usize, usize),
}

/// The model.
#[derive(Module, Debug)]
pub struct AudioProtoPNet {
    backbone: ConvNext,
    prototypes: Param<Tensor<2>>,
    last_weight: Param<Tensor<2>>,
    last_bias: Param<Tensor<1>>,
    similarity_scale: f64,
    prototypes_per_class: usize,
}

/// Rows scaled to unit L2 norm along `dim`.
fn normalise<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(dim)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

impl AudioProtoPNet {
    /// The backbone (for freezing, or for embedding-space attacks).
    pub fn backbone(&self) -> &ConvNext {
        &self.backbone
    }

    /// The model with another backbone, e.g. a pretrained (and frozen) ConvNeXt.
    pub fn with_backbone(self, backbone: ConvNext) -> Self {
        Self { backbone, ..self }
    }

    /// The prototypes' parameter, for their own optimiser.
    pub fn prototype_params(&self) -> Vec<ParamId> {
        vec![self.prototypes.id]
    }

    /// The last layer's parameters (weights and bias), for their own optimiser.
    pub fn last_layer_params(&self) -> Vec<ParamId> {
        vec![self.last_weight.id, self.last_bias.id]
    }

    /// Unit-norm prototypes, `[classes · K, channels]` (class-major), as compared with the
    /// feature map.
    pub fn unit_prototypes(&self) -> Tensor<2> {
        normalise(self.prototypes.val(), 1)
    }

    /// The effective (non-negative) last-layer weights, `[classes, K]`.
    pub fn class_weights(&self) -> Tensor<2> {
        relu(self.last_weight.val())
    }

    /// The last-layer bias, `[classes]`.
    pub fn class_bias(&self) -> Tensor<1> {
        self.last_bias.val()
    }

    /// Cosine similarities are divided by this.
    pub fn similarity_scale(&self) -> f64 {
        self.similarity_scale
    }

    /// Prototypes per class.
    pub fn prototypes_per_class(&self) -> usize {
        self.prototypes_per_class
    }

    /// The upsampled feature map that prototypes are compared with.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, channels, 2·h, 2·w]`
    pub fn feature_map(&self, x: Tensor<4>) -> Tensor<4> {
        let f = self.backbone.features(x);
        interpolate(
            f,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_scale_factor([2.0, 2.0]),
        )
    }

    /// Logits, prototype activations and similarity maps.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → see [`ProtoOutput`]
    pub fn forward_detail(&self, x: Tensor<4>) -> ProtoOutput {
        let f = self.feature_map(x);
        let [b, c, h, w] = f.dims();
        let f = normalise(f.reshape([b, c, h * w]), 1); // [b, c, n]
        let p = self.unit_prototypes(); // [P, c]
        let n_protos = p.dims()[0];
        let sim = p.unsqueeze::<3>().expand([b, n_protos, c]).matmul(f); // [b, P, n]
        let similarity = relu(sim.div_scalar(self.similarity_scale));
        let activations = similarity.clone().max_dim(2).reshape([b, n_protos]);
        let k = self.prototypes_per_class;
        let classes = n_protos / k;
        let weights = self.class_weights().reshape([1, classes, k]);
        let logits = (activations.clone().reshape([b, classes, k]) * weights)
            .sum_dim(2)
            .reshape([b, classes])
            + self.last_bias.val().reshape([1, classes]);
        ProtoOutput {
            logits,
            activations,
            similarity,
            map_shape: (h, w),
        }
    }

    /// Logits only.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_detail(x).logits
    }

    /// Where each prototype is most active: flat position index into the upsampled map.
    ///
    /// # Shapes
    /// `ProtoOutput::similarity` `[batch, P, n]` → `[batch, P]`
    pub fn argmax_positions(output: &ProtoOutput) -> Tensor<2, Int> {
        let [b, p, _] = output.similarity.dims();
        output.similarity.clone().argmax(2).reshape([b, p])
    }

    /// Orthogonality penalty as the reference computes it
    /// (`calculate_orthogonality_loss`): one Frobenius norm over every class's
    /// `P̂_c P̂_cᵀ − I` stacked, `√(Σ_c ‖P̂_c P̂_cᵀ − I‖²_F)`, divided by the element count
    /// C·K·K, with P̂_c the class's unit-norm prototypes. (A sum of per-class norms would
    /// be up to √C times stronger: 5× at 25 classes, ≈ 99× at BirdSet XCL.)
    pub fn orthogonality_loss(&self) -> Tensor<1> {
        let p = normalise(self.prototypes.val(), 1);
        let [n, c] = p.dims();
        let k = self.prototypes_per_class;
        let classes = n / k;
        let pc = p.reshape([classes, k, c]);
        let gram = pc.clone().matmul(pc.swap_dims(1, 2)); // [classes, k, k]
        let eye = Tensor::<2>::eye(k, &gram.device()).reshape([1, k, k]);
        (gram - eye)
            .powi_scalar(2)
            .sum()
            .sqrt()
            .div_scalar((classes * k * k) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::convnext::ConvNextSize;

    fn model(device: &Device) -> AudioProtoPNet {
        ProtoPNetConfig::new(ConvNextConfig::preset(ConvNextSize::Test, 3)).init(device)
    }

    #[test]
    fn shapes_and_ranges() {
        let device = Device::flex();
        let m = model(&device);
        let x = Tensor::<4>::random(
            [2, 1, 64, 101],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let out = m.forward_detail(x);
        // Test backbone: 64×101 → 2×3 after four stages, ×2 upsampled → 4×6.
        assert_eq!(out.map_shape, (4, 6));
        assert_eq!(out.similarity.dims(), [2, 15, 24]);
        assert_eq!(out.activations.dims(), [2, 15]);
        assert_eq!(out.logits.dims(), [2, 3]);
        let acts: Vec<f32> = out.activations.clone().into_data().try_to_vec().unwrap();
        // Cosine / 1.01 after ReLU lies in [0, 1/1.01].
        assert!(
            acts.iter().all(|&a| (0.0..=1.0 / 1.01 + 1e-6).contains(&a)),
            "{acts:?}"
        );
        let pos: Vec<i64> = AudioProtoPNet::argmax_positions(&out)
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        assert!(pos.iter().all(|&p| (0..24).contains(&p)));
    }

    #[test]
    fn each_class_reads_only_its_own_prototypes() {
        // With last weights 1 and bias −2, logit_c = Σ_k act_{c,k} − 2.
        let device = Device::flex();
        let m = model(&device);
        let x = Tensor::<4>::random(
            [1, 1, 64, 101],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let out = m.forward_detail(x);
        let acts: Vec<f32> = out.activations.into_data().try_to_vec().unwrap();
        let logits: Vec<f32> = out.logits.into_data().try_to_vec().unwrap();
        for c in 0..3 {
            let expect: f32 = acts[c * 5..(c + 1) * 5].iter().sum::<f32>() - 2.0;
            assert!(
                (logits[c] - expect).abs() < 1e-5,
                "class {c}: {} vs {expect}",
                logits[c]
            );
        }
    }

    #[test]
    fn orthogonality_is_zero_for_orthonormal_prototypes() {
        let device = Device::flex();
        let mut m = model(&device);
        // 3 classes × 5 prototypes in 64 dims: class c's prototypes are unit vectors
        // e_{5c}, …, e_{5c+4}.
        let protos = Tensor::<2>::eye(64, &device).slice([0..15, 0..64]);
        m.prototypes = Param::from_tensor(protos);
        let loss: f32 = m.orthogonality_loss().into_scalar::<f32>();
        assert!(loss.abs() < 1e-6, "{loss}");
        // Identical prototypes within a class are penalised.
        let same = Tensor::<2>::ones([15, 64], &device);
        m.prototypes = Param::from_tensor(same);
        let loss: f32 = m.orthogonality_loss().into_scalar::<f32>();
        // Each class: Gram = all ones (5×5); minus I leaves 20 ones. One norm over the
        // three classes stacked: √60, over 3·5·5 elements (a sum of per-class norms,
        // 3·√20, would be √3 times more).
        let expect = 60f32.sqrt() / 75.0;
        assert!((loss - expect).abs() < 1e-6, "{loss} vs {expect}");
        // Classes unlike each other: class 0 identical, classes 1 and 2 orthonormal —
        // only class 0's 20 off-diagonal ones count: √20 / 75.
        let mut rows: Vec<f32> = vec![0.0; 15 * 64];
        for r in 0..5 {
            rows[r * 64] = 1.0;
        }
        for r in 5..15 {
            rows[r * 64 + r] = 1.0;
        }
        m.prototypes = Param::from_tensor(Tensor::<2>::from_data(
            burn::tensor::TensorData::new(rows, [15, 64]),
            &device,
        ));
        let loss: f32 = m.orthogonality_loss().into_scalar::<f32>();
        let expect = 20f32.sqrt() / 75.0;
        assert!((loss - expect).abs() < 1e-6, "{loss} vs {expect}");
    }
}
