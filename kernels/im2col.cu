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
extern "C" __global__ void im2col(const float* __restrict__ x, size_t n, size_t channels, size_t h, size_t w, size_t kh, size_t kw,
                                  size_t stride, size_t pad, size_t oh, size_t ow, size_t image_stride, size_t row_stride,
                                  float* __restrict__ cols) {
    const size_t area = oh * ow, k = channels * kh * kw, total = n * k * area;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t pos = e % area, row = (e / area) % k, b = e / (area * k);
        const size_t ox = pos % ow, oy = pos / ow;
        const size_t kx = row % kw, ky = (row / kw) % kh, ch = row / (kw * kh);
        const long long iy = (long long)(oy * stride + ky) - (long long)pad;
        const long long ix = (long long)(ox * stride + kx) - (long long)pad;
        const bool inside = iy >= 0 && ix >= 0 && iy < (long long)h && ix < (long long)w;
        cols[b * image_stride + row * row_stride + pos] = inside ? x[((b * channels + ch) * h + (size_t)iy) * w + (size_t)ix] : 0.0f;
    }
}

// The adjoint of im2col: each input element gathers the patch entries that
// read it in (ky, kx) order, the order the CPU's fold adds them in (no
// atomics, so the sum order is fixed).
extern "C" __global__ void col2im(const float* __restrict__ cols, size_t n, size_t channels, size_t h, size_t w, size_t kh, size_t kw,
                                  size_t stride, size_t pad, size_t oh, size_t ow, float* __restrict__ x) {
    const size_t area = oh * ow, k = channels * kh * kw, total = n * channels * h * w;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t ix = e % w, iy = (e / w) % h, ch = (e / (w * h)) % channels, b = e / (w * h * channels);
        const float* image = cols + b * k * area;
        float s = 0.0f;
        for (size_t ky = 0; ky < kh; ++ky) {
            const long long ty = (long long)(iy + pad) - (long long)ky;
            if (ty < 0 || ty % (long long)stride != 0 || ty / (long long)stride >= (long long)oh) continue;
            for (size_t kx = 0; kx < kw; ++kx) {
                const long long tx = (long long)(ix + pad) - (long long)kx;
                if (tx < 0 || tx % (long long)stride != 0 || tx / (long long)stride >= (long long)ow) continue;
                const size_t pos = (size_t)(ty / (long long)stride) * ow + (size_t)(tx / (long long)stride);
                s += image[((ch * kh + ky) * kw + kx) * area + pos];
            }
        }
        x[e] = s;
    }
}
