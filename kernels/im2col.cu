// CPU twin: src/backend/cpu/conv.rs, whose conv2d with the identity filter
// bank is im2col and whose conv2d_backward_data with it is col2im. They lower
// NCHW images to the patch matrices the conv GEMMs read and back, in the CPU's
// layout: per image, row (channel, ky, kx) and column (oy, ox), a
// c·kh·kw × oh·ow block.
#include "common.cuh"

// Patch entry (image b, row, position pos) goes to
// cols[b·image_stride + row·row_stride + pos]. The convolutions take one
// block per image (image_stride = k·area, row_stride = area); the patch Gram
// takes one k × n·area matrix (image_stride = area, row_stride = n·area), so
// that a single GEMM sums over every image. Consecutive threads walk output
// positions, so reads of x and writes of cols both run along image rows.
//
// Index type I: each element takes five divisions or remainders by run-time
// sizes, and a GPU has no integer divider: a 32-bit division is a short
// instruction sequence, a 64-bit one a subroutine several times longer. The
// host launches the 32-bit entries whenever every index of the launch
// (cols and x alike) is below 2^31 (`unfold_entry` in
// src/backend/cuda/conv.rs), as it is for any chunk within the 128 MiB
// scratch cap unless its images alone hold 2^31 values; the 64-bit entries
// take the rest. Padding is tested on padded coordinates (py against pad and
// h + pad), with no signed arithmetic, so one body serves both types.
template <class I>
__device__ __forceinline__ void im2col_body(const float* __restrict__ x, I n, I channels, I h, I w, I kh, I kw, I stride, I pad,
                                            I oh, I ow, I image_stride, I row_stride, float* __restrict__ cols) {
    const I area = oh * ow, k = channels * kh * kw, total = n * k * area;
    for (I e = (I)grid_start(); e < total; e += (I)grid_stride()) {
        const I pos = e % area, row = (e / area) % k, b = e / (area * k);
        const I ox = pos % ow, oy = pos / ow;
        const I kx = row % kw, ky = (row / kw) % kh, ch = row / (kw * kh);
        const I py = oy * stride + ky, px = ox * stride + kx;  // padded coordinates
        const bool inside = py >= pad && px >= pad && py < h + pad && px < w + pad;
        cols[b * image_stride + row * row_stride + pos] = inside ? x[((b * channels + ch) * h + (py - pad)) * w + (px - pad)] : 0.0f;
    }
}

// The adjoint of im2col: each input element gathers the patch entries that
// read it in (ky, kx) order, the order the CPU's fold adds them in (no
// atomics, so the sum order is fixed). Index type I as in im2col_body.
template <class I>
__device__ __forceinline__ void col2im_body(const float* __restrict__ cols, I n, I channels, I h, I w, I kh, I kw, I stride, I pad,
                                            I oh, I ow, float* __restrict__ x) {
    const I area = oh * ow, k = channels * kh * kw, total = n * channels * h * w;
    for (I e = (I)grid_start(); e < total; e += (I)grid_stride()) {
        const I ix = e % w, iy = (e / w) % h, ch = (e / (w * h)) % channels, b = e / (w * h * channels);
        const float* image = cols + b * k * area;
        float s = 0.0f;
        for (I ky = 0; ky < kh; ++ky) {
            if (iy + pad < ky) continue;
            const I ty = iy + pad - ky;
            if (ty % stride != 0 || ty / stride >= oh) continue;
            for (I kx = 0; kx < kw; ++kx) {
                if (ix + pad < kx) continue;
                const I tx = ix + pad - kx;
                if (tx % stride != 0 || tx / stride >= ow) continue;
                s += image[((ch * kh + ky) * kw + kx) * area + (ty / stride) * ow + tx / stride];
            }
        }
        x[e] = s;
    }
}

// The entries take size_t sizes, whichever index type their body uses.
#define IM2COL_PARAMS                                                                                                             \
    const float* __restrict__ x, size_t n, size_t channels, size_t h, size_t w, size_t kh, size_t kw, size_t stride, size_t pad, \
        size_t oh, size_t ow, size_t image_stride, size_t row_stride, float* __restrict__ cols
#define COL2IM_PARAMS                                                                                                                \
    const float* __restrict__ cols, size_t n, size_t channels, size_t h, size_t w, size_t kh, size_t kw, size_t stride, size_t pad, \
        size_t oh, size_t ow, float* __restrict__ x

extern "C" __global__ void im2col(IM2COL_PARAMS) {
    typedef unsigned I;
    im2col_body<I>(x, (I)n, (I)channels, (I)h, (I)w, (I)kh, (I)kw, (I)stride, (I)pad, (I)oh, (I)ow, (I)image_stride, (I)row_stride, cols);
}
extern "C" __global__ void im2col_64(IM2COL_PARAMS) {
    im2col_body<size_t>(x, n, channels, h, w, kh, kw, stride, pad, oh, ow, image_stride, row_stride, cols);
}
extern "C" __global__ void col2im(COL2IM_PARAMS) {
    typedef unsigned I;
    col2im_body<I>(cols, (I)n, (I)channels, (I)h, (I)w, (I)kh, (I)kw, (I)stride, (I)pad, (I)oh, (I)ow, x);
}
extern "C" __global__ void col2im_64(COL2IM_PARAMS) {
    col2im_body<size_t>(cols, n, channels, h, w, kh, kw, stride, pad, oh, ow, x);
}
