// CPU twin: src/backend/cpu/update.rs. Optimiser updates fused into one pass
// over each parameter, with the CPU's f32/f64 rounding points.
#include "common.cuh"

// SGD with momentum and L2 weight decay (PyTorch's convention); v is left
// untouched when momentum is 0, as on the CPU.
extern "C" __global__ void sgd_step(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v, size_t n, float lr, float mu,
                                    float wd, int has_momentum, int nesterov) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        const float d = g[i] + wd * p[i];
        float step = d;
        if (has_momentum) {
            const float vel = mu * v[i] + d;
            v[i] = vel;
            step = nesterov ? d + mu * vel : vel;
        }
        p[i] -= lr * step;
    }
}

// Adam with L2 weight decay added to the gradient; c1, c2 are the bias
// corrections 1 − β^t computed on the host in f64.
extern "C" __global__ void adam_step(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v, size_t n,
                                     float b1, float b2, float one_b1, float one_b2, float wd, double lr, double eps, double c1, double c2) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        const float d = g[i] + wd * p[i];
        const float mi = b1 * m[i] + one_b1 * d;
        const float vi = b2 * v[i] + one_b2 * d * d;
        m[i] = mi;
        v[i] = vi;
        const double mhat = (double)mi / c1, vhat = (double)vi / c2;
        p[i] -= (float)(lr * mhat / (sqrt(vhat) + eps));
    }
}
