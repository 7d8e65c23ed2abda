// Shared by every kernel file: the counter RNG of src/rng.rs, warp and block
// reductions, and grid-stride index helpers. Compiled by nvcc for the device
// and by g++ (through emulate.h) for the host-emulation tests.
#pragma once

typedef unsigned long long u64;

// src/rng.rs `mix64`: SplitMix64's finaliser.
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// src/rng.rs `hash3`: the index-th draw of stream `stream` under `seed`.
__device__ __forceinline__ u64 hash3(u64 seed, u64 stream, u64 index) {
    return mix64(mix64(seed ^ mix64(stream + 0x9e3779b97f4a7c15ULL)) ^ index);
}

// src/rng.rs `unit_f64`: a uniform in [0, 1) from the top 53 bits (exact in double).
__device__ __forceinline__ double unit_f64(u64 bits) {
    return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}

// The first element and stride of a 1-D grid-stride loop, in size_t so
// buffers past 2^31 elements index correctly.
__device__ __forceinline__ size_t grid_start() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_stride() {
    return (size_t)gridDim.x * blockDim.x;
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over a 1-D block whose size is a multiple of 32; the result is valid in
// thread 0. Every thread of the block must call it (it synchronises).
template <class T>
__device__ T block_sum(T v) {
    __shared__ T partial[32];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    __syncthreads();  // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const unsigned warps = blockDim.x / 32;
    T total = (T)0;
    if (warp == 0) {
        total = lane < warps ? partial[lane] : (T)0;
        total = warp_sum(total);
    }
    return total;
}
