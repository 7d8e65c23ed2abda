//! Counter-based random numbers.
//!
//! Every random draw in kappa is a pure function of (seed, stream, index), so a
//! CUDA kernel can reproduce the CPU's numbers exactly (dropout masks, sampled
//! labels) and a resumed run continues the same sequence.

/// SplitMix64's finaliser: a strong 64-bit mixing function.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `index`-th 64-bit draw of stream `stream` under `seed`.
#[inline]
pub fn hash3(seed: u64, stream: u64, index: u64) -> u64 {
    mix64(mix64(seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15))) ^ index)
}

/// A uniform in [0, 1) with 53 random bits.
#[inline]
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A sequential generator over one counter stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    seed: u64,
    stream: u64,
    counter: u64,
}

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng { seed, stream, counter: 0 }
    }

    /// A generator for a named purpose, independent of every other name.
    pub fn named(seed: u64, purpose: &str) -> Self {
        let stream = purpose.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Rng::new(seed, stream)
    }

    /// Moves on `draws` 64-bit draws, as if they had been taken: a copy
    /// moved on to where a part of a sequence starts draws that part's
    /// numbers, so the parts can be drawn side by side.
    pub fn skip(&mut self, draws: u64) {
        self.counter += draws;
    }

    pub fn next_u64(&mut self) -> u64 {
        let v = hash3(self.seed, self.stream, self.counter);
        self.counter += 1;
        v
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Uniform in [lo, hi).
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal by Box–Muller (one of the pair; simple and reproducible).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for our n).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_moments_and_independence_of_names() {
        let mut a = Rng::named(7, "a");
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| a.uniform()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
        let mut b = Rng::named(7, "b");
        assert_ne!(Rng::named(7, "a").next_u64(), b.next_u64());
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(1, 2);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        Rng::new(3, 0).shuffle(&mut v);
        let mut w: Vec<usize> = (0..100).collect();
        Rng::new(3, 0).shuffle(&mut w);
        assert_eq!(v, w);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }
}
