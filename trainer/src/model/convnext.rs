//! ConvNeXt for log-mel spectrograms (Liu et al. 2022), as in the paper: a 1-channel
//! patchify stem, stages of blocks (depthwise 7×7 → LayerNorm → pointwise ×4 → GELU →
//! pointwise, layer scale, residual), downsampling between stages, and a head of global
//! average pooling → LayerNorm → Linear.
//!
//! Written with the ONNX export in mind: every operation maps onto a standard ONNX node
//! (Conv with `group`, Transpose, LayerNormalization, MatMul/Add, Gelu/Erf, Mul,
//! ReduceMean), and parameters keep the layout those nodes expect.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Gelu, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Size presets: timm's small ConvNeXt variants for CPUs, and the paper's Base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvNextSize {
    /// depths 1,1,1,1; dims 8,16,32,64 (≈ 60 k parameters): for tests only.
    Test,
    /// depths 2,2,2,2; dims 16,32,64,128 (≈ 0.4 M parameters): the CPU presets' model.
    Micro,
    /// depths 2,2,6,2; dims 40,80,160,320 (≈ 3.4 M parameters).
    Atto,
    /// depths 2,2,6,2; dims 48,96,192,384.
    Femto,
    /// depths 2,2,6,2; dims 64,128,256,512.
    Pico,
    /// depths 2,2,8,2; dims 80,160,320,640.
    Nano,
    /// depths 3,3,9,3; dims 96,192,384,768.
    Tiny,
    /// The paper's model: depths 3,3,27,3; dims 128,256,512,1024.
    Base,
}

impl ConvNextSize {
    /// `(depths, dims)` of the preset.
    pub fn shape(self) -> (Vec<usize>, Vec<usize>) {
        let (d, w): (&[usize], &[usize]) = match self {
            Self::Test => (&[1, 1, 1, 1], &[8, 16, 32, 64]),
            Self::Micro => (&[2, 2, 2, 2], &[16, 32, 64, 128]),
            Self::Atto => (&[2, 2, 6, 2], &[40, 80, 160, 320]),
            Self::Femto => (&[2, 2, 6, 2], &[48, 96, 192, 384]),
            Self::Pico => (&[2, 2, 6, 2], &[64, 128, 256, 512]),
            Self::Nano => (&[2, 2, 8, 2], &[80, 160, 320, 640]),
            Self::Tiny => (&[3, 3, 9, 3], &[96, 192, 384, 768]),
            Self::Base => (&[3, 3, 27, 3], &[128, 256, 512, 1024]),
        };
        (d.to_vec(), w.to_vec())
    }

    /// Parses a preset name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "test" => Self::Test,
            "micro" => Self::Micro,
            "atto" => Self::Atto,
            "femto" => Self::Femto,
            "pico" => Self::Pico,
            "nano" => Self::Nano,
            "tiny" => Self::Tiny,
            "base" => Self::Base,
            _ => return None,
        })
    }
}

/// ConvNeXt hyper-parameters.
#[derive(Config, Debug, PartialEq)]
pub struct ConvNextConfig {
    /// Output classes.
    pub num_classes: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Channels per stage.
    pub dims: Vec<usize>,
    /// Initial layer-scale value.
    #[config(default = 1e-6)]
    pub layer_scale_init: f64,
    /// Stem patch size (kernel = stride).
    #[config(default = 4)]
    pub stem_patch: usize,
    /// Depthwise kernel size.
    #[config(default = 7)]
    pub kernel: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
}

impl ConvNextConfig {
    /// A preset size for `num_classes` classes.
    pub fn preset(size: ConvNextSize, num_classes: usize) -> Self {
        let (depths, dims) = size.shape();
        Self::new(num_classes, depths, dims)
    }

    /// Builds the model on `device`, initialised as the reference (timm's and Hugging
    /// Face's ConvNeXt `_init_weights`): every convolution and linear weight from
    /// N(0, 0.02) (timm's `trunc_normal_` cuts at ±2, a hundred σ: the same), every bias
    /// 0, LayerNorms at weight 1 and bias 0, layer scale at `layer_scale_init`.
    pub fn init(&self, device: &Device) -> ConvNext {
        let dims = &self.dims;
        let norm = |d: usize| {
            LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        let stem = conv(
            Conv2dConfig::new([1, dims[0]], [self.stem_patch; 2]).with_stride([self.stem_patch; 2]),
            device,
        );
        let mut stages = Vec::with_capacity(dims.len());
        for (i, (&depth, &dim)) in self.depths.iter().zip(dims).enumerate() {
            let downsample = (i > 0).then(|| Downsample {
                norm: norm(dims[i - 1]),
                conv: conv(
                    Conv2dConfig::new([dims[i - 1], dim], [2, 2]).with_stride([2, 2]),
                    device,
                ),
            });
            let blocks = (0..depth).map(|_| self.block(dim, device)).collect();
            stages.push(Stage { downsample, blocks });
        }
        let last = *dims.last().unwrap_or(&1);
        ConvNext {
            stem,
            stem_norm: norm(dims[0]),
            stages,
            head_norm: norm(last),
            head: linear(LinearConfig::new(last, self.num_classes), device),
        }
    }

    fn block(&self, dim: usize, device: &Device) -> Block {
        let pad = self.kernel / 2;
        Block {
            dwconv: conv(
                Conv2dConfig::new([dim, dim], [self.kernel; 2])
                    .with_groups(dim)
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad)),
                device,
            ),
            norm: LayerNormConfig::new(dim)
                .with_epsilon(self.norm_eps)
                .init(device),
            pw1: linear(LinearConfig::new(dim, 4 * dim), device),
            act: Gelu::new(),
            pw2: linear(LinearConfig::new(4 * dim, dim), device),
            gamma: Param::from_tensor(Tensor::full([dim], self.layer_scale_init, device)),
        }
    }
}

/// The reference's weight initialisation (see [`ConvNextConfig::init`]).
const REFERENCE_INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

/// A convolution initialised as the reference: weights N(0, 0.02), bias 0.
fn conv(config: Conv2dConfig, device: &Device) -> Conv2d {
    let mut c = config.with_initializer(REFERENCE_INIT).init(device);
    c.bias = c.bias.map(|b| Param::from_tensor(b.val().zeros_like()));
    c
}

/// A linear layer initialised as the reference: weights N(0, 0.02), bias 0.
fn linear(config: LinearConfig, device: &Device) -> Linear {
    let mut l = config.with_initializer(REFERENCE_INIT).init(device);
    l.bias = l.bias.map(|b| Param::from_tensor(b.val().zeros_like()));
    l
}

/// LayerNorm over channels of an NCHW tensor (ConvNeXt's "channels_first" LayerNorm).
fn norm_channels_first(norm: &LayerNorm, x: Tensor<4>) -> Tensor<4> {
    norm.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
}

/// One ConvNeXt block.
#[derive(Module, Debug)]
pub struct Block {
    /// Depthwise k×k convolution.
    pub dwconv: Conv2d,
    /// LayerNorm over channels (applied channels-last).
    pub norm: LayerNorm,
    /// Pointwise expansion to 4× channels (channels-last Linear).
    pub pw1: Linear,
    /// Exact (erf) GELU.
    pub act: Gelu,
    /// Pointwise projection back.
    pub pw2: Linear,
    /// Layer scale, one value per channel.
    pub gamma: Param<Tensor<1>>,
}

impl Block {
    /// # Shapes
    /// `[batch, dim, h, w]` → `[batch, dim, h, w]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let residual = x.clone();
        let y = self.dwconv.forward(x).permute([0, 2, 3, 1]); // [b, h, w, c]
        let y = self
            .pw2
            .forward(self.act.forward(self.pw1.forward(self.norm.forward(y))));
        let [c] = self.gamma.dims();
        let y = y * self.gamma.val().reshape([1, 1, 1, c]);
        residual + y.permute([0, 3, 1, 2])
    }
}

/// LayerNorm + 2×2 stride-2 convolution between stages.
#[derive(Module, Debug)]
pub struct Downsample {
    /// LayerNorm over channels (channels-first).
    pub norm: LayerNorm,
    /// 2×2 stride-2 convolution.
    pub conv: Conv2d,
}

/// A stage: optional downsampling, then blocks.
#[derive(Module, Debug)]
pub struct Stage {
    /// Downsampling before the blocks (absent in the first stage).
    pub downsample: Option<Downsample>,
    /// The blocks.
    pub blocks: Vec<Block>,
}

/// The ConvNeXt classifier.
///
/// Fields are public so that the exporter can write the same weights into an ONNX graph.
#[derive(Module, Debug)]
pub struct ConvNext {
    /// Patchify stem (kernel = stride).
    pub stem: Conv2d,
    /// LayerNorm after the stem (channels-first).
    pub stem_norm: LayerNorm,
    /// The stages.
    pub stages: Vec<Stage>,
    /// LayerNorm on the pooled embedding.
    pub head_norm: LayerNorm,
    /// Classifier.
    pub head: Linear,
}

impl ConvNext {
    /// The last stage's feature map, before the final LayerNorm (AudioProtoPNet's input).
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, dims.last, n_mels / 32, frames / 32]`
    /// (for four stages; each stage after the first halves both axes).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = norm_channels_first(&self.stem_norm, self.stem.forward(x));
        for stage in &self.stages {
            if let Some(down) = &stage.downsample {
                x = down.conv.forward(norm_channels_first(&down.norm, x));
            }
            for block in &stage.blocks {
                x = block.forward(x);
            }
        }
        x
    }

    /// The pooled, normalised embedding that the classifier head reads.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, dims.last]`
    pub fn embedding(&self, x: Tensor<4>) -> Tensor<2> {
        let f = self.features(x);
        let [b, c, _, _] = f.dims();
        let pooled = f.mean_dim(3).mean_dim(2).reshape([b, c]);
        self.head_norm.forward(pooled)
    }

    /// Logits.
    ///
    /// # Shapes
    /// `[batch, 1, n_mels, frames]` → `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.embedding(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_flow_through_the_stages() {
        let device = Device::flex();
        let model = ConvNextConfig::preset(ConvNextSize::Test, 5).init(&device);
        let x = Tensor::<4>::zeros([2, 1, 64, 101], &device);
        assert_eq!(model.features(x.clone()).dims(), [2, 64, 2, 3]);
        assert_eq!(model.embedding(x.clone()).dims(), [2, 64]);
        assert_eq!(model.forward(x).dims(), [2, 5]);
    }

    #[test]
    fn weights_start_as_the_reference_initialises_them() {
        let device = Device::flex();
        let m = ConvNextConfig::preset(ConvNextSize::Micro, 25).init(&device);
        let values = |t: Tensor<2>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
        // The largest weight matrices: their sample moments are N(0, 0.02)'s.
        let w: Vec<f32> = m
            .stages
            .iter()
            .flat_map(|s| &s.blocks)
            .flat_map(|b| {
                values(b.pw1.weight.val())
                    .into_iter()
                    .chain(values(b.pw2.weight.val()))
            })
            .collect();
        let n = w.len() as f64;
        let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let sd = (w
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!(n > 100_000.0, "{n}");
        assert!(mean.abs() < 1e-3, "{mean}");
        assert!((sd - 0.02).abs() < 5e-4, "{sd}");
        // Every bias starts at 0.
        let zero = |b: &Option<Param<Tensor<1>>>| {
            let v: Vec<f32> = b.as_ref().unwrap().val().into_data().try_to_vec().unwrap();
            v.iter().all(|&x| x == 0.0)
        };
        assert!(zero(&m.stem.bias) && zero(&m.head.bias));
        for b in m.stages.iter().flat_map(|s| &s.blocks) {
            assert!(zero(&b.dwconv.bias) && zero(&b.pw1.bias) && zero(&b.pw2.bias));
        }
    }

    #[test]
    fn micro_is_the_small_cpu_model() {
        let device = Device::flex();
        let n = ConvNextConfig::preset(ConvNextSize::Micro, 10)
            .init(&device)
            .num_params();
        assert!((380_000..430_000).contains(&n), "{n}");
    }

    #[test]
    fn base_has_the_papers_size() {
        // ConvNeXt-Base with a 1-channel stem and 10 classes: ~87.6 M parameters.
        let device = Device::flex();
        let n = ConvNextConfig::preset(ConvNextSize::Base, 10)
            .init(&device)
            .num_params();
        assert!((87_000_000..88_500_000).contains(&n), "{n}");
    }
}
