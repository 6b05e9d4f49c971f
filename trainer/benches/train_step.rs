//! ConvNeXt training-step speed on the CPU backend (flex): batch 16 of (1, 128, 501) —
//! a 5-s birdset window — forward + backward + AdamW step, and forward alone, for the
//! `micro` model (≈ 0.4 M parameters); and an adversarial training step (output space,
//! PGD-L∞ with 2 steps, loss mixed 50/50 with the clean loss) on the same batch, so the
//! two are measured side by side.
//! Run: `cargo bench -p warble-trainer --bench train_step`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use warble_trainer::attack::{AttackConfig, Norm, Objective, attack};
use warble_trainer::loss::{AslConfig, LossKind, asymmetric_loss};
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};

fn step(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    device.seed(1);
    let cfg = ConvNextConfig::preset(ConvNextSize::Micro, 25);
    let mut model = cfg.init(&device);
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).init();
    let x = Tensor::<4>::random(
        [16, 1, 128, 501],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let y = Tensor::<2>::zeros([16, 25], &device);
    let mut group = c.benchmark_group("convnext_micro_b16_128x501");
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let loss = asymmetric_loss(model.forward(x.clone()), y.clone(), &AslConfig::default());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-4, model.clone(), grads);
        })
    });
    group.bench_function("train_step_adversarial_pgd2", |b| {
        let objective = Objective::Loss {
            loss: LossKind::Asl(AslConfig::default()),
            targets: y.clone().inner(),
        };
        let cfg = AttackConfig::pgd(Norm::Linf, 0.1, 2);
        b.iter(|| {
            let adv = attack(&model.valid(), &x.clone().inner(), &objective, &cfg)
                .unwrap()
                .adversarial;
            let asl = AslConfig::default();
            let loss = asymmetric_loss(model.forward(x.clone()), y.clone(), &asl).mul_scalar(0.5)
                + asymmetric_loss(model.forward(adv.autodiff()), y.clone(), &asl).mul_scalar(0.5);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-4, model.clone(), grads);
        })
    });
    let eval = model.valid();
    let xi = x.clone().inner();
    group.bench_function("forward", |b| {
        b.iter(|| eval.forward(xi.clone()).into_data())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = step
}
criterion_main!(benches);
