//! Optimiser updates, fused into one pass over each parameter and split into
//! parallel chunks (element-wise, so the result depends neither on the split
//! nor on the vector width).

use super::super::{AdamHyper, SgdHyper};
use super::lanes::wide;
use super::parallel::CHUNK;
use crate::scalar::Scalar;
use rayon::prelude::*;

pub fn sgd<T: Scalar>(p: &mut [T], g: &[T], v: &mut [T], h: &SgdHyper) {
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(|((p, g), v)| wide!(sgd_chunk(p, g, v, h)));
}

pub fn adam<T: Scalar>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamHyper) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| wide!(adam_chunk(p, g, m, v, h)));
}

#[inline(always)]
fn sgd_chunk<T: Scalar>(p: &mut [T], g: &[T], v: &mut [T], h: &SgdHyper) {
    let (lr, mu, wd) = (T::from_f64(h.lr), T::from_f64(h.momentum), T::from_f64(h.weight_decay));
    for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
        let d = g + wd * *p;
        let step = if h.momentum == 0.0 {
            d
        } else {
            *v = mu * *v + d;
            if h.nesterov {
                d + mu * *v
            } else {
                *v
            }
        };
        *p -= lr * step;
    }
}

#[inline(always)]
fn adam_chunk<T: Scalar>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamHyper) {
    let (b1, b2) = (h.beta1, h.beta2);
    let c1 = 1.0 - b1.powi(h.step as i32);
    let c2 = 1.0 - b2.powi(h.step as i32);
    let (tb1, tb2, wd) = (T::from_f64(b1), T::from_f64(b2), T::from_f64(h.weight_decay));
    let (one_b1, one_b2) = (T::from_f64(1.0 - b1), T::from_f64(1.0 - b2));
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let d = g + wd * *p;
        *m = tb1 * *m + one_b1 * d;
        *v = tb2 * *v + one_b2 * d * d;
        let mhat = m.to_f64() / c1;
        let vhat = v.to_f64() / c2;
        *p -= T::from_f64(h.lr * mhat / (vhat.sqrt() + h.eps));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The updates, run in parallel chunks in their AVX2 twin, give the bits
    /// of one plain pass over the whole parameter on this thread (an FMA
    /// contracted anywhere, or a chunk's offset lost, would show).
    #[test]
    fn wide_updates_are_one_plain_pass() {
        let mut r = Rng::new(53, 0);
        let len = 3 * CHUNK + 13;
        let mut rand = |scale: f64| (0..len).map(|_| (r.normal() * scale) as f32).collect::<Vec<f32>>();
        let (p0, g, v0, m0) = (rand(1.0), rand(0.1), rand(0.01), rand(0.01));
        let v0: Vec<f32> = v0.iter().map(|v| v * v).collect();
        for nesterov in [false, true] {
            let h = SgdHyper { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov };
            let (mut p, mut v) = (p0.clone(), v0.clone());
            sgd(&mut p, &g, &mut v, &h);
            let (mut q, mut u) = (p0.clone(), v0.clone());
            sgd_chunk(&mut q, &g, &mut u, &h);
            assert!(p == q && v == u, "sgd, nesterov {nesterov}");
        }
        let h = AdamHyper { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, step: 3 };
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        adam(&mut p, &g, &mut m, &mut v, &h);
        let (mut q, mut n, mut u) = (p0.clone(), m0.clone(), v0.clone());
        adam_chunk(&mut q, &g, &mut n, &mut u, &h);
        assert!(p == q && m == n && v == u, "adam");
        assert!(p != p0, "the update moved the parameters");
    }
}
