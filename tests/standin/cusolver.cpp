// libcusolver.so for tests: the eigenvalue call kappa makes (Dsyevd without
// vectors, and its workspace query) in f64 on the CPU: Householder reduction
// to tridiagonal form, then each eigenvalue by Sturm-count bisection (robust,
// O(n²) per sweep of all of them, accurate to a few ulps of the norm). Like
// syevd, it reads only the `uplo` triangle of A; the workspace holds the
// full symmetric copy the reduction works on. `info` is 0, or n + 1 for a
// matrix with a non-finite entry (kappa never sends one: it checks first).

#include "api.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

typedef int cusolverStatus_t;
typedef struct StandinSolver* cusolverDnHandle_t;
struct StandinSolver {};

namespace {

enum : cusolverStatus_t { SUCCESS = 0, INVALID_VALUE = 3, EXECUTION_FAILED = 6, NOT_SUPPORTED = 7 };
enum { NOVECTOR = 0, LOWER = 0, UPPER = 1 };

// Reduces the n×n symmetric `s` (column-major, overwritten) to a tridiagonal
// matrix with the same eigenvalues: diagonal d, off-diagonal e (n − 1). Step
// k reflects column k below the diagonal onto its first entry, H = I − 2vvᵀ,
// and updates the trailing block B ← HBH = B − 2vqᵀ − 2qvᵀ, q = Bv − (vᵀBv)v.
void tridiagonalise(double* s, int n, std::vector<double>& d, std::vector<double>& e) {
    auto at = [&](int r, int c) -> double& { return s[r + (size_t)c * n]; };
    std::vector<double> v(n), q(n);
    for (int k = 0; k + 2 < n; ++k) {
        double norm = 0.0;
        for (int i = k + 1; i < n; ++i) norm += at(i, k) * at(i, k);
        norm = std::sqrt(norm);
        const double x0 = at(k + 1, k);
        const double alpha = x0 >= 0 ? -norm : norm;
        e[k] = norm == 0.0 ? 0.0 : alpha;
        if (norm == 0.0) continue;
        double vnorm = 0.0;
        for (int i = k + 1; i < n; ++i) {
            v[i] = at(i, k) - (i == k + 1 ? alpha : 0.0);
            vnorm += v[i] * v[i];
        }
        vnorm = std::sqrt(vnorm);
        if (vnorm == 0.0) continue;
        for (int i = k + 1; i < n; ++i) v[i] /= vnorm;
        double K = 0.0;
        for (int i = k + 1; i < n; ++i) {
            double p = 0.0;
            for (int j = k + 1; j < n; ++j) p += at(i, j) * v[j];
            q[i] = p;
            K += v[i] * p;
        }
        for (int i = k + 1; i < n; ++i) q[i] -= K * v[i];
        for (int j = k + 1; j < n; ++j)
            for (int i = k + 1; i < n; ++i) at(i, j) -= 2.0 * (v[i] * q[j] + q[i] * v[j]);
    }
    if (n >= 2) e[n - 2] = at(n - 1, n - 2);
    for (int i = 0; i < n; ++i) d[i] = at(i, i);
}

// Eigenvalues of the tridiagonal (d, e) below x: the negative pivots of the
// LDLᵀ factorisation of T − xI (Sylvester's law of inertia).
int below(const std::vector<double>& d, const std::vector<double>& e, double x) {
    int count = 0;
    double pivot = 1.0;
    for (size_t i = 0; i < d.size(); ++i) {
        pivot = d[i] - x - (i == 0 ? 0.0 : e[i - 1] * e[i - 1] / pivot);
        if (pivot == 0.0) pivot = -1e-300;  // x is an eigenvalue: count it as below
        if (pivot < 0.0) ++count;
    }
    return count;
}

// Eigenvalue k (ascending) of (d, e) by bisection inside the Gershgorin bounds.
double bisect(const std::vector<double>& d, const std::vector<double>& e, int k, double lo, double hi) {
    for (int it = 0; it < 200 && hi - lo > 2.0 * 1e-16 * std::max(std::fabs(lo), std::fabs(hi)); ++it) {
        const double mid = 0.5 * (lo + hi);
        if (mid == lo || mid == hi) break;
        if (below(d, e, mid) > k)
            hi = mid;
        else
            lo = mid;
    }
    return 0.5 * (lo + hi);
}

// Eigenvalues of the symmetric `s` into w, ascending.
void eigenvalues(double* s, int n, double* w) {
    std::vector<double> d(n), e(n > 1 ? n - 1 : 0);
    tridiagonalise(s, n, d, e);
    double lo = 0.0, hi = 0.0;
    for (int i = 0; i < n; ++i) {
        const double r = (i > 0 ? std::fabs(e[i - 1]) : 0.0) + (i + 1 < n ? std::fabs(e[i]) : 0.0);
        lo = std::min(lo, d[i] - r);
        hi = std::max(hi, d[i] + r);
    }
    const double pad = 1e-12 * std::max(std::fabs(lo), std::fabs(hi)) + 1e-300;
    for (int k = 0; k < n; ++k) w[k] = bisect(d, e, k, lo - pad, hi + pad);
}

}  // namespace

extern "C" {

KAPPA_STANDIN_HANDLE_CALLS(cusolverStatus_t, cusolverDnHandle_t, cusolverDnCreate, cusolverDnDestroy, cusolverDnSetStream, SUCCESS,
                           INVALID_VALUE)

cusolverStatus_t cusolverDnDsyevd_bufferSize(cusolverDnHandle_t h, int jobz, int uplo, int n, const double*, int lda, const double*,
                                             int* lwork) {
    if (!h || n < 0 || lda < std::max(1, n) || (uplo != LOWER && uplo != UPPER)) return INVALID_VALUE;
    if (jobz != NOVECTOR) return NOT_SUPPORTED;
    *lwork = std::max(1, n * n);
    return SUCCESS;
}

cusolverStatus_t cusolverDnDsyevd(cusolverDnHandle_t h, int jobz, int uplo, int n, double* a, int lda, double* w, double* work,
                                  int lwork, int* info) {
    const char* what = "cusolverDnDsyevd";
    if (!h || n < 0 || lda < std::max(1, n) || lwork < std::max(1, n * n) || (uplo != LOWER && uplo != UPPER)) return INVALID_VALUE;
    if (jobz != NOVECTOR) return NOT_SUPPORTED;
    const size_t d = sizeof(double);
    const bool ok = kappa_standin_in_bounds(info, sizeof(int), what) &&
                    (n == 0 || (kappa_standin_in_bounds(a, ((size_t)(n - 1) * lda + n) * d, what) &&
                                kappa_standin_in_bounds(w, (size_t)n * d, what) &&
                                kappa_standin_in_bounds(work, (size_t)lwork * d, what)));
    if (!ok) return EXECUTION_FAILED;
    for (int c = 0; c < n; ++c)
        for (int r = 0; r < n; ++r) {
            const bool stored = uplo == UPPER ? r <= c : r >= c;
            work[r + (size_t)c * n] = stored ? a[r + (size_t)c * lda] : a[c + (size_t)r * lda];
        }
    bool finite = true;
    for (size_t i = 0; i < (size_t)n * n; ++i) finite = finite && std::isfinite(work[i]);
    *info = finite ? 0 : n + 1;
    if (finite) eigenvalues(work, n, w);
    return kappa_standin_canaries_intact(what) ? SUCCESS : EXECUTION_FAILED;
}

}  // extern "C"
