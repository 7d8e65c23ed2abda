// CPU twin: src/backend/cpu/softmax.rs (softmax cross-entropy forward and
// backward, and `sample_labels`).
#include "common.cuh"

// One warp per row (blockDim.x == 32, blockDim.y rows per block): max-shifted
// softmax in f64, probabilities rounded as the CPU rounds them (e to f32
// first, then divided by the f64 total of the unrounded e), and the row's negative
// log-likelihood of its label in nll[row].
extern "C" __global__ void softmax_xent_rows(const float* __restrict__ logits, const unsigned* __restrict__ labels, size_t rows,
                                             size_t classes, float* __restrict__ probs, double* __restrict__ nll) {
    const size_t row = (size_t)blockIdx.x * blockDim.y + threadIdx.y;
    // Whole warps leave together, so the shuffles below see full warps.
    if (row >= rows) return;
    const float* z = logits + row * classes;
    float* p = probs + row * classes;
    double max = -INFINITY;
    for (size_t c = threadIdx.x; c < classes; c += 32) max = fmax(max, (double)z[c]);
    for (int offset = 16; offset > 0; offset >>= 1) max = fmax(max, __shfl_xor_sync(0xffffffffu, max, offset));
    double total = 0.0;
    for (size_t c = threadIdx.x; c < classes; c += 32) {
        const double e = exp((double)z[c] - max);
        p[c] = (float)e;
        total += e;
    }
    for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_xor_sync(0xffffffffu, total, offset);
    for (size_t c = threadIdx.x; c < classes; c += 32) p[c] = (float)((double)p[c] / total);
    if (threadIdx.x == 0) nll[row] = max + log(total) - (double)z[labels[row]];
}

// scale·(softmax − onehot(labels)).
extern "C" __global__ void softmax_xent_backward(const float* __restrict__ probs, const unsigned* __restrict__ labels, size_t n,
                                                 size_t classes, float scale, float* __restrict__ grad) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        const float g = probs[i] * scale;
        grad[i] = i % classes == labels[i / classes] ? g - scale : g;
    }
}

// One thread per row of logits: a class drawn from the row's softmax by
// inverse CDF of the uniform hash3(seed, stream, row), with the CPU's f64
// weights exp(z − max) summed in the CPU's order, so the class is the CPU's
// (bit for bit wherever exp rounds as the host's libm does).
extern "C" __global__ void sample_labels(const float* __restrict__ logits, size_t rows, size_t classes, u64 seed, u64 stream,
                                         unsigned* __restrict__ out) {
    for (size_t row = grid_start(); row < rows; row += grid_stride()) {
        const float* z = logits + row * classes;
        double max = -INFINITY;
        for (size_t c = 0; c < classes; ++c) max = fmax(max, (double)z[c]);
        double total = 0.0;
        for (size_t c = 0; c < classes; ++c) total += exp((double)z[c] - max);
        const double target = unit_f64(hash3(seed, stream, (u64)row)) * total;
        // Rounding can leave `target` just above the last partial sum: the last class then.
        size_t pick = classes - 1;
        double cumulative = 0.0;
        for (size_t c = 0; c < classes; ++c) {
            cumulative += exp((double)z[c] - max);
            if (cumulative > target) {
                pick = c;
                break;
            }
        }
        out[row] = (unsigned)pick;
    }
}
