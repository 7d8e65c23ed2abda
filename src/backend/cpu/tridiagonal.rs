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

/// [`eigenvalues`] of two matrices at once, each result bit for bit its own.
///
/// Why: a sweep is one chain of dependent divisions, so one alone leaves
/// the core waiting on their latency; two independent chains in one loop
/// fill each other's gaps.
pub fn eigenvalues_pair(a: (&mut [f64], &[f64]), b: (&mut [f64], &[f64])) -> [Result<(), NoConvergence>; 2] {
    let ((da, ea), (db, eb)) = (a, b);
    let (mut qa, mut qb) = (Deflation::new(da, ea), Deflation::new(db, eb));
    let (mut ba, mut bb) = (qa.next_block(da), qb.next_block(db));
    loop {
        match (&ba, &bb) {
            (Ok(Some((la, ma))), Ok(Some((lb, mb)))) => {
                ql_sweep_pair((&mut da[*la..=*ma], &mut qa.e2[*la..*ma]), (&mut db[*lb..=*mb], &mut qb.e2[*lb..*mb]));
                (ba, bb) = (qa.next_block(da), qb.next_block(db));
            }
            (Ok(Some((l, m))), _) => {
                ql_sweep(&mut da[*l..=*m], &mut qa.e2[*l..*m]);
                ba = qa.next_block(da);
            }
            (_, Ok(Some((l, m)))) => {
                ql_sweep(&mut db[*l..=*m], &mut qb.e2[*l..*m]);
                bb = qb.next_block(db);
            }
            _ => return [ba.map(drop), bb.map(drop)],
        }
    }
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
        Deflation { e2: e.iter().map(|v| v * v).collect(), l: 0, sweeps: 0 }
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

/// [`ql_sweep`] over two blocks, their steps side by side while both last.
fn ql_sweep_pair((da, ea): (&mut [f64], &mut [f64]), (db, eb): (&mut [f64], &mut [f64])) {
    let (mut a, mut b) = (Chase::new(da, ea), Chase::new(db, eb));
    let (ma, mb) = (ea.len(), eb.len());
    for k in 1..=ma.min(mb) {
        a.step(da, ea, ma - k);
        b.step(db, eb, mb - k);
    }
    for i in (0..ma.saturating_sub(mb)).rev() {
        a.step(da, ea, i);
    }
    for i in (0..mb.saturating_sub(ma)).rev() {
        b.step(db, eb, i);
    }
    a.finish(da, ea);
    b.finish(db, eb);
}

/// The smallest c for which a step goes through u = γ/c: √MIN_POSITIVE.
const SMALL_C: f64 = 1.4916681462400413e-154;

/// The bulge chase of one sweep, up from the bottom. With c, s the cosine
/// and sine squared of each rotation and γ the rotated diagonal entry minus
/// the shift, p = γ²/c stands for the squared pre-image of the next entry.
struct Chase {
    shift: f64,
    c: f64,
    s: f64,
    gamma: f64,
    p: f64,
}

impl Chase {
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
            self.gamma = self.c * (alpha - self.shift) - self.s * old_gamma;
            self.p = if self.c != 0.0 { self.gamma * self.gamma / self.c } else { old_c * bb };
        }
        d[i + 1] = old_gamma + (alpha - self.gamma);
    }

    #[inline(always)]
    fn finish(self, d: &mut [f64], e2: &mut [f64]) {
        e2[0] = self.s * self.p;
        d[0] = self.shift + self.gamma;
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
    fn a_pair_gives_each_matrix_its_own_bits() {
        let mut r = Rng::new(41, 0);
        // Unequal sizes (the longer block's steps run alone at the end),
        // zeros that split the matrix, and 2×2 and 1×1 blocks.
        for (na, nb) in [(1, 1), (2, 5), (7, 3), (40, 40), (65, 130)] {
            let mut problem = |n: usize| -> (Vec<f64>, Vec<f64>) {
                let d = (0..n).map(|_| r.normal()).collect();
                let e = (0..n.saturating_sub(1)).map(|k| if k % 11 == 4 { 0.0 } else { r.normal() }).collect();
                (d, e)
            };
            let ((mut da, ea), (mut db, eb)) = (problem(na), problem(nb));
            let (mut sa, mut sb) = (da.clone(), db.clone());
            eigenvalues(&mut sa, &ea).unwrap();
            eigenvalues(&mut sb, &eb).unwrap();
            let [ra, rb] = eigenvalues_pair((&mut da, &ea), (&mut db, &eb));
            ra.unwrap();
            rb.unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&da), bits(&sa), "{na}, {nb}: first");
            assert_eq!(bits(&db), bits(&sb), "{na}, {nb}: second");
        }
    }
}
