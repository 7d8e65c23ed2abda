// libcudnn.so for tests: the legacy convolution calls kappa makes through
// cudarc 0.19 (src/backend/cuda/dnn.rs): handles, 4-d tensor, filter and
// convolution descriptors, the `_v7` algorithm heuristics, and forward,
// backward-data and backward-filter convolutions, f32 only. Each runs as
// plain host loops over the descriptors' dims and strides, summing in f64 and
// rounding once, then blends `alpha·result + beta·out` (out is not read when
// beta = 0, as cuDNN does, so the poison of a fresh output never leaks in).
// Every operand's extent is checked against the live allocations, and the
// canaries after each write, naming the call.
//
// The heuristics rank, per direction, one algorithm that needs a workspace
// first (forward GEMM unfolds each image's patches into it; backward data and
// filter accumulate into it), then one that needs none, and list one more as
// not supported, so kappa's candidate filtering and workspace handling run.
//
// Test-only variants, read from the environment at each call:
//   KAPPA_STANDIN_CUDNN_VERSION=N   cudnnGetVersion returns N (e.g. 8907);
//   KAPPA_STANDIN_CUDNN_FAIL=first  the first-ranked algorithm of each direction
//                                   fails at run time (EXECUTION_FAILED);
//   KAPPA_STANDIN_CUDNN_FAIL=all    every algorithm does.

#include "api.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

typedef int cudnnStatus_t;
typedef struct StandinDnn* cudnnHandle_t;
struct StandinDnn {};

struct StandinTensor {
    int dims[4] = {0, 0, 0, 0}, strides[4] = {0, 0, 0, 0};
};
struct StandinFilter {
    int dims[4] = {0, 0, 0, 0};  // k, c, r, s, packed NCHW
};
struct StandinConv {
    int pad[2] = {0, 0}, stride[2] = {1, 1}, dilation[2] = {1, 1};
    int mode = 1, math = 0;
};

typedef StandinTensor* cudnnTensorDescriptor_t;
typedef StandinFilter* cudnnFilterDescriptor_t;
typedef StandinConv* cudnnConvolutionDescriptor_t;

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t share this layout.
struct AlgoPerf {
    int algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    int determinism, math_type;
    int reserved[3];
};

namespace {

// cuDNN 9's status values (cudarc's cudnn-09021 bindings).
enum : cudnnStatus_t { SUCCESS = 0, BAD_PARAM = 2000, NOT_SUPPORTED = 3000, EXECUTION_FAILED = 5000 };
enum { DATA_FLOAT = 0, FORMAT_NCHW = 0, CONVOLUTION = 0, CROSS_CORRELATION = 1 };
// cuDNN 9.21.0, the version cudarc's `cudnn` feature binds.
constexpr size_t VERSION = 92100;

cudnnStatus_t refuse(cudnnStatus_t status, const char* what, const char* why) {
    std::fprintf(stderr, "kappa CPU stand-in: %s: %s\n", what, why);
    return status;
}

// One convolution's shapes, checked against each other: x [n, c, h, w], the
// filter [k, c, r, s], y [n, k, oh, ow].
struct Shape {
    const StandinTensor& x;
    const StandinFilter& w;
    const StandinConv& conv;
    const StandinTensor& y;

    int n() const { return x.dims[0]; }
    int c() const { return x.dims[1]; }
    int k() const { return w.dims[0]; }
    int out(int axis) const {  // axis 0: height, 1: width
        const int extent = conv.dilation[axis] * (w.dims[2 + axis] - 1) + 1;
        return (x.dims[2 + axis] + 2 * conv.pad[axis] - extent) / conv.stride[axis] + 1;
    }
    bool consistent() const {
        return w.dims[1] == c() && y.dims[0] == n() && y.dims[1] == k() && y.dims[2] == out(0) && y.dims[3] == out(1) && out(0) > 0 &&
               out(1) > 0;
    }
    // The input position tap (r, s) of output (oh, ow) reads; false in the padding.
    bool tap(int oh, int ow, int r, int s, int& ih, int& iw) const {
        if (conv.mode == CONVOLUTION) r = w.dims[2] - 1 - r, s = w.dims[3] - 1 - s;
        ih = oh * conv.stride[0] - conv.pad[0] + r * conv.dilation[0];
        iw = ow * conv.stride[1] - conv.pad[1] + s * conv.dilation[1];
        return ih >= 0 && ih < x.dims[2] && iw >= 0 && iw < x.dims[3];
    }
    size_t xi(int n, int c, int h, int w_) const {
        return (size_t)n * x.strides[0] + (size_t)c * x.strides[1] + (size_t)h * x.strides[2] + (size_t)w_ * x.strides[3];
    }
    size_t yi(int n, int k, int h, int w_) const {
        return (size_t)n * y.strides[0] + (size_t)k * y.strides[1] + (size_t)h * y.strides[2] + (size_t)w_ * y.strides[3];
    }
    size_t wi(int k, int c, int r, int s) const { return (((size_t)k * w.dims[1] + c) * w.dims[2] + r) * w.dims[3] + s; }
    size_t patch() const { return (size_t)c() * w.dims[2] * w.dims[3]; }
    size_t area() const { return (size_t)out(0) * out(1); }
    size_t filter_len() const { return (size_t)k() * patch(); }
};

// Elements a strided tensor spans: one past its largest offset.
size_t span(const StandinTensor& t) {
    size_t last = 0;
    for (int i = 0; i < 4; ++i) {
        if (t.dims[i] == 0) return 0;
        last += (size_t)(t.dims[i] - 1) * t.strides[i];
    }
    return last + 1;
}

bool in_bounds(const void* p, size_t elems, const char* what) {
    return elems == 0 || kappa_standin_in_bounds(p, elems * sizeof(float), what);
}

// The three directions: which algorithms the heuristics report, and which
// of them use a workspace (of how many floats, for a shape).
enum Direction { FORWARD, DATA, FILTER };
struct Ranked {
    int with_workspace, without, unsupported;
};
constexpr Ranked RANKED[3] = {
    {2, 0, 4},  // forward: GEMM, IMPLICIT_GEMM; FFT not supported
    {1, 0, 2},  // backward data: ALGO_1, ALGO_0; FFT not supported
    {1, 0, 2},  // backward filter: ALGO_1, ALGO_0; FFT not supported
};

size_t workspace_floats(Direction d, const Shape& s) {
    switch (d) {
        case FORWARD: return s.patch() * s.area();  // one image's unfolded patches
        case DATA: return (size_t)s.c() * s.x.dims[2] * s.x.dims[3];  // one image's gradient
        case FILTER: return s.filter_len();  // the filter gradient's sum
    }
    return 0;
}

// The variant KAPPA_STANDIN_CUDNN_FAIL selects makes `rank` (0: first) fail.
bool made_to_fail(int rank) {
    const char* v = std::getenv("KAPPA_STANDIN_CUDNN_FAIL");
    return v && ((std::strcmp(v, "first") == 0 && rank == 0) || std::strcmp(v, "all") == 0);
}

// The `_v7` heuristics of direction `d` for input x, filter w and output y.
cudnnStatus_t heuristics(Direction d, cudnnHandle_t h, const StandinTensor* x, const StandinFilter* w, const StandinConv* conv,
                         const StandinTensor* y, int requested, int* returned, AlgoPerf* perf, const char* what) {
    if (!h || !x || !w || !conv || !y) return refuse(BAD_PARAM, what, "a null handle or descriptor");
    if (!returned || !perf || requested < 1) return refuse(BAD_PARAM, what, "no room for results");
    const Shape s{*x, *w, *conv, *y};
    if (!s.consistent()) return refuse(BAD_PARAM, what, "the tensor, filter and convolution descriptors disagree");
    const Ranked r = RANKED[d];
    const AlgoPerf all[3] = {
        {r.with_workspace, SUCCESS, 1.0f, workspace_floats(d, s) * sizeof(float), 1, 3, {}},
        {r.without, SUCCESS, 2.0f, 0, 1, 3, {}},
        {r.unsupported, NOT_SUPPORTED, -1.0f, 0, 1, 3, {}},
    };
    *returned = requested < 3 ? requested : 3;
    for (int i = 0; i < *returned; ++i) perf[i] = all[i];
    return SUCCESS;
}

// Checks a run's algorithm and workspace.
cudnnStatus_t admit(Direction d, const Shape& s, int algo, const void* ws, size_t ws_bytes, const char* what) {
    if (!s.consistent()) return refuse(BAD_PARAM, what, "the tensor, filter and convolution descriptors disagree");
    const Ranked r = RANKED[d];
    if (algo != r.with_workspace && algo != r.without) return refuse(NOT_SUPPORTED, what, "an algorithm the heuristics did not offer");
    if (made_to_fail(algo == r.with_workspace ? 0 : 1)) return refuse(EXECUTION_FAILED, what, "failed, as KAPPA_STANDIN_CUDNN_FAIL asks");
    const size_t need = algo == r.with_workspace ? workspace_floats(d, s) * sizeof(float) : 0;
    if (ws_bytes < need) return refuse(BAD_PARAM, what, "the workspace is smaller than the algorithm needs");
    if (need > 0 && !kappa_standin_in_bounds(ws, ws_bytes, what)) return EXECUTION_FAILED;
    return SUCCESS;
}

// One convolution call after its null checks: the algorithm, workspace and
// operands (pointer, elements) checked, then `body` run with the workspace
// when the algorithm uses one (else null), then the canaries.
template <class Body>
cudnnStatus_t convolve(Direction d, const Shape& s, int algo, void* ws, size_t ws_bytes, const char* what,
                       std::initializer_list<std::pair<const float*, size_t>> operands, Body body) {
    if (const cudnnStatus_t st = admit(d, s, algo, ws, ws_bytes, what)) return st;
    for (const auto& [p, elems] : operands)
        if (!in_bounds(p, elems, what)) return EXECUTION_FAILED;
    body(algo == RANKED[d].with_workspace ? static_cast<float*>(ws) : nullptr);
    return kappa_standin_canaries_intact(what) ? SUCCESS : EXECUTION_FAILED;
}

// out = alpha·sum + beta·out, reading out only when beta ≠ 0.
void blend(float& out, double sum, float alpha, float beta) {
    const float v = (float)sum;
    out = beta == 0.0f ? alpha * v : alpha * v + beta * out;
}

// y = alpha·conv(x, w) + beta·y. With a workspace, each image's patches are
// unfolded into it first (patch × area, row p = (c, r, s)), as GEMM does.
void forward(const Shape& s, const float* x, const float* w, float* y, float alpha, float beta, float* cols) {
    const int oh_n = s.out(0), ow_n = s.out(1), R = s.w.dims[2], S = s.w.dims[3];
    for (int n = 0; n < s.n(); ++n) {
        auto input = [&](int c, int r, int q, int oh, int ow) {
            int ih, iw;
            return s.tap(oh, ow, r, q, ih, iw) ? x[s.xi(n, c, ih, iw)] : 0.0f;
        };
        if (cols)
            for (int c = 0; c < s.c(); ++c)
                for (int r = 0; r < R; ++r)
                    for (int q = 0; q < S; ++q)
                        for (int oh = 0; oh < oh_n; ++oh)
                            for (int ow = 0; ow < ow_n; ++ow)
                                cols[((size_t)(c * R + r) * S + q) * s.area() + (size_t)oh * ow_n + ow] = input(c, r, q, oh, ow);
        for (int k = 0; k < s.k(); ++k)
            for (int oh = 0; oh < oh_n; ++oh)
                for (int ow = 0; ow < ow_n; ++ow) {
                    double sum = 0.0;
                    for (int c = 0; c < s.c(); ++c)
                        for (int r = 0; r < R; ++r)
                            for (int q = 0; q < S; ++q) {
                                const size_t p = (size_t)(c * R + r) * S + q;
                                const float v = cols ? cols[p * s.area() + (size_t)oh * ow_n + ow] : input(c, r, q, oh, ow);
                                sum += (double)v * w[s.wi(k, c, r, q)];
                            }
                    blend(y[s.yi(n, k, oh, ow)], sum, alpha, beta);
                }
    }
}

// dx = alpha·convᵀ(dy, w) + beta·dx: each output gradient scattered back
// onto the inputs its taps read, one image at a time (into the workspace,
// in f32, when given; else in f64).
void backward_data(const Shape& s, const float* w, const float* dy, float* dx, float alpha, float beta, float* ws) {
    const int H = s.x.dims[2], W = s.x.dims[3], R = s.w.dims[2], S = s.w.dims[3];
    std::vector<double> acc((size_t)s.c() * H * W);
    for (int n = 0; n < s.n(); ++n) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int k = 0; k < s.k(); ++k)
            for (int oh = 0; oh < s.out(0); ++oh)
                for (int ow = 0; ow < s.out(1); ++ow) {
                    const double g = dy[s.yi(n, k, oh, ow)];
                    for (int c = 0; c < s.c(); ++c)
                        for (int r = 0; r < R; ++r)
                            for (int q = 0; q < S; ++q) {
                                int ih, iw;
                                if (s.tap(oh, ow, r, q, ih, iw)) acc[((size_t)c * H + ih) * W + iw] += g * w[s.wi(k, c, r, q)];
                            }
                }
        if (ws)  // staged through the workspace, as a real algorithm would use it
            for (size_t i = 0; i < acc.size(); ++i) ws[i] = (float)acc[i];
        for (int c = 0; c < s.c(); ++c)
            for (int h = 0; h < H; ++h)
                for (int x = 0; x < W; ++x) {
                    const size_t i = ((size_t)c * H + h) * W + x;
                    blend(dx[s.xi(n, c, h, x)], ws ? (double)ws[i] : acc[i], alpha, beta);
                }
    }
}

// dw = alpha·Σ_images dy ⋆ x + beta·dw (staged through the workspace when given).
void backward_filter(const Shape& s, const float* x, const float* dy, float* dw, float alpha, float beta, float* ws) {
    const int R = s.w.dims[2], S = s.w.dims[3];
    for (int k = 0; k < s.k(); ++k)
        for (int c = 0; c < s.c(); ++c)
            for (int r = 0; r < R; ++r)
                for (int q = 0; q < S; ++q) {
                    double sum = 0.0;
                    for (int n = 0; n < s.n(); ++n)
                        for (int oh = 0; oh < s.out(0); ++oh)
                            for (int ow = 0; ow < s.out(1); ++ow) {
                                int ih, iw;
                                if (s.tap(oh, ow, r, q, ih, iw)) sum += (double)dy[s.yi(n, k, oh, ow)] * x[s.xi(n, c, ih, iw)];
                            }
                    const size_t i = s.wi(k, c, r, q);
                    if (ws) ws[i] = (float)sum;
                    blend(dw[i], ws ? (double)ws[i] : sum, alpha, beta);
                }
}

bool valid_dims(const int* dims, int count) {
    for (int i = 0; i < count; ++i)
        if (dims[i] <= 0) return false;
    return true;
}

// Create and destroy calls of a descriptor type.
template <class T>
cudnnStatus_t create(T** out) {
    if (!out) return BAD_PARAM;
    *out = new T;
    return SUCCESS;
}
template <class T>
cudnnStatus_t destroy(T* d) {
    delete d;
    return SUCCESS;
}

}  // namespace

extern "C" {

size_t cudnnGetVersion() {
    const char* v = std::getenv("KAPPA_STANDIN_CUDNN_VERSION");
    return v ? std::strtoul(v, nullptr, 10) : VERSION;
}

KAPPA_STANDIN_HANDLE_CALLS(cudnnStatus_t, cudnnHandle_t, cudnnCreate, cudnnDestroy, cudnnSetStream, SUCCESS, BAD_PARAM)

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) { return create(d); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { return destroy(d); }
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) { return create(d); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { return destroy(d); }
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) { return create(d); }
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) { return destroy(d); }

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, int type, int n, int c, int h, int w, int ns, int cs, int hs,
                                           int ws) {
    const char* what = "cudnnSetTensor4dDescriptorEx";
    if (type != DATA_FLOAT) return refuse(NOT_SUPPORTED, what, "only f32 tensors are stood in for");
    const int dims[4] = {n, c, h, w}, strides[4] = {ns, cs, hs, ws};
    if (!d || !valid_dims(dims, 4) || !valid_dims(strides, 4)) return refuse(BAD_PARAM, what, "dims and strides must be positive");
    std::memcpy(d->dims, dims, sizeof dims);
    std::memcpy(d->strides, strides, sizeof strides);
    return SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, int type, int format, int k, int c, int h, int w) {
    const char* what = "cudnnSetFilter4dDescriptor";
    if (type != DATA_FLOAT || format != FORMAT_NCHW) return refuse(NOT_SUPPORTED, what, "only f32 NCHW filters are stood in for");
    const int dims[4] = {k, c, h, w};
    if (!d || !valid_dims(dims, 4)) return refuse(BAD_PARAM, what, "dims must be positive");
    std::memcpy(d->dims, dims, sizeof dims);
    return SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v, int dil_h, int dil_w,
                                              int mode, int compute) {
    const char* what = "cudnnSetConvolution2dDescriptor";
    if (compute != DATA_FLOAT) return refuse(NOT_SUPPORTED, what, "only f32 compute is stood in for");
    if (!d || pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dil_h < 1 || dil_w < 1 || (mode != CONVOLUTION && mode != CROSS_CORRELATION))
        return refuse(BAD_PARAM, what, "pads ≥ 0, strides and dilations ≥ 1, and a known mode are required");
    *d = StandinConv{{pad_h, pad_w}, {u, v}, {dil_h, dil_w}, mode, d->math};
    return SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, int math) {
    if (!d || math < 0 || math > 3) return refuse(BAD_PARAM, "cudnnSetConvolutionMathType", "an unknown math type");
    d->math = math;
    return SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                                                     cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t y, int requested,
                                                     int* returned, AlgoPerf* perf) {
    return heuristics(FORWARD, h, x, w, conv, y, requested, returned, perf, "cudnnGetConvolutionForwardAlgorithm_v7");
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
                                                          cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dx, int requested,
                                                          int* returned, AlgoPerf* perf) {
    return heuristics(DATA, h, dx, w, conv, dy, requested, returned, perf, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
                                                            cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dw,
                                                            int requested, int* returned, AlgoPerf* perf) {
    return heuristics(FILTER, h, x, dw, conv, dy, requested, returned, perf, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const float* alpha, cudnnTensorDescriptor_t xd, const float* x,
                                      cudnnFilterDescriptor_t wd, const float* w, cudnnConvolutionDescriptor_t conv, int algo, void* ws,
                                      size_t ws_bytes, const float* beta, cudnnTensorDescriptor_t yd, float* y) {
    const char* what = "cudnnConvolutionForward";
    if (!h || !alpha || !beta || !xd || !wd || !conv || !yd) return refuse(BAD_PARAM, what, "a null handle, scalar or descriptor");
    const Shape s{*xd, *wd, *conv, *yd};
    return convolve(FORWARD, s, algo, ws, ws_bytes, what, {{x, span(*xd)}, {w, s.filter_len()}, {y, span(*yd)}},
                    [&](float* scratch) { forward(s, x, w, y, *alpha, *beta, scratch); });
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const float* alpha, cudnnFilterDescriptor_t wd, const float* w,
                                           cudnnTensorDescriptor_t dyd, const float* dy, cudnnConvolutionDescriptor_t conv, int algo,
                                           void* ws, size_t ws_bytes, const float* beta, cudnnTensorDescriptor_t dxd, float* dx) {
    const char* what = "cudnnConvolutionBackwardData";
    if (!h || !alpha || !beta || !wd || !dyd || !conv || !dxd) return refuse(BAD_PARAM, what, "a null handle, scalar or descriptor");
    const Shape s{*dxd, *wd, *conv, *dyd};
    return convolve(DATA, s, algo, ws, ws_bytes, what, {{w, s.filter_len()}, {dy, span(*dyd)}, {dx, span(*dxd)}},
                    [&](float* scratch) { backward_data(s, w, dy, dx, *alpha, *beta, scratch); });
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const float* alpha, cudnnTensorDescriptor_t xd, const float* x,
                                             cudnnTensorDescriptor_t dyd, const float* dy, cudnnConvolutionDescriptor_t conv, int algo,
                                             void* ws, size_t ws_bytes, const float* beta, cudnnFilterDescriptor_t dwd, float* dw) {
    const char* what = "cudnnConvolutionBackwardFilter";
    if (!h || !alpha || !beta || !xd || !dyd || !conv || !dwd) return refuse(BAD_PARAM, what, "a null handle, scalar or descriptor");
    const Shape s{*xd, *dwd, *conv, *dyd};
    return convolve(FILTER, s, algo, ws, ws_bytes, what, {{x, span(*xd)}, {dy, span(*dyd)}, {dw, s.filter_len()}},
                    [&](float* scratch) { backward_filter(s, x, dy, dw, *alpha, *beta, scratch); });
}

}  // extern "C"
