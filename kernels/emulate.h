// Host emulation of the CUDA subset kappa's kernels use, so that g++ compiles
// the very same kernels/*.cu files for the CPU and the tests can compare every
// kernel with its CPU twin without a GPU (tests/emulated_kernels.rs), and the
// CPU stand-in for the driver (tests/standin) can run kappa's launches.
//
// Model: a launch runs its blocks one at a time on the calling OS thread; each
// CUDA thread of a block is a fiber with its own stack, resumed in turn by a
// round-robin scheduler (a hand-written x86-64 stack switch: ucontext's
// swapcontext makes a system call per switch, a hundred times slower). `__syncthreads` and the warp barriers
// around a shuffle are counting barriers: a fiber that arrives yields until
// the last one opens the barrier. Creating a fiber costs no system thread, so
// launches over a whole tensor stay cheap. Atomics need no care (one OS
// thread) but keep their std::atomic_ref form. `__shared__` variables become
// function statics: one copy, reused by each block in turn, never initialised
// by the kernel, as on the device. Launches are serialised (the statics and
// launch dimensions are process-wide). A kernel that reaches a barrier from
// divergent code would deadlock on the device; here the scheduler sees a
// round with no progress and aborts, naming the launch.
#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <sys/mman.h>
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

// Counts arrivals and forward steps; a scheduler round without any means
// every unfinished fiber waits on a barrier that will never open.
inline thread_local unsigned long progress;

#if !defined(__x86_64__)
#error "kernels/emulate.h switches fiber stacks with x86-64 code only"
#endif
// switch_stack(&save, next): saves the callee-saved registers and the SSE/x87
// control words on this stack, stores its pointer in `save`, and resumes the
// stack `next` where it last called switch_stack (or at its entry, see
// fiber_stack).
__attribute__((naked, noinline)) static void switch_stack(void** /*save*/, void* /*next*/) {
    asm volatile(
        "pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
        "subq $8, %rsp\n stmxcsr (%rsp)\n fnstcw 4(%rsp)\n"
        "movq %rsp, (%rdi)\n movq %rsi, %rsp\n"
        "ldmxcsr (%rsp)\n fldcw 4(%rsp)\n addq $8, %rsp\n"
        "popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n"
        "ret\n");
}

// A fresh stack whose first switch_stack "returns" into entry(), with the
// alignment of a function just called (rsp ≡ 8 mod 16) and this thread's
// control words. entry() must never return.
inline void* fiber_stack(char* base, size_t size, void (*entry)()) {
    auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(base + size) & ~uintptr_t(15));
    *--top = 0;  // entry's (absent) return address
    *--top = reinterpret_cast<uint64_t>(entry);
    for (int r = 0; r < 6; ++r) *--top = 0;  // rbp, rbx, r12–r15
    uint32_t words[2];
    asm volatile("stmxcsr %0\n fnstcw %1" : "=m"(words[0]), "=m"(words[1]));
    std::memcpy(--top, words, sizeof words);
    return top;
}

inline thread_local void* scheduler;  // the scheduler's saved stack pointer
inline thread_local void** running;   // where the running fiber saves its own

// Hands the OS thread back to the scheduler until it resumes this fiber.
inline void yield() { switch_stack(running, scheduler); }

// A barrier over `size` fibers: the last to arrive opens it (a new generation)
// and runs on; the others yield until they see the generation change.
struct Barrier {
    explicit Barrier(unsigned n) : size(n) {}
    unsigned size, arrived = 0;
    unsigned long generation = 0;
    void arrive_and_wait() {
        ++progress;
        const unsigned long mine = generation;
        if (++arrived == size) {
            arrived = 0;
            ++generation;
            return;
        }
        while (generation == mine) yield();
    }
};

struct Block {
    explicit Block(unsigned threads) : sync(threads), slots(threads) {
        for (unsigned w = 0; w * 32 < threads; ++w) {
            unsigned size = threads - w * 32 < 32 ? threads - w * 32 : 32;
            warp_sync.emplace_back(size);
            warp_size.push_back(size);
        }
    }
    Barrier sync;
    std::vector<Barrier> warp_sync;
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
    block->warp_sync[warp].arrive_and_wait();
    const unsigned s = src(lane);
    T out = v;
    if (s < block->warp_size[warp]) std::memcpy(&out, &block->slots[warp * 32 + s], sizeof(T));
    block->warp_sync[warp].arrive_and_wait();  // nobody overwrites a slot before it is read
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

namespace emu {

// Stack of each fiber: kernels keep a few scalars, the tests' trampolines a
// few Rust frames. Mapped once per launch thread, touched only as used.
constexpr size_t STACK = 256 << 10;

struct Fiber {
    void* sp;
    bool done;
};

inline thread_local void (*fiber_body)(void*);
inline thread_local void* fiber_ctx;
inline thread_local Fiber* fiber_self;

inline void fiber_main() {
    fiber_body(fiber_ctx);
    fiber_self->done = true;
    ++progress;
    yield();  // never resumed
}

// One block: every fiber runs until it finishes or waits at a barrier, round
// after round, until all have finished.
inline void run_block(unsigned threads, char* stacks, dim3 blk, void (*body)(void*), void* ctx) {
    Block b(threads);
    std::vector<Fiber> fibers(threads);
    fiber_body = body;
    fiber_ctx = ctx;
    for (unsigned t = 0; t < threads; ++t) fibers[t] = {fiber_stack(stacks + (size_t)t * STACK, STACK, fiber_main), false};
    unsigned left = threads;
    while (left > 0) {
        const unsigned long before = progress;
        for (unsigned t = 0; t < threads; ++t) {
            Fiber& f = fibers[t];
            if (f.done) continue;
            thread_idx = {t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
            block_idx = blk;
            linear_tid = t;
            block = &b;
            fiber_self = &f;
            running = &f.sp;
            switch_stack(&scheduler, f.sp);
            if (f.done) --left;
        }
        if (left > 0 && progress == before) {
            std::fprintf(stderr, "emulated launch: block (%u, %u, %u) deadlocked: %u of %u threads wait at a barrier the others never reach\n",
                         blk.x, blk.y, blk.z, left, threads);
            std::abort();
        }
    }
}

}  // namespace emu

// Runs `body(ctx)` once per CUDA thread of a grid×block launch. The body is
// the test's trampoline that calls the kernel with its arguments.
extern "C" void emu_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                           void (*body)(void*), void* ctx) {
    std::lock_guard<std::mutex> guard(emu::launch_lock);
    emu::grid_dim = {gx, gy, gz};
    emu::block_dim = {bx, by, bz};
    const unsigned threads = bx * by * bz;
    static thread_local char* stacks = nullptr;
    static thread_local unsigned mapped = 0;
    if (threads > mapped) {
        if (stacks) munmap(stacks, (size_t)mapped * emu::STACK);
        void* m = mmap(nullptr, (size_t)threads * emu::STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            std::fprintf(stderr, "emulated launch: no memory for %u fiber stacks\n", threads);
            std::abort();
        }
        stacks = static_cast<char*>(m);
        mapped = threads;
    }
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) emu::run_block(threads, stacks, {x, y, z}, body, ctx);
}
