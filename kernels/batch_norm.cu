// Twins: src/backend/cpu/batch_norm.rs (CPU), src/backend/cuda/batch_norm.rs
// (launches). Batch norm's per-channel coefficients, computed in f64 from the
// f64 sums of channel.cu's channel_dots_*; its channel_affine then applies
// them to every element in f32.
#include "common.cuh"

// Training-mode coefficients from the sums over m elements per channel:
// mean, biased variance, 1/σ, and the affine map y = scale·x + shift.
extern "C" __global__ void batch_norm_train_coeffs(const double* __restrict__ sum, const double* __restrict__ sum_sq,
                                                   const float* __restrict__ gamma, const float* __restrict__ beta, size_t channels,
                                                   double m, double eps, float* __restrict__ mean, float* __restrict__ var,
                                                   float* __restrict__ inv_std, float* __restrict__ scale, float* __restrict__ shift) {
    for (size_t c = grid_start(); c < channels; c += grid_stride()) {
        const double mu = sum[c] / m;
        const double v = fmax(sum_sq[c] / m - mu * mu, 0.0);
        const double is = 1.0 / sqrt(v + eps);
        const double a = (double)gamma[c] * is;
        mean[c] = (float)mu;
        var[c] = (float)v;
        inv_std[c] = (float)is;
        scale[c] = (float)a;
        shift[c] = (float)((double)beta[c] - mu * a);
    }
}

extern "C" __global__ void batch_norm_eval_coeffs(const float* __restrict__ gamma, const float* __restrict__ beta, const float* __restrict__ mean,
                                                  const float* __restrict__ var, size_t channels, double eps, float* __restrict__ scale,
                                                  float* __restrict__ shift) {
    for (size_t c = grid_start(); c < channels; c += grid_stride()) {
        const double a = (double)gamma[c] / sqrt((double)var[c] + eps);
        scale[c] = (float)a;
        shift[c] = (float)((double)beta[c] - (double)mean[c] * a);
    }
}

// Backward coefficients: dβ = Σdy, dγ = σ⁻¹(Σdy·x − μΣdy), and
// dx = dy_scale·dy + x_scale·x + shift with k = γσ⁻¹/m.
extern "C" __global__ void batch_norm_backward_coeffs(const double* __restrict__ sum_dy, const double* __restrict__ sum_dy_x,
                                                      const float* __restrict__ gamma, const float* __restrict__ mean,
                                                      const float* __restrict__ inv_std, size_t channels, double m,
                                                      float* __restrict__ dgamma, float* __restrict__ dbeta, float* __restrict__ dy_scale,
                                                      float* __restrict__ x_scale, float* __restrict__ shift) {
    for (size_t c = grid_start(); c < channels; c += grid_stride()) {
        const double mu = mean[c], is = inv_std[c];
        const double dg = is * (sum_dy_x[c] - mu * sum_dy[c]);
        const double k = (double)gamma[c] * is / m;
        dgamma[c] = (float)dg;
        dbeta[c] = (float)sum_dy[c];
        dy_scale[c] = (float)(k * m);
        x_scale[c] = (float)(-k * dg * is);
        shift[c] = (float)(k * (dg * is * mu - sum_dy[c]));
    }
}
