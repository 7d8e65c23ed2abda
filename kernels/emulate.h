// Host emulation of the CUDA subset kappa's kernels use, so that g++ compiles
// the very same kernels/*.cu files for the CPU and the tests can compare every
// kernel with its CPU twin without a GPU (tests/emulated_kernels.rs).
//
// Model: a launch runs its blocks one at a time; each CUDA thread of a block
// is one OS thread. `__syncthreads` is a barrier over the block, warp shuffles
// exchange through per-warp slots between two warp barriers, atomics go
// through std::atomic_ref. `__shared__` variables become function statics:
// one copy, reused by each block in turn, never initialised by the kernel, as
// on the device. Launches are serialised (the statics and launch dimensions
// are process-wide). A kernel that reaches a barrier from divergent code
// deadlocks here, as it may on the device.
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define KAPPA_EMULATE 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace emu {

struct Block {
    explicit Block(unsigned threads) : sync(threads), slots(threads) {
        for (unsigned w = 0; w * 32 < threads; ++w) {
            unsigned size = threads - w * 32 < 32 ? threads - w * 32 : 32;
            warp_sync.push_back(std::make_unique<std::barrier<>>(size));
            warp_size.push_back(size);
        }
    }
    std::barrier<> sync;
    std::vector<std::unique_ptr<std::barrier<>>> warp_sync;
    std::vector<unsigned> warp_size;
    std::vector<uint64_t> slots;  // one shuffle slot per thread
};

inline thread_local dim3 thread_idx, block_idx;
inline thread_local unsigned linear_tid;
inline thread_local Block* block;
inline dim3 block_dim, grid_dim;
inline std::mutex launch_lock;

// Publishes `v` to the warp and returns the value of lane `src(lane)`, or `v`
// itself when that lane does not exist (as __shfl_down_sync does past the end).
template <class T, class F>
T exchange(T v, F src) {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    const unsigned warp = linear_tid / 32, lane = linear_tid % 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    block->slots[linear_tid] = bits;
    block->warp_sync[warp]->arrive_and_wait();
    const unsigned s = src(lane);
    T out = v;
    if (s < block->warp_size[warp]) std::memcpy(&out, &block->slots[warp * 32 + s], sizeof(T));
    block->warp_sync[warp]->arrive_and_wait();  // nobody overwrites a slot before it is read
    return out;
}

}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::block->sync.arrive_and_wait(); }

template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta) {
    return emu::exchange(v, [&](unsigned lane) { return lane + delta; });
}
template <class T>
T __shfl_xor_sync(unsigned, T v, unsigned mask) {
    return emu::exchange(v, [&](unsigned lane) { return lane ^ mask; });
}
template <class T>
T __shfl_sync(unsigned, T v, unsigned src) {
    return emu::exchange(v, [&](unsigned) { return src; });
}

template <class T>
T atomicAdd(T* p, T v) {
    return std::atomic_ref<T>(*p).fetch_add(v);
}
inline unsigned atomicMax(unsigned* p, unsigned v) {
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
inline unsigned atomicOr(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_or(v); }

inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
}
inline int __float_as_int(float f) {
    int v;
    std::memcpy(&v, &f, sizeof v);
    return v;
}
using std::exp;
using std::isfinite;
using std::log;
using std::fabs;
using std::fmax;
using std::sqrt;

// Runs `body(ctx)` once per CUDA thread of a grid×block launch. The body is
// the test's trampoline that calls the kernel with its arguments.
extern "C" void emu_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                           void (*body)(void*), void* ctx) {
    std::lock_guard<std::mutex> guard(emu::launch_lock);
    emu::grid_dim = {gx, gy, gz};
    emu::block_dim = {bx, by, bz};
    const unsigned threads = bx * by * bz;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                emu::Block blk(threads);
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned t = 0; t < threads; ++t)
                    pool.emplace_back([&, t] {
                        emu::thread_idx = {t % bx, (t / bx) % by, t / (bx * by)};
                        emu::block_idx = {x, y, z};
                        emu::linear_tid = t;
                        emu::block = &blk;
                        body(ctx);
                    });
                for (auto& th : pool) th.join();
            }
}
