use std::fmt;

use crate::{MAX_DIMS, MAX_ELEMENTS, TensorError};

/// A tensor shape, outermost dimension first. Prints as `[2, 3]`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// Checks rank and element count: at most [`MAX_DIMS`] dimensions and
    /// [`MAX_ELEMENTS`] elements. A rank-0 shape is a scalar with one element.
    #[allow(
        clippy::absurd_extreme_comparisons,
        reason = "on 32-bit targets MAX_ELEMENTS is usize::MAX, and checked_mul is the bound"
    )]
    pub fn new(op: &'static str, dims: Vec<usize>) -> Result<Self, TensorError> {
        if dims.len() > MAX_DIMS {
            return Err(TensorError::too_large(
                op,
                format!(
                    "shape {} has {} dimensions; at most {MAX_DIMS} are supported",
                    Shape(dims.clone()),
                    dims.len()
                ),
            ));
        }
        let mut n: usize = 1;
        for &d in &dims {
            n = n
                .checked_mul(d)
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| {
                    TensorError::too_large(
                        op,
                        format!(
                            "shape {} has more than {MAX_ELEMENTS} elements",
                            Shape(dims.clone())
                        ),
                    )
                })?;
        }
        Ok(Shape(dims))
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Product of the dimensions (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// Views the shape as [outer, dims[axis], inner] around `axis`.
    pub(crate) fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.0[..axis].iter().product();
        let inner = self.0[axis + 1..].iter().product();
        (outer, self.0[axis], inner)
    }

    /// Dimensions as u32 (always fits: element counts are capped at u32::MAX).
    pub fn to_u32(&self) -> Vec<u32> {
        self.0.iter().map(|&d| d as u32).collect()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// NumPy broadcasting: the output shape, and both input shapes padded with
/// leading 1s to its rank. `None` when a pair of dimensions is incompatible.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Option<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(a), pad(b));
    let mut out = Vec::with_capacity(rank);
    for (&x, &y) in pa.iter().zip(&pb) {
        out.push(match (x, y) {
            _ if x == y => x,
            (1, _) => y,
            (_, 1) => x,
            _ => return None,
        });
    }
    Some((out, pa, pb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast(&[4, 3], &[3]),
            Some((vec![4, 3], vec![4, 3], vec![1, 3]))
        );
        assert_eq!(
            broadcast(&[4, 1], &[1, 5]),
            Some((vec![4, 5], vec![4, 1], vec![1, 5]))
        );
        assert_eq!(broadcast(&[0, 3], &[1, 3]).unwrap().0, vec![0, 3]);
        assert_eq!(broadcast(&[2, 3], &[2]), None);
        assert_eq!(broadcast(&[], &[2, 2]).unwrap().0, vec![2, 2]);
    }

    #[test]
    fn shape_limits() {
        assert!(Shape::new("t", vec![1; 9]).is_err());
        assert!(Shape::new("t", vec![1 << 20, 1 << 20]).is_err());
        assert_eq!(Shape::new("t", vec![]).unwrap().numel(), 1);
        assert_eq!(Shape::new("t", vec![2, 0, 3]).unwrap().numel(), 0);
        assert_eq!(Shape::new("t", vec![2, 3]).unwrap().to_string(), "[2, 3]");
    }
}
