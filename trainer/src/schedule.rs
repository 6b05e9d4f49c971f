//! Learning-rate schedule: linear warm-up, then cosine decay to zero, stepped per
//! iteration (the paper's recipe: 5 % warm-up).

/// Learning rate at `step` (0-based) of `total` steps, as Hugging Face's
/// `get_cosine_schedule_with_warmup` with ⌈total · warmup_fraction⌉ warm-up steps (the
/// reference's): the warm-up rises linearly from 0 at step 0.
pub fn cosine_with_warmup(base_lr: f64, step: usize, total: usize, warmup_fraction: f64) -> f64 {
    let total = total.max(1);
    let warmup = ((total as f64 * warmup_fraction).ceil() as usize).min(total);
    if step < warmup {
        return base_lr * step as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let lr = |s| cosine_with_warmup(1.0, s, 100, 0.05);
        // 5 warm-up steps from 0: 0, 0.2, …, 0.8, then the cosine from 1.
        assert_eq!(lr(0), 0.0);
        assert!((lr(1) - 0.2).abs() < 1e-12);
        assert!((lr(4) - 0.8).abs() < 1e-12);
        assert!((lr(5) - 1.0).abs() < 1e-12);
        // Half way through the cosine: (1 + cos(π/2)) / 2.
        assert!(
            (lr(5 + 95 / 2) - 0.5 * (1.0 + (std::f64::consts::PI * 47.0 / 95.0).cos())).abs()
                < 1e-12
        );
        // ⌈0.05 · 50⌉ = 3 warm-up steps (rounding 2.5 would give 2).
        assert!((cosine_with_warmup(1.0, 2, 50, 0.05) - 2.0 / 3.0).abs() < 1e-12);
        assert!(lr(50) < lr(20) && lr(20) < lr(5));
        assert!(lr(99) < 0.01 && lr(99) >= 0.0);
        // No warm-up.
        assert!((cosine_with_warmup(1.0, 0, 10, 0.0) - 1.0).abs() < 1e-12);
    }
}
