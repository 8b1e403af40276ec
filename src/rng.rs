//! Counter-based random numbers, the same on the CPU and in WGSL (`shaders/common.wgsl`):
//! a value is a pure function of (seed, step, counter), so dropout masks and augmentations can
//! be recomputed anywhere (any thread, any device, after a resume) without carrying a generator
//! state. The mixer is Chris Wellons' `lowbias32`, chained over the three words.

/// One round of `lowbias32`: a bijective 32-bit mixer with low bias.
pub fn mix32(x: u32) -> u32 {
    let mut h = x;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// A run's 64-bit seed folded to the 32-bit key the kernels take.
pub fn seed32(seed: u64) -> u32 {
    mix32(seed as u32 ^ mix32((seed >> 32) as u32))
}

/// The random word for `counter` in training step `step` of a run keyed by `seed` (a
/// [`seed32`] value, usually mixed with a per-layer stream number).
pub fn random_u32(seed: u32, step: u32, counter: u32) -> u32 {
    mix32(counter ^ mix32(step ^ mix32(seed)))
}

/// A uniform float in [0, 1) with 24 random bits (exact in f32, so the GPU agrees bit for bit).
pub fn random_unit(seed: u32, step: u32, counter: u32) -> f32 {
    (random_u32(seed, step, counter) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform random values in `[lo, hi)`, reproducible from `seed`: inputs for the cross-checks,
/// gradient checks and benchmarks (not the training run's random numbers, which are above).
pub fn random_vec(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_reproducible_and_depend_on_every_word() {
        let base = random_u32(1, 2, 3);
        assert_eq!(base, random_u32(1, 2, 3));
        assert_ne!(base, random_u32(0, 2, 3));
        assert_ne!(base, random_u32(1, 3, 3));
        assert_ne!(base, random_u32(1, 2, 4));
        assert_ne!(seed32(42), seed32(42 + (1 << 32)));
    }

    #[test]
    fn unit_values_are_uniform_enough() {
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = random_unit(seed32(7), 11, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        // Each bucket expects 10,000; 5 standard deviations is about 475.
        for count in buckets {
            assert!(count.abs_diff(n as usize / 10) < 500, "{buckets:?}");
        }
    }
}
