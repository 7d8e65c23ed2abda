// CPU twin: the explicit-patch reference in tests/emulated/reference.rs
// (im2col, col2im). Conv layers arrive with a later issue; these lower an
// NCHW activation to its patch matrix and back, in the layout
// gram_lower_patches reads: row (image, oy, ox), column (channel, ky, kx).
#include "common.cuh"

extern "C" __global__ void im2col(const float* __restrict__ x, size_t n, size_t channels, size_t h, size_t w, size_t kh, size_t kw,
                                  size_t stride, size_t pad, size_t oh, size_t ow, float* __restrict__ cols) {
    const size_t k = channels * kh * kw, total = n * oh * ow * k;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t r = e / k, c = e % k;
        const size_t ox = r % ow, oy = (r / ow) % oh, b = r / (ow * oh);
        const size_t kx = c % kw, ky = (c / kw) % kh, ch = c / (kw * kh);
        const long long iy = (long long)(oy * stride + ky) - (long long)pad;
        const long long ix = (long long)(ox * stride + kx) - (long long)pad;
        const bool inside = iy >= 0 && ix >= 0 && iy < (long long)h && ix < (long long)w;
        cols[e] = inside ? x[((b * channels + ch) * h + (size_t)iy) * w + (size_t)ix] : 0.0f;
    }
}

// The adjoint of im2col: each input element gathers the patch entries that
// read it (no atomics, so the sum order is fixed).
extern "C" __global__ void col2im(const float* __restrict__ cols, size_t n, size_t channels, size_t h, size_t w, size_t kh, size_t kw,
                                  size_t stride, size_t pad, size_t oh, size_t ow, float* __restrict__ x) {
    const size_t k = channels * kh * kw, total = n * channels * h * w;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t ix = e % w, iy = (e / w) % h, ch = (e / (w * h)) % channels, b = e / (w * h * channels);
        float s = 0.0f;
        for (size_t ky = 0; ky < kh; ++ky) {
            const long long ty = (long long)(iy + pad) - (long long)ky;
            if (ty < 0 || ty % (long long)stride != 0 || ty / (long long)stride >= (long long)oh) continue;
            for (size_t kx = 0; kx < kw; ++kx) {
                const long long tx = (long long)(ix + pad) - (long long)kx;
                if (tx < 0 || tx % (long long)stride != 0 || tx / (long long)stride >= (long long)ow) continue;
                const size_t r = (b * oh + (size_t)(ty / (long long)stride)) * ow + (size_t)(tx / (long long)stride);
                s += cols[r * k + (ch * kh + ky) * kw + kx];
            }
        }
        x[e] = s;
    }
}
