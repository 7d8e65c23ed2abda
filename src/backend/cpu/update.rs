//! Optimiser updates, fused into one pass over each parameter and split into
//! parallel chunks (element-wise, so the result does not depend on the split).

use super::super::{AdamHyper, SgdHyper};
use super::parallel::CHUNK;
use crate::scalar::Scalar;
use rayon::prelude::*;

pub fn sgd<T: Scalar>(p: &mut [T], g: &[T], v: &mut [T], h: &SgdHyper) {
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(|((p, g), v)| sgd_chunk(p, g, v, h));
}

pub fn adam<T: Scalar>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamHyper) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| adam_chunk(p, g, m, v, h));
}

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
