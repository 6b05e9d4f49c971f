//! `selftest.bin`: an input batch and the output the exporter's reference produced for it.
//!
//! Layout (little-endian): magic `WARBLEST`, `u32` version 1, then two tensors (input,
//! expected output), each `u32` rank, `rank × u64` dims, `f32` data. Small, exact, and
//! readable without any serialisation library.

use super::{BundleError, BundleManifest};

const MAGIC: &[u8; 8] = b"WARBLEST";
const VERSION: u32 = 1;
const MAX_RANK: usize = 8;

/// A dense `f32` tensor (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF32 {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

/// Self-test vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfTest {
    /// Model input, batch first.
    pub input: TensorF32,
    /// Expected raw model output (before any activation), batch first.
    pub expected: TensorF32,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BundleError> {
        if self.bytes.len() < n {
            return Err(BundleError::SelfTestSyntax(format!(
                "truncated: needed {n} more bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, BundleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, BundleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn tensor(&mut self, what: &str) -> Result<TensorF32, BundleError> {
        let rank = self.u32()? as usize;
        if rank == 0 || rank > MAX_RANK {
            return Err(BundleError::SelfTestSyntax(format!(
                "{what}: rank {rank} outside 1..={MAX_RANK}"
            )));
        }
        let mut shape = Vec::with_capacity(rank);
        let mut count: usize = 1;
        for _ in 0..rank {
            let d = usize::try_from(self.u64()?).ok();
            count = d
                .and_then(|d| {
                    shape.push(d);
                    count.checked_mul(d)
                })
                .filter(|&c| c.saturating_mul(4) <= self.bytes.len())
                .ok_or_else(|| {
                    BundleError::SelfTestSyntax(format!("{what}: dimensions larger than the file"))
                })?;
        }
        let data = self
            .take(count * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(TensorF32 { shape, data })
    }
}

impl SelfTest {
    /// Serialises to the `selftest.bin` layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(16 + 4 * (self.input.data.len() + self.expected.data.len()) + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        for t in [&self.input, &self.expected] {
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in &t.shape {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            for &v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Parses `selftest.bin`.
    ///
    /// # Errors
    /// [`BundleError::SelfTestSyntax`] saying what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        let mut r = Reader { bytes };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(BundleError::SelfTestSyntax("bad magic".into()));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(BundleError::SelfTestSyntax(format!(
                "version {version}, expected {VERSION}"
            )));
        }
        let input = r.tensor("input")?;
        let expected = r.tensor("expected output")?;
        if !r.bytes.is_empty() {
            return Err(BundleError::SelfTestSyntax(format!(
                "{} trailing bytes",
                r.bytes.len()
            )));
        }
        Ok(Self { input, expected })
    }

    /// Checks that the vectors fit the manifest's input and output shapes (same batch).
    ///
    /// # Errors
    /// [`BundleError::SelfTestSyntax`].
    pub fn check_shapes(&self, manifest: &BundleManifest) -> Result<(), BundleError> {
        let fits = |shape: &[usize], declared: &[i64]| {
            shape.len() == declared.len()
                && shape
                    .iter()
                    .zip(declared)
                    .skip(1)
                    .all(|(&s, &d)| i64::try_from(s) == Ok(d))
        };
        let batch = self.input.shape.first().copied().unwrap_or(0);
        if batch == 0
            || !fits(&self.input.shape, &manifest.input_shape)
            || !fits(&self.expected.shape, &manifest.output_shape)
            || self.expected.shape.first() != Some(&batch)
        {
            return Err(BundleError::SelfTestSyntax(format!(
                "shapes {:?} → {:?} do not match the manifest's {:?} → {:?}",
                self.input.shape, self.expected.shape, manifest.input_shape, manifest.output_shape
            )));
        }
        Ok(())
    }

    /// Compares a model's raw output on [`SelfTest::input`] with the expected output.
    /// Returns the largest absolute difference when within `tolerance`.
    ///
    /// # Errors
    /// [`BundleError::SelfTestFailed`] when a difference exceeds the tolerance, an output is
    /// not finite, or the output has the wrong length.
    pub fn check(&self, actual: &[f32], tolerance: f32) -> Result<f32, BundleError> {
        if actual.len() != self.expected.data.len() {
            return Err(BundleError::SelfTestFailed {
                max_diff: f32::INFINITY,
                tolerance,
                worst_index: actual.len().min(self.expected.data.len()),
            });
        }
        let (worst_index, max_diff) = actual
            .iter()
            .zip(&self.expected.data)
            .map(|(a, e)| {
                let d = (a - e).abs();
                if d.is_finite() { d } else { f32::INFINITY }
            })
            .enumerate()
            .fold(
                (0, 0.0f32),
                |best, (i, d)| {
                    if d > best.1 { (i, d) } else { best }
                },
            );
        if max_diff > tolerance {
            return Err(BundleError::SelfTestFailed {
                max_diff,
                tolerance,
                worst_index,
            });
        }
        Ok(max_diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> SelfTest {
        SelfTest {
            input: TensorF32 {
                shape: vec![2, 3],
                data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            },
            expected: TensorF32 {
                shape: vec![2, 2],
                data: vec![0.5, -0.5, 1.5, -1.5],
            },
        }
    }

    #[test]
    fn encoding_round_trips() {
        let t = vectors();
        assert_eq!(SelfTest::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn damaged_files_are_rejected() {
        let bytes = vectors().encode();
        for cut in [0, 5, 12, 20, bytes.len() - 1] {
            assert!(
                matches!(
                    SelfTest::decode(&bytes[..cut]),
                    Err(BundleError::SelfTestSyntax(_))
                ),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(SelfTest::decode(&long).is_err());
        let mut huge = bytes;
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(SelfTest::decode(&huge).is_err());
    }

    #[test]
    fn check_reports_the_worst_difference() {
        let t = vectors();
        assert_eq!(t.check(&[0.5, -0.5, 1.5, -1.5], 1e-6).unwrap(), 0.0);
        assert!(t.check(&[0.5, -0.5, 1.5, -1.49999], 1e-4).is_ok());
        assert_eq!(
            t.check(&[0.5, -0.4, 1.5, -1.5], 1e-3),
            Err(BundleError::SelfTestFailed {
                max_diff: (-0.4f32 - -0.5f32).abs(),
                tolerance: 1e-3,
                worst_index: 1
            })
        );
        assert!(t.check(&[0.5, f32::NAN, 1.5, -1.5], 1e-3).is_err());
        assert!(t.check(&[0.5], 1e-3).is_err());
    }
}
