// CPU twin: `sum` and `dot` in src/backend/cpu/mod.rs, and the preparation
// `eigvalsh_one` in src/backend/cpu/eigen.rs does before its solve (the
// largest |entry| of the lower triangle, the non-finite check, the scaling).
#include "common.cuh"

// out[0] += Σ a·b (Σ a when b is null), in f64. 1-D blocks, a multiple of 32
// threads; out must be zeroed first.
extern "C" __global__ void sum_f32(const float* __restrict__ a, const float* __restrict__ b, size_t n, double* __restrict__ out) {
    double s = 0.0;
    for (size_t i = grid_start(); i < n; i += grid_stride()) s += b ? (double)a[i] * (double)b[i] : (double)a[i];
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(out, s);
}

// Over the row-major lower triangle (j ≤ i) of an n×n matrix: stats[0] = the
// bits of the largest |entry| (non-negative floats order as their bits) and
// stats[1] = 1 if any entry is not finite. stats must be zeroed first.
extern "C" __global__ void lower_max_abs(const float* __restrict__ lower, size_t n, unsigned* __restrict__ stats) {
    unsigned max_bits = 0, bad = 0;
    for (size_t k = grid_start(); k < n * n; k += grid_stride()) {
        if (k % n > k / n) continue;
        const float v = lower[k];
        if (!isfinite(v))
            bad = 1;
        else
            max_bits = max_bits > (unsigned)__float_as_int(fabsf(v)) ? max_bits : (unsigned)__float_as_int(fabsf(v));
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const unsigned other = __shfl_xor_sync(0xffffffffu, max_bits, offset);
        max_bits = max_bits > other ? max_bits : other;
        bad |= __shfl_xor_sync(0xffffffffu, bad, offset);
    }
    if (threadIdx.x % 32 == 0) {
        atomicMax(&stats[0], max_bits);
        if (bad) atomicOr(&stats[1], 1u);
    }
}

// out[k] = lower[k] / scale in f64, same index: the row-major lower triangle
// becomes a column-major upper triangle for the solver (src/backend/cuda/solver.rs).
extern "C" __global__ void scale_to_f64(const float* __restrict__ lower, size_t n, double scale, double* __restrict__ out) {
    for (size_t k = grid_start(); k < n; k += grid_stride()) out[k] = (double)lower[k] / scale;
}
