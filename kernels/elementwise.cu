// CPU twin: the element-wise ops of src/backend/cpu/mod.rs (fill, add, sub,
// mul, scale, axpy, relu, relu_backward, dropout_mask) and a cast used by the
// per-channel reductions. One grid-stride loop per op.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* __restrict__ y, float value, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = value;
}

extern "C" __global__ void add_f32(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = a[i] + b[i];
}

extern "C" __global__ void sub_f32(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = a[i] - b[i];
}

extern "C" __global__ void mul_f32(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = a[i] * b[i];
}

extern "C" __global__ void scale_f32(const float* __restrict__ a, float s, float* __restrict__ y, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = a[i] * s;
}

// y ← y + alpha·x, in place.
extern "C" __global__ void axpy_f32(float* __restrict__ y, float alpha, const float* __restrict__ x, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] += alpha * x[i];
}

extern "C" __global__ void relu_f32(const float* __restrict__ x, float* __restrict__ y, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// grad·[y > 0], from the ReLU's output y.
extern "C" __global__ void relu_backward_f32(const float* __restrict__ grad, const float* __restrict__ y, float* __restrict__ out, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) out[i] = y[i] > 0.0f ? grad[i] : 0.0f;
}

// 0 with probability p, else `keep` (= 1/(1-p) rounded on the host, as the CPU
// does); element i draws hash3(seed, stream, i), exactly as src/rng.rs.
extern "C" __global__ void dropout_mask_f32(float* __restrict__ out, size_t n, double p, float keep, u64 seed, u64 stream) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) out[i] = unit_f64(hash3(seed, stream, (u64)i)) < p ? 0.0f : keep;
}

extern "C" __global__ void f64_to_f32(const double* __restrict__ x, float* __restrict__ y, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) y[i] = (float)x[i];
}
