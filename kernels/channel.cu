// Twins: src/backend/cpu/channel.rs (CPU), src/backend/cuda/channel.rs
// (launches). Per-channel ops over an outer × channels × inner layout as the
// CPU does them: the f64 per-channel reductions and the f32 per-channel
// affine map that bias add, bias gradient and batch norm (batch_norm.cu) are
// built from, and copy_channels, which pads and narrows whole channels.
#include "common.cuh"

// Per channel c: sa[c] += Σ a and sab[c] += Σ a·b (b = a when b is null), for
// an N×C row-major matrix (inner == 1). Block (32, ROWS): threadIdx.x walks 32
// adjacent channels so loads coalesce, threadIdx.y and blockIdx.y split rows.
// sa and sab must be zeroed first; blocks meet through atomics.
#define DOT_ROWS 8
extern "C" __global__ void channel_dots_rows(const float* __restrict__ a, const float* __restrict__ b, size_t rows, size_t channels,
                                             double* __restrict__ sa, double* __restrict__ sab) {
    __shared__ double part_a[DOT_ROWS][32];
    __shared__ double part_ab[DOT_ROWS][32];
    const size_t c = (size_t)blockIdx.x * 32 + threadIdx.x;
    double s = 0.0, q = 0.0;
    if (c < channels) {
        for (size_t r = (size_t)blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += (size_t)gridDim.y * blockDim.y) {
            const double x = a[r * channels + c];
            const double y = b ? (double)b[r * channels + c] : x;
            s += x;
            q += x * y;
        }
    }
    part_a[threadIdx.y][threadIdx.x] = s;
    part_ab[threadIdx.y][threadIdx.x] = q;
    __syncthreads();
    if (threadIdx.y == 0 && c < channels) {
        for (unsigned k = 1; k < blockDim.y; ++k) {
            s += part_a[k][threadIdx.x];
            q += part_ab[k][threadIdx.x];
        }
        atomicAdd(&sa[c], s);
        atomicAdd(&sab[c], q);
    }
}

// The same sums for inner > 1 (NCHW): block (blockIdx.x) = channel, the
// 1-D block (a multiple of 32 threads) and blockIdx.y split outer × inner.
extern "C" __global__ void channel_dots_planes(const float* __restrict__ a, const float* __restrict__ b, size_t outer, size_t channels,
                                               size_t inner, double* __restrict__ sa, double* __restrict__ sab) {
    const size_t c = blockIdx.x, per_channel = outer * inner;
    double s = 0.0, q = 0.0;
    for (size_t k = (size_t)blockIdx.y * blockDim.x + threadIdx.x; k < per_channel; k += (size_t)gridDim.y * blockDim.x) {
        const size_t i = ((k / inner) * channels + c) * inner + k % inner;
        const double x = a[i];
        const double y = b ? (double)b[i] : x;
        s += x;
        q += x * y;
    }
    s = block_sum(s);
    q = block_sum(q);
    if (threadIdx.x == 0) {
        atomicAdd(&sa[c], s);
        atomicAdd(&sab[c], q);
    }
}

// out = scale[c]·x + shift[c] (+ zscale[c]·z when z is given); scale null means 1.
extern "C" __global__ void channel_affine(const float* __restrict__ x, const float* __restrict__ scale, const float* __restrict__ shift,
                                          const float* __restrict__ z, const float* __restrict__ zscale, float* __restrict__ out, size_t n,
                                          size_t channels, size_t inner) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        const size_t c = (i / inner) % channels;
        float v = (scale ? scale[c] * x[i] : x[i]) + shift[c];
        if (z) v += zscale[c] * z[i];
        out[i] = v;
    }
}

// y[o][c][i] = x[o][c − before + start][i] where that input channel exists,
// else 0: pad_channels with start = 0, narrow_channels with before = 0.
extern "C" __global__ void copy_channels(const float* __restrict__ x, size_t outer, size_t in_channels, size_t inner, size_t out_channels,
                                         size_t before, size_t start, float* __restrict__ y) {
    const size_t total = outer * out_channels * inner;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t i = e % inner, c = (e / inner) % out_channels, o = e / (inner * out_channels);
        const size_t src = c + start - before;  // only read when c ≥ before
        y[e] = c >= before && src < in_channels ? x[(o * in_channels + src) * inner + i] : 0.0f;
    }
}
