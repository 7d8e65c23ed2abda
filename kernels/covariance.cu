// CPU twin: src/backend/cpu/covariance.rs (`gram_lower`, `count_positive`).
// A conv layer's patch Σx does not come here: the CUDA backend unfolds the
// patches (im2col.cu) and hands them to cuBLAS SGEMM (src/backend/cuda/conv.rs).
//
// acc[i][j] += alpha·Σ_r X[r][i]·X[r][j] for j ≤ i (row-major lower triangle,
// the Backend trait's convention), accumulated in f32 in place, for a
// row-major rows×cols X (a dense layer's Σx and Σ∇h). One block computes a
// 64×64 output tile of the lower triangle: 16×16 threads, 4×4 outputs each,
// X staged through shared memory 16 rows at a time. blockIdx.y splits the
// rows; with more than one split the tiles meet through atomics.
#include "common.cuh"

#define GRAM_TILE 64
#define GRAM_K 16
#define GRAM_THREADS 16  // per side: 16×16 threads, (64/16)² outputs each

// The lower-triangle tile pair (bi, bj), bj ≤ bi, of linear tile index t.
__device__ __forceinline__ void tile_pair(unsigned t, unsigned* bi, unsigned* bj) {
    unsigned i = (unsigned)((sqrt(8.0 * t + 1.0) - 1.0) / 2.0);
    while (i * (i + 1) / 2 > t) --i;
    while ((i + 1) * (i + 2) / 2 <= t) ++i;
    *bi = i;
    *bj = t - i * (i + 1) / 2;
}

extern "C" __global__ void gram_lower_rows(float* __restrict__ acc, const float* __restrict__ x, size_t rows, size_t cols, float alpha) {
    __shared__ float xi[GRAM_K][GRAM_TILE + 1];
    __shared__ float xj[GRAM_K][GRAM_TILE + 1];
    unsigned bi, bj;
    tile_pair(blockIdx.x, &bi, &bj);
    const size_t i0 = (size_t)bi * GRAM_TILE, j0 = (size_t)bj * GRAM_TILE;
    const unsigned tx = threadIdx.x, ty = threadIdx.y, tid = ty * GRAM_THREADS + tx;
    float sum[4][4] = {};
    for (size_t r0 = (size_t)blockIdx.y * GRAM_K; r0 < rows; r0 += (size_t)gridDim.y * GRAM_K) {
        for (unsigned e = tid; e < GRAM_K * GRAM_TILE; e += GRAM_THREADS * GRAM_THREADS) {
            // Consecutive threads take consecutive columns of one row, so loads coalesce.
            const unsigned k = e / GRAM_TILE, c = e % GRAM_TILE;
            const size_t r = r0 + k;
            xi[k][c] = r < rows && i0 + c < cols ? x[r * cols + i0 + c] : 0.0f;
            xj[k][c] = r < rows && j0 + c < cols ? x[r * cols + j0 + c] : 0.0f;
        }
        __syncthreads();
        for (unsigned k = 0; k < GRAM_K; ++k) {
            float a[4], b[4];
            for (unsigned q = 0; q < 4; ++q) {
                a[q] = xi[k][ty + GRAM_THREADS * q];
                b[q] = xj[k][tx + GRAM_THREADS * q];
            }
            for (unsigned p = 0; p < 4; ++p)
                for (unsigned q = 0; q < 4; ++q) sum[p][q] += a[p] * b[q];
        }
        __syncthreads();
    }
    for (unsigned p = 0; p < 4; ++p)
        for (unsigned q = 0; q < 4; ++q) {
            const size_t i = i0 + ty + GRAM_THREADS * p, j = j0 + tx + GRAM_THREADS * q;
            if (i < cols && j <= i) {
                if (gridDim.y == 1)
                    acc[i * cols + j] += alpha * sum[p][q];
                else
                    atomicAdd(&acc[i * cols + j], alpha * sum[p][q]);
            }
        }
}

// counts[c] += #{r : x[r][c] > 0} for a row-major rows×cols matrix; block
// (32, 8) as channel_dots_rows: 32 adjacent columns per block, rows split
// over threadIdx.y and blockIdx.y. counts must be zeroed first.
extern "C" __global__ void count_positive(const float* __restrict__ x, size_t rows, size_t cols, unsigned* __restrict__ counts) {
    __shared__ unsigned part[8][32];
    const size_t c = (size_t)blockIdx.x * 32 + threadIdx.x;
    unsigned n = 0;
    if (c < cols)
        for (size_t r = (size_t)blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += (size_t)gridDim.y * blockDim.y) n += x[r * cols + c] > 0.0f;
    part[threadIdx.y][threadIdx.x] = n;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        for (unsigned k = 1; k < blockDim.y; ++k) n += part[k][threadIdx.x];
        atomicAdd(&counts[c], n);
    }
}
