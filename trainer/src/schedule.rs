//! Learning-rate schedule: linear warm-up, then cosine decay to zero, stepped per
//! iteration (the paper's recipe: 5 % warm-up).

/// Learning rate at `step` (0-based) of `total` steps.
pub fn cosine_with_warmup(base_lr: f64, step: usize, total: usize, warmup_fraction: f64) -> f64 {
    let total = total.max(1);
    let warmup = ((total as f64 * warmup_fraction).round() as usize).min(total);
    if step < warmup {
        return base_lr * (step + 1) as f64 / warmup as f64;
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
        assert!((lr(0) - 0.2).abs() < 1e-12);
        assert!((lr(4) - 1.0).abs() < 1e-12);
        assert!((lr(5) - 1.0).abs() < 1e-12);
        assert!(lr(50) < lr(20) && lr(20) < lr(5));
        assert!(lr(99) < 0.01 && lr(99) >= 0.0);
        // No warm-up.
        assert!((cosine_with_warmup(1.0, 0, 10, 0.0) - 1.0).abs() < 1e-12);
    }
}
