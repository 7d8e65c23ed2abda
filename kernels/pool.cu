// CPU twin: src/backend/cpu/pool.rs (max_pool2d, max_pool2d_backward,
// avg_pool2d, avg_pool2d_backward). Pooling over `planes` NCHW planes of h×w.
// The forward passes run one thread per output. The backward passes gather,
// one thread per input cell, over the outputs whose window covers it in
// ascending output order, which is the order the CPU scatters in: no
// atomics, and the sums add in the CPU's order.
#include "common.cuh"

// The input rows (or columns) lo..hi of output o's window, padding excluded;
// empty (hi ≤ lo) when the window lies wholly in the padding.
__device__ __forceinline__ void window_span(size_t o, size_t k, size_t stride, size_t pad, size_t in, size_t* lo, size_t* hi) {
    const size_t start = o * stride, end = start + k;  // padded coordinates
    *lo = start > pad ? start - pad : 0;
    *hi = end > pad ? (end - pad < in ? end - pad : in) : 0;
}

// The outputs lo..hi (along one axis) whose window covers input i.
__device__ __forceinline__ void covering(size_t i, size_t k, size_t stride, size_t pad, size_t out, size_t* lo, size_t* hi) {
    const size_t p = i + pad;
    *lo = p >= k ? (p - k) / stride + 1 : 0;
    const size_t last = p / stride + 1;
    *hi = last < out ? last : out;
}

extern "C" __global__ void max_pool2d(const float* __restrict__ x, size_t planes, size_t h, size_t w, size_t kh, size_t kw, size_t stride,
                                      size_t pad, size_t oh, size_t ow, float* __restrict__ y) {
    const size_t total = planes * oh * ow;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t ox = e % ow, oy = (e / ow) % oh;
        const float* plane = x + e / (ow * oh) * h * w;
        size_t y0, y1, x0, x1;
        window_span(oy, kh, stride, pad, h, &y0, &y1);
        window_span(ox, kw, stride, pad, w, &x0, &x1);
        // The first cell starts the fold; a window with no cell reads zero.
        float m = 0.0f;
        bool first = true;
        for (size_t iy = y0; iy < y1; ++iy)
            for (size_t ix = x0; ix < x1; ++ix) {
                const float v = plane[iy * w + ix];
                if (first || v > m) m = v;
                first = false;
            }
        y[e] = m;
    }
}

// Each input cell sums dy over the outputs whose first window cell equal to
// their maximum y is this cell.
extern "C" __global__ void max_pool2d_backward(const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ y,
                                               size_t planes, size_t h, size_t w, size_t kh, size_t kw, size_t stride, size_t pad, size_t oh,
                                               size_t ow, float* __restrict__ dx) {
    const size_t total = planes * h * w;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t cell = e % (h * w), p = e / (h * w);
        const float* plane = x + p * h * w;
        size_t oy0, oy1, ox0, ox1;
        covering(cell / w, kh, stride, pad, oh, &oy0, &oy1);
        covering(cell % w, kw, stride, pad, ow, &ox0, &ox1);
        float s = 0.0f;
        for (size_t oy = oy0; oy < oy1; ++oy)
            for (size_t ox = ox0; ox < ox1; ++ox) {
                const size_t o = p * oh * ow + oy * ow + ox;
                size_t y0, y1, x0, x1;
                window_span(oy, kh, stride, pad, h, &y0, &y1);
                window_span(ox, kw, stride, pad, w, &x0, &x1);
                size_t argmax = h * w;  // none: a NaN maximum matches no cell
                for (size_t iy = y0; iy < y1 && argmax == h * w; ++iy)
                    for (size_t ix = x0; ix < x1; ++ix)
                        if (plane[iy * w + ix] == y[o]) {
                            argmax = iy * w + ix;
                            break;
                        }
                if (argmax == cell) s += dy[o];
            }
        dx[e] = s;
    }
}

// Mean over the kh·kw cells with padding counted as zeros; `inv` is 1/(kh·kw)
// rounded on the host, as the CPU rounds it.
extern "C" __global__ void avg_pool2d(const float* __restrict__ x, size_t planes, size_t h, size_t w, size_t kh, size_t kw, size_t stride,
                                      size_t pad, size_t oh, size_t ow, float inv, float* __restrict__ y) {
    const size_t total = planes * oh * ow;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t ox = e % ow, oy = (e / ow) % oh;
        const float* plane = x + e / (ow * oh) * h * w;
        size_t y0, y1, x0, x1;
        window_span(oy, kh, stride, pad, h, &y0, &y1);
        window_span(ox, kw, stride, pad, w, &x0, &x1);
        float s = 0.0f;
        for (size_t iy = y0; iy < y1; ++iy)
            for (size_t ix = x0; ix < x1; ++ix) s += plane[iy * w + ix];
        y[e] = s * inv;
    }
}

extern "C" __global__ void avg_pool2d_backward(const float* __restrict__ dy, size_t planes, size_t h, size_t w, size_t kh, size_t kw,
                                               size_t stride, size_t pad, size_t oh, size_t ow, float inv, float* __restrict__ dx) {
    const size_t total = planes * h * w;
    for (size_t e = grid_start(); e < total; e += grid_stride()) {
        const size_t cell = e % (h * w);
        const float* g = dy + e / (h * w) * oh * ow;
        size_t oy0, oy1, ox0, ox1;
        covering(cell / w, kh, stride, pad, oh, &oy0, &oy1);
        covering(cell % w, kw, stride, pad, ow, &ox0, &ox1);
        float s = 0.0f;
        for (size_t oy = oy0; oy < oy1; ++oy)
            for (size_t ox = ox0; ox < ox1; ++ox) s += g[oy * ow + ox] * inv;
        dx[e] = s;
    }
}
