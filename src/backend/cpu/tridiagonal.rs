//! Eigenvalues of a symmetric tridiagonal matrix by the root-free implicit
//! QL iteration of Pal, Walker and Kahan (Parlett, *The Symmetric Eigenvalue
//! Problem*, §8.15; LAPACK's `dsterf`).
//!
//! Why not faer's tridiagonal QR: with no eigenvectors to accumulate, its
//! cost is one Givens rotation (a square root) per off-diagonal per sweep
//! plus a full deflation scan with a `hypot` per entry every sweep. The
//! root-free form works on the squared off-diagonals and needs three
//! independent divisions per step and one square root per sweep (the
//! shift), and it deflates from the top while searching for a split only up
//! to the first small entry.

/// The iteration exceeded 30 sweeps per eigenvalue (LAPACK's cap).
#[derive(Debug)]
pub struct NoConvergence;

/// Replaces `d` (the diagonal) by the eigenvalues, unordered; `e` is the
/// off-diagonal, `e.len() + 1 == d.len()`.
pub fn eigenvalues(d: &mut [f64], e: &[f64]) -> Result<(), NoConvergence> {
    let mut q = Deflation::new(d, e);
    while let Some((l, m)) = q.next_block(d)? {
        ql_sweep(&mut d[l..=m], &mut q.e2[l..m]);
    }
    Ok(())
}

/// Problems [`eigenvalues_lanes`] iterates side by side: one AVX2 register of f64.
pub const LANES: usize = 4;

/// [`eigenvalues`] of up to [`LANES`] matrices at once, each result bit for
/// bit its own.
///
/// Why: a sweep is one chain of dependent divisions (a step's critical path
/// is a division, a subtraction and two products, and it has three
/// divisions), so one alone leaves the core waiting on their latency. With
/// AVX2 each matrix is a lane of [`avx2::Chases`]: every lane takes its own
/// next step in the same iteration, their like operations one vector
/// instruction, so the chains overlap and the divider takes four quotients
/// at a time. A lane whose sweep ends deflates and starts its next sweep at
/// once, so the lanes never wait for each other. Without AVX2, or for one
/// matrix alone (three idle lanes are no faster), the matrices are solved
/// one after the other.
pub fn eigenvalues_lanes(problems: Vec<(&mut [f64], &[f64])>) -> Vec<Result<(), NoConvergence>> {
    assert!(problems.len() <= LANES, "{} problems for {LANES} lanes", problems.len());
    #[cfg(target_arch = "x86_64")]
    if problems.len() > 1 && super::lanes::avx2_fma() {
        // SAFETY: both features were just detected.
        return unsafe { avx2::eigenvalues(problems) };
    }
    problems.into_iter().map(|(d, e)| eigenvalues(d, e)).collect()
}

/// The iteration's state between sweeps: the squared off-diagonals and the
/// first row not yet deflated.
struct Deflation {
    /// The squares of the off-diagonals: all the iteration ever needs.
    e2: Vec<f64>,
    l: usize,
    sweeps: usize,
}

impl Deflation {
    fn new(d: &[f64], e: &[f64]) -> Self {
        debug_assert_eq!(e.len() + 1, d.len().max(1));
        // One slot past the last off-diagonal, never read: the lanes' first
        // steps write there (see `avx2::eigenvalues`).
        Deflation { e2: e.iter().map(|v| v * v).chain([0.0]).collect(), l: 0, sweeps: 0 }
    }

    /// Deflates from the top until an unreduced block of three or more rows
    /// needs a sweep, and returns its first and last row; `None` when all
    /// of `d` holds eigenvalues.
    fn next_block(&mut self, d: &mut [f64]) -> Result<Option<(usize, usize)>, NoConvergence> {
        let (n, e2) = (d.len(), &mut self.e2);
        // Relative precision (half an ulp), squared to compare with e².
        let eps2 = (f64::EPSILON / 2.0).powi(2);
        while self.l < n {
            let l = self.l;
            // The unreduced block starting at l ends at the first negligible
            // off-diagonal: small against its diagonal neighbours (the test that
            // keeps small eigenvalues' relative accuracy), or underflowing.
            let mut m = l;
            while m + 1 < n && !(e2[m] <= eps2 * (d[m] * d[m + 1]).abs() || e2[m] < f64::MIN_POSITIVE) {
                m += 1;
            }
            if m + 1 < n {
                e2[m] = 0.0;
            }
            match m - l {
                0 => self.l += 1,
                1 => {
                    (d[l], d[l + 1]) = two_by_two(d[l], e2[l], d[l + 1]);
                    e2[l] = 0.0;
                    self.l += 2;
                }
                _ => {
                    self.sweeps += 1;
                    if self.sweeps > 30 * n {
                        return Err(NoConvergence);
                    }
                    return Ok(Some((l, m)));
                }
            }
        }
        Ok(None)
    }
}

/// Eigenvalues of `[[a, b], [b, c]]` given `b²`. The larger-magnitude one
/// from the sum (no cancellation), the other from the determinant.
fn two_by_two(a: f64, b2: f64, c: f64) -> (f64, f64) {
    let (sum, diff) = (a + c, a - c);
    let root = (diff * diff + 4.0 * b2).sqrt();
    if sum == 0.0 {
        return (0.5 * root, -0.5 * root);
    }
    let big = 0.5 * (sum + root.copysign(sum));
    (big, (a * c - b2) / big)
}

/// One implicit QL sweep with Wilkinson's shift over an unreduced block
/// (`d.len() ≥ 3`, every `e2` positive), driving `e2[0]` towards zero.
fn ql_sweep(d: &mut [f64], e2: &mut [f64]) {
    let mut chase = Chase::new(d, e2);
    for i in (0..e2.len()).rev() {
        chase.step(d, e2, i);
    }
    chase.finish(d, e2);
}

/// The smallest c for which a step goes through u = γ/c: √MIN_POSITIVE.
const SMALL_C: f64 = 1.4916681462400413e-154;

/// The bulge chase of one sweep, up from the bottom. With c, s the cosine
/// and sine squared of each rotation and γ the rotated diagonal entry minus
/// the shift, p = γ²/c stands for the squared pre-image of the next entry.
#[derive(Clone, Copy)]
struct Chase {
    shift: f64,
    c: f64,
    s: f64,
    gamma: f64,
    p: f64,
}

impl Chase {
    /// A lane with no sweep (see `avx2::eigenvalues`).
    #[cfg(target_arch = "x86_64")]
    const IDLE: Chase = Chase { shift: 0.0, c: 1.0, s: 0.0, gamma: 0.0, p: 1.0 };

    #[inline(always)]
    fn new(d: &[f64], e2: &[f64]) -> Self {
        // Wilkinson's shift: the eigenvalue of the top 2×2 nearer d[0].
        let off = e2[0].sqrt();
        let t = (d[1] - d[0]) / (2.0 * off);
        let r = t.hypot(1.0);
        let shift = d[0] - off / (t + r.copysign(t));
        let gamma = d[e2.len()] - shift;
        Chase { shift, c: 1.0, s: 0.0, gamma, p: gamma * gamma }
    }

    /// The rotation in the plane of rows `i` and `i + 1`.
    #[inline(always)]
    fn step(&mut self, d: &mut [f64], e2: &mut [f64], i: usize) {
        let bb = e2[i];
        let r = self.p + bb;
        if i + 1 != e2.len() {
            e2[i + 1] = self.s * r;
        }
        let old_c = self.c;
        (self.c, self.s) = (self.p / r, bb / r);
        let old_gamma = self.gamma;
        let alpha = d[i];
        // Why through u = γ/c = (α − σ) − b²·γ_old/p: its quotient waits for
        // p alone, not for r = p + b² and then c, and the next pre-image
        // γ²/c = c·u² follows it by two products. The step's critical path
        // (p to the next p) is one division, a subtraction and two products,
        // where γ = c(α − σ) − sγ_old waited for r's addition, c's division,
        // a product and a subtraction, and γ²·(1/c) for two products more.
        // For c below √MIN_POSITIVE the quotient b²/p ≤ 1/c could overflow:
        // the textbook form then (c = 0 only when γ was 0, and the next
        // pre-image is e²·c_old).
        if self.c >= SMALL_C {
            let u = (alpha - self.shift) - bb * old_gamma / self.p;
            self.gamma = self.c * u;
            self.p = self.c * (u * u);
        } else {
            (self.gamma, self.p) = textbook(self, alpha, old_gamma, old_c, bb);
        }
        d[i + 1] = old_gamma + (alpha - self.gamma);
    }

    #[inline(always)]
    fn finish(self, d: &mut [f64], e2: &mut [f64]) {
        e2[0] = self.s * self.p;
        d[0] = self.shift + self.gamma;
    }
}

/// A step's γ and next pre-image in the textbook form, given the new c and
/// s in `chase`: γ = c(α − σ) − sγ_old, then γ²/c (e²·c_old when c = 0, only
/// when γ was 0).
#[inline(always)]
fn textbook(chase: &Chase, alpha: f64, old_gamma: f64, old_c: f64, bb: f64) -> (f64, f64) {
    let gamma = chase.c * (alpha - chase.shift) - chase.s * old_gamma;
    (gamma, if chase.c != 0.0 { gamma * gamma / chase.c } else { old_c * bb })
}

/// The AVX2 lanes of [`eigenvalues_lanes`].
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{textbook, Chase, Deflation, NoConvergence, LANES, SMALL_C};
    use std::arch::x86_64::*;

    /// One matrix in a lane: its deflation state and its sweep under way.
    struct Lane<'a> {
        d: &'a mut [f64],
        q: Deflation,
        sweep: Option<Sweep>,
        outcome: Option<Result<(), NoConvergence>>,
    }

    /// A sweep over the block of rows `l..=l + len` with `left` steps to
    /// go; the next is in the plane of rows `l + left − 1` and `l + left`.
    #[derive(Clone, Copy)]
    struct Sweep {
        l: usize,
        len: usize,
        left: usize,
    }

    /// A lane's place during a run of steps: its block's d and e² from the
    /// block's first row, the row of its next step, and 1 to step down (0
    /// to stand still).
    #[derive(Clone, Copy)]
    struct Cursor {
        e2: *mut f64,
        d: *mut f64,
        i: usize,
        stride: usize,
    }

    /// [`super::eigenvalues_lanes`] with AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn eigenvalues(problems: Vec<(&mut [f64], &[f64])>) -> Vec<Result<(), NoConvergence>> {
        let mut lanes: Vec<Lane> =
            problems.into_iter().map(|(d, e)| Lane { q: Deflation::new(d, e), d, sweep: None, outcome: None }).collect();
        let mut chases = Chases::new();
        loop {
            for (k, lane) in lanes.iter_mut().enumerate() {
                if lane.sweep.is_none() && lane.outcome.is_none() {
                    match lane.q.next_block(lane.d) {
                        Ok(Some((l, m))) => {
                            chases.set(k, Chase::new(&lane.d[l..=m], &lane.q.e2[l..m]));
                            lane.sweep = Some(Sweep { l, len: m - l, left: m - l });
                        }
                        done => lane.outcome = Some(done.map(drop)),
                    }
                }
            }
            if lanes.iter().all(|lane| lane.sweep.is_none()) {
                return lanes.into_iter().map(|lane| lane.outcome.expect("a lane without a sweep has its outcome")).collect();
            }
            // Steps until the first sweep ends: no lane changes hands meanwhile.
            let run = lanes.iter().filter_map(|lane| lane.sweep).map(|s| s.left).min().unwrap_or(0);
            // Each lane's cursor: its block and the row of its next step. An
            // idle lane stands still on a spare block of e² = 0 and α = 1,
            // from which Chase::IDLE goes to a fixed point (c = 1, γ = p = 1).
            let (mut spare_e2, mut spare_d) = ([[0.0; 2]; LANES], [[1.0; 2]; LANES]);
            let mut cursors = [Cursor { e2: std::ptr::null_mut(), d: std::ptr::null_mut(), i: 0, stride: 0 }; LANES];
            for (k, cursor) in cursors.iter_mut().enumerate() {
                *cursor = match lanes.get_mut(k) {
                    Some(Lane { d, q, sweep: Some(Sweep { l, left, .. }), .. }) => {
                        Cursor { e2: q.e2[*l..].as_mut_ptr(), d: d[*l..].as_mut_ptr(), i: *left - 1, stride: 1 }
                    }
                    _ => {
                        chases.set(k, Chase::IDLE);
                        Cursor { e2: spare_e2[k].as_mut_ptr(), d: spare_d[k].as_mut_ptr(), i: 0, stride: 0 }
                    }
                };
            }
            for _ in 0..run {
                // SAFETY: a sweeping lane's row runs down from left − 1 for
                // run ≤ left steps, so it reads rows ≥ 0 and writes rows
                // ≤ len of its block: d has len + 1 rows from l, and e² its
                // len entries and the slot after them (see below). An idle
                // lane reads row 0 and writes row 1 of its spare.
                let at = |c: &Cursor| unsafe { (*c.e2.add(c.i), *c.d.add(c.i)) };
                // Lane by lane into registers: an array written lane by lane
                // and read back as a vector would wait in the store buffer.
                let (lane0, lane1, lane2, lane3) = (at(&cursors[0]), at(&cursors[1]), at(&cursors[2]), at(&cursors[3]));
                let (e_below, d_below) = chases.step([lane0.0, lane1.0, lane2.0, lane3.0], [lane0.1, lane1.1, lane2.1, lane3.1]);
                for (c, (e, d)) in cursors.iter_mut().zip(e_below.into_iter().zip(d_below)) {
                    // A sweep's first step writes e²[len], past its block,
                    // where Chase::step writes nothing; reset when it ends.
                    *c.e2.add(c.i + 1) = e;
                    *c.d.add(c.i + 1) = d;
                    c.i = c.i.wrapping_sub(c.stride);
                }
            }
            for (k, lane) in lanes.iter_mut().enumerate() {
                let Some(Sweep { l, len, left }) = &mut lane.sweep else { continue };
                *left -= run;
                if *left == 0 {
                    let (l, len) = (*l, *len);
                    chases.get(k).finish(&mut lane.d[l..], &mut lane.q.e2[l..]);
                    // Zero, as next_block left it (or the slot past the end).
                    lane.q.e2[l + len] = 0.0;
                    lane.sweep = None;
                }
            }
        }
    }

    /// The [`Chase`]s of [`LANES`] sweeps, field by field in vectors.
    struct Chases {
        shift: __m256d,
        c: __m256d,
        s: __m256d,
        gamma: __m256d,
        p: __m256d,
    }

    impl Chases {
        #[inline(always)]
        unsafe fn new() -> Self {
            let idle = |v: f64| _mm256_set1_pd(v);
            let Chase { shift, c, s, gamma, p } = Chase::IDLE;
            Chases { shift: idle(shift), c: idle(c), s: idle(s), gamma: idle(gamma), p: idle(p) }
        }

        #[inline(always)]
        unsafe fn get(&self, k: usize) -> Chase {
            Chase {
                shift: to_array(self.shift)[k],
                c: to_array(self.c)[k],
                s: to_array(self.s)[k],
                gamma: to_array(self.gamma)[k],
                p: to_array(self.p)[k],
            }
        }

        #[inline(always)]
        unsafe fn set(&mut self, k: usize, chase: Chase) {
            let put = |v: &mut __m256d, x: f64| {
                let mut a = to_array(*v);
                a[k] = x;
                *v = _mm256_loadu_pd(a.as_ptr());
            };
            put(&mut self.shift, chase.shift);
            put(&mut self.c, chase.c);
            put(&mut self.s, chase.s);
            put(&mut self.gamma, chase.gamma);
            put(&mut self.p, chase.p);
        }

        /// [`Chase::step`] in every lane, the same operations in the same
        /// order (none fused), so each lane rounds as a chase alone would;
        /// returns the lanes' e²[i + 1] and d[i + 1].
        #[inline(always)]
        unsafe fn step(&mut self, bb: [f64; LANES], alpha: [f64; LANES]) -> ([f64; LANES], [f64; LANES]) {
            let bbv = _mm256_set_pd(bb[3], bb[2], bb[1], bb[0]);
            let alphav = _mm256_set_pd(alpha[3], alpha[2], alpha[1], alpha[0]);
            let r = _mm256_add_pd(self.p, bbv);
            let e_below = _mm256_mul_pd(self.s, r);
            let (old_c, old_gamma) = (self.c, self.gamma);
            // u's quotient first: it waits for p alone (see Chase::step).
            let q = _mm256_div_pd(_mm256_mul_pd(bbv, old_gamma), self.p);
            self.c = _mm256_div_pd(self.p, r);
            self.s = _mm256_div_pd(bbv, r);
            let u = _mm256_sub_pd(_mm256_sub_pd(alphav, self.shift), q);
            self.gamma = _mm256_mul_pd(self.c, u);
            self.p = _mm256_mul_pd(self.c, _mm256_mul_pd(u, u));
            // Not (c ≥ SMALL_C), so a NaN c takes the textbook form as in Chase::step.
            let small = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_NGE_UQ>(self.c, _mm256_set1_pd(SMALL_C)));
            if small != 0 {
                (self.gamma, self.p) =
                    textbook_lanes(small, [self.shift, self.c, self.s], alpha, [old_gamma, old_c], bb, [self.gamma, self.p]);
            }
            let d_below = _mm256_add_pd(old_gamma, _mm256_sub_pd(alphav, self.gamma));
            (to_array(e_below), to_array(d_below))
        }
    }

    #[inline(always)]
    unsafe fn to_array(v: __m256d) -> [f64; LANES] {
        let mut a = [0.0; LANES];
        _mm256_storeu_pd(a.as_mut_ptr(), v);
        a
    }

    /// γ and p with the lanes in the mask `small` redone in the textbook
    /// form; out of line, and by value, so the hot loop keeps its state in
    /// registers.
    #[cold]
    #[inline(never)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn textbook_lanes(
        small: i32,
        [shift, c, s]: [__m256d; 3],
        alpha: [f64; LANES],
        [old_gamma, old_c]: [__m256d; 2],
        bb: [f64; LANES],
        [gamma, p]: [__m256d; 2],
    ) -> (__m256d, __m256d) {
        let (shift, c, s, old_gamma, old_c) = (to_array(shift), to_array(c), to_array(s), to_array(old_gamma), to_array(old_c));
        let (mut gamma, mut p) = (to_array(gamma), to_array(p));
        for k in (0..LANES).filter(|k| small & (1 << k) != 0) {
            let chase = Chase { shift: shift[k], c: c[k], s: s[k], gamma: gamma[k], p: p[k] };
            (gamma[k], p[k]) = textbook(&chase, alpha[k], old_gamma[k], old_c[k], bb[k]);
        }
        (_mm256_loadu_pd(gamma.as_ptr()), _mm256_loadu_pd(p.as_ptr()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn a_zero_pre_image_takes_the_textbook_step() {
        // The first sweep's shift is −1 = d[2], so its first step has γ = 0,
        // p = 0 and c = 0: the form through u = γ/c would divide 0 by 0.
        let (t, e) = ([0.0, 0.0, -1.0], [1.0, 1.0]);
        let mut d = t.to_vec();
        eigenvalues(&mut d, &e).unwrap();
        d.sort_by(f64::total_cmp);
        let det = |l: f64| (t[0] - l) * ((t[1] - l) * (t[2] - l) - e[1] * e[1]) - e[0] * e[0] * (t[2] - l);
        for &l in &d {
            assert!(det(l).abs() < 1e-12, "{d:?}: det(T − {l}I) = {}", det(l));
        }
        // Nonzero off-diagonals: three distinct eigenvalues, summing to the trace.
        assert!(d[1] - d[0] > 0.1 && d[2] - d[1] > 0.1, "{d:?}");
        assert!((d.iter().sum::<f64>() - t.iter().sum::<f64>()).abs() < 1e-12, "{d:?}");
    }

    #[test]
    fn lanes_give_each_matrix_its_own_bits() {
        let mut r = Rng::new(41, 0);
        // Unequal sizes (lanes finish at different times, then idle), zeros
        // that split the matrix, 2×2 and 1×1 blocks, fewer problems than
        // lanes, and one whose first step takes the textbook form.
        let sizes: [&[usize]; 6] = [&[1], &[2, 5], &[7, 3, 3], &[40, 40, 40, 40], &[65, 130, 9, 64], &[256, 255]];
        for sizes in sizes {
            let mut problems: Vec<(Vec<f64>, Vec<f64>)> = sizes
                .iter()
                .map(|&n| {
                    let d = (0..n).map(|_| r.normal()).collect();
                    let e = (0..n.saturating_sub(1)).map(|k| if k % 11 == 4 { 0.0 } else { r.normal() }).collect();
                    (d, e)
                })
                .collect();
            if sizes.len() == 3 {
                problems[2] = (vec![0.0, 0.0, -1.0], vec![1.0, 1.0]);
            }
            let alone: Vec<Vec<f64>> = problems
                .iter()
                .map(|(d, e)| {
                    let mut d = d.clone();
                    eigenvalues(&mut d, e).unwrap();
                    d
                })
                .collect();
            let mut together = problems.clone();
            let outcomes = eigenvalues_lanes(together.iter_mut().map(|(d, e)| (&mut d[..], &e[..])).collect());
            assert_eq!(outcomes.len(), sizes.len());
            assert!(outcomes.into_iter().all(|o| o.is_ok()));
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (k, ((got, _), want)) in together.iter().zip(&alone).enumerate() {
                assert_eq!(bits(got), bits(want), "{sizes:?}: lane {k}");
            }
        }
    }
}
