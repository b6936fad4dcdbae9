//! The seeded, counter-based random generator shared by every backend.
//!
//! Element `i` of a random tensor depends only on the seed and `i`, through
//! 32-bit integer hashing that a GPU shader computes the same way. So a seed
//! gives the same tensor whatever the backend, the machine or the order in
//! which elements are computed.

use crate::Distribution;

/// A 32-bit integer hash with good avalanche (Wellons' "lowbias32").
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The `counter`-th 32-bit random word of the stream `seed`.
pub fn word(seed: u64, counter: u32) -> u32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    hash32(hash32(hash32(counter ^ 0x9e37_79b9).wrapping_add(lo)) ^ hi)
}

/// A uniform sample in [0, 1) with 24 random bits.
pub fn unit(seed: u64, counter: u32) -> f32 {
    (word(seed, counter) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Element `i` of a random tensor with distribution `dist` and seed `seed`.
///
/// Uniform uses counter `2i`; normal uses Box–Muller on counters `2i` and `2i + 1`.
pub fn sample(dist: Distribution, seed: u64, i: u32) -> f32 {
    let c = i.wrapping_mul(2);
    match dist {
        Distribution::Uniform { low, high } => low + (high - low) * unit(seed, c),
        Distribution::Normal { mean, std } => {
            // u1 in (0, 1] so that ln(u1) is finite.
            let u1 = 1.0 - unit(seed, c);
            let u2 = unit(seed, c.wrapping_add(1));
            let r = (-2.0 * u1.ln()).sqrt();
            mean + std * r * (std::f32::consts::TAU * u2).cos()
        }
    }
}

/// Seed `seed` mixed with `stream` (SplitMix64's finalizer): distinct streams
/// of one seed give unrelated seeds. The host mixes a dropout seed with the
/// training step this way, so each step draws its own mask.
pub fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed.wrapping_add(stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_have_the_requested_moments() {
        let n = 20_000u32;
        let normal = Distribution::Normal {
            mean: 2.0,
            std: 3.0,
        };
        let xs: Vec<f32> = (0..n).map(|i| sample(normal, 42, i)).collect();
        let mean = xs.iter().sum::<f32>() / n as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n as f32;
        assert!((mean - 2.0).abs() < 0.1, "mean {mean}");
        assert!((var.sqrt() - 3.0).abs() < 0.1, "std {}", var.sqrt());

        let uniform = Distribution::Uniform {
            low: -1.0,
            high: 1.0,
        };
        let us: Vec<f32> = (0..n).map(|i| sample(uniform, 7, i)).collect();
        assert!(us.iter().all(|&u| (-1.0..1.0).contains(&u)));
        let m = us.iter().sum::<f32>() / n as f32;
        assert!(m.abs() < 0.03, "uniform mean {m}");
    }

    #[test]
    fn seeds_give_different_streams() {
        let a: Vec<u32> = (0..8).map(|i| word(1, i)).collect();
        let b: Vec<u32> = (0..8).map(|i| word(2, i)).collect();
        let c: Vec<u32> = (0..8).map(|i| word(1 << 32, i)).collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, (0..8).map(|i| word(1, i)).collect::<Vec<_>>());
    }
}
