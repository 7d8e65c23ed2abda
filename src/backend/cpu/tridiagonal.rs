//! Eigenvalues of a symmetric tridiagonal matrix by the root-free implicit
//! QL iteration of Pal, Walker and Kahan (Parlett, *The Symmetric Eigenvalue
//! Problem*, §8.15; LAPACK's `dsterf`).
//!
//! Why not faer's tridiagonal QR: with no eigenvectors to accumulate, its
//! cost is one Givens rotation (a square root) per off-diagonal per sweep
//! plus a full deflation scan with a `hypot` per entry every sweep. The
//! root-free form works on the squared off-diagonals and needs one division
//! per step and one square root per sweep (the shift), and it deflates
//! from the top while searching for a split only up to the first small entry.

/// The iteration exceeded 30 sweeps per eigenvalue (LAPACK's cap).
#[derive(Debug)]
pub struct NoConvergence;

/// Replaces `d` (the diagonal) by the eigenvalues, unordered; `e` is the
/// off-diagonal, `e.len() + 1 == d.len()`.
pub fn eigenvalues(d: &mut [f64], e: &[f64]) -> Result<(), NoConvergence> {
    let n = d.len();
    debug_assert_eq!(e.len() + 1, n.max(1));
    // The squares of the off-diagonals: all the iteration ever needs.
    let mut e2: Vec<f64> = e.iter().map(|v| v * v).collect();
    // Relative precision (half an ulp), squared to compare with e².
    let eps2 = (f64::EPSILON / 2.0).powi(2);
    let mut sweeps = 0;
    let mut l = 0;
    while l < n {
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
            0 => l += 1,
            1 => {
                (d[l], d[l + 1]) = two_by_two(d[l], e2[l], d[l + 1]);
                e2[l] = 0.0;
                l += 2;
            }
            _ => {
                sweeps += 1;
                if sweeps > 30 * n {
                    return Err(NoConvergence);
                }
                ql_sweep(&mut d[l..=m], &mut e2[l..m]);
            }
        }
    }
    Ok(())
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
    let m = d.len() - 1;
    // Wilkinson's shift: the eigenvalue of the top 2×2 nearer d[0].
    let off = e2[0].sqrt();
    let t = (d[1] - d[0]) / (2.0 * off);
    let r = t.hypot(1.0);
    let shift = d[0] - off / (t + r.copysign(t));
    // Chase the bulge up from the bottom. With c, s the cosine and sine
    // squared of each rotation and γ the rotated diagonal entry minus the
    // shift, p = γ²/c stands for the squared pre-image of the next entry.
    let (mut c, mut s) = (1.0, 0.0);
    let mut gamma = d[m] - shift;
    let mut p = gamma * gamma;
    for i in (0..m).rev() {
        let bb = e2[i];
        let r = p + bb;
        if i + 1 != m {
            e2[i + 1] = s * r;
        }
        let old_c = c;
        // Why 1/c as r/p rather than dividing by c: the three quotients
        // then depend on r alone and overlap in the divider, where γ²/c
        // waited for c's division and then γ: one division's latency less
        // on the step's critical path, the step's cost.
        (c, s) = (p / r, bb / r);
        let inv_c = r / p;
        let old_gamma = gamma;
        let alpha = d[i];
        gamma = c * (alpha - shift) - s * old_gamma;
        d[i + 1] = old_gamma + (alpha - gamma);
        // c = 0 only when γ was 0: the next pre-image is then e²·c_old.
        p = if c != 0.0 { gamma * gamma * inv_c } else { old_c * bb };
    }
    e2[0] = s * p;
    d[0] = shift + gamma;
}
