// libcublas.so for tests: the SGEMM calls kappa makes (single and strided
// batched), on a column-major reference product. Each k-sum runs in f32 in
// order, with no fused multiply-add; with beta = 0, C is not read (as cuBLAS
// does), so the poison of a fresh output never leaks in. Operand extents are
// checked against the live allocations, and canaries after each write.

#include "api.h"

#include <cstdio>

typedef int cublasStatus_t;
typedef struct StandinBlas* cublasHandle_t;
struct StandinBlas {};

namespace {

enum : cublasStatus_t { SUCCESS = 0, INVALID_VALUE = 7, EXECUTION_FAILED = 13, NOT_SUPPORTED = 15 };
enum { OP_N = 0, OP_T = 1 };

// Elements an operand of `rows`×`cols` (as stored) spans with leading dimension ld.
size_t span(int rows, int cols, int ld) { return rows == 0 || cols == 0 ? 0 : (size_t)(cols - 1) * ld + rows; }

struct Call {
    int ta, tb, m, n, k, lda, ldb, ldc;
    // Stored shapes: op(A) is m×k, op(B) k×n.
    int a_rows() const { return ta == OP_N ? m : k; }
    int a_cols() const { return ta == OP_N ? k : m; }
    int b_rows() const { return tb == OP_N ? k : n; }
    int b_cols() const { return tb == OP_N ? n : k; }
    bool valid() const {
        auto op = [](int t) { return t == OP_N || t == OP_T; };
        return op(ta) && op(tb) && m >= 0 && n >= 0 && k >= 0 && lda >= (a_rows() > 1 ? a_rows() : 1) &&
               ldb >= (b_rows() > 1 ? b_rows() : 1) && ldc >= (m > 1 ? m : 1);
    }
};

void product(const Call& c, float alpha, const float* a, const float* b, float beta, float* out) {
    for (int j = 0; j < c.n; ++j)
        for (int i = 0; i < c.m; ++i) {
            float acc = 0.0f;
            for (int p = 0; p < c.k; ++p) {
                const float x = c.ta == OP_N ? a[i + (size_t)p * c.lda] : a[p + (size_t)i * c.lda];
                const float y = c.tb == OP_N ? b[p + (size_t)j * c.ldb] : b[j + (size_t)p * c.ldb];
                const float xy = x * y;
                acc = acc + xy;
            }
            float& o = out[i + (size_t)j * c.ldc];
            o = beta == 0.0f ? alpha * acc : alpha * acc + beta * o;
        }
}

// Every operand of one product lies in device memory.
bool in_bounds(const Call& c, const float* a, const float* b, const float* out, const char* what) {
    auto check = [&](const float* p, size_t elems) { return elems == 0 || kappa_standin_in_bounds(p, elems * sizeof(float), what); };
    return check(a, span(c.a_rows(), c.a_cols(), c.lda)) && check(b, span(c.b_rows(), c.b_cols(), c.ldb)) &&
           check(out, span(c.m, c.n, c.ldc));
}

cublasStatus_t batched(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                       long long stride_a, const float* b, int ldb, long long stride_b, const float* beta, float* out, int ldc,
                       long long stride_c, int count, const char* what) {
    const Call c{ta, tb, m, n, k, lda, ldb, ldc};
    if (!h || !c.valid() || count < 0) {
        std::fprintf(stderr, "kappa CPU stand-in: %s: invalid arguments\n", what);
        return INVALID_VALUE;
    }
    for (int i = 0; i < count; ++i)
        if (!in_bounds(c, a + i * stride_a, b + i * stride_b, out + i * stride_c, what)) return EXECUTION_FAILED;
    for (int i = 0; i < count; ++i) product(c, *alpha, a + i * stride_a, b + i * stride_b, *beta, out + i * stride_c);
    return kappa_standin_canaries_intact(what) ? SUCCESS : EXECUTION_FAILED;
}

}  // namespace

extern "C" {

KAPPA_STANDIN_HANDLE_CALLS(cublasStatus_t, cublasHandle_t, cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, SUCCESS, INVALID_VALUE)

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                              const float* b, int ldb, const float* beta, float* c, int ldc) {
    return batched(h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1, "cublasSgemm_v2");
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                                         int lda, long long stride_a, const float* b, int ldb, long long stride_b, const float* beta,
                                         float* c, int ldc, long long stride_c, int count) {
    return batched(h, ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, count,
                   "cublasSgemmStridedBatched");
}

}  // extern "C"
