// libcuda.so for tests: the CUDA driver calls kappa reaches through cudarc
// 0.19, answered on the CPU. One device, "kappa CPU stand-in (not a GPU)",
// compute capability 9.0; one primary context; every stream runs each call to
// completion before returning (so events and synchronisation are trivially
// ordered); kernels run on their host-compiled twins (registry.h) under
// kernels/emulate.h; memory is guarded (memory.h). Calls are serialised by
// one lock. A stray access is reported on stderr naming the kernel or call,
// and, like a real device fault, makes every later call on the context fail.
// cudarc resolves each symbol on its first use, so only reached calls exist.

#include "memory.h"
#include "ptx.h"
#include "registry.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

struct StandinContext {};
struct StandinStream {};
struct StandinPool {
    unsigned long long release_threshold = 0;
};
struct StandinEvent {
    std::chrono::steady_clock::time_point at;
};
struct StandinFunction {
    std::string name;
    standin::Twin twin;
};
struct StandinModule {
    std::vector<std::unique_ptr<StandinFunction>> functions;
};

namespace {

constexpr const char* DEVICE_NAME = "kappa CPU stand-in (not a GPU)";
constexpr size_t TOTAL_MEM = 16ull << 30;
// The driver's CUDA version: new enough for PTX from nvcc 13.0.
constexpr int DRIVER_VERSION = 13000;

std::recursive_mutex lock;
standin::Memory memory;
StandinContext primary;
StandinPool pool;
thread_local CUcontext current = nullptr;
bool initialised = false;
CUresult sticky = CUDA_SUCCESS;  // a fault poisons the context, as on a device
const char* running_kernel = nullptr;  // for the fault handler

using Guard = std::lock_guard<std::recursive_mutex>;

struct sigaction previous_segv;

// A kernel touched a guard page (or faulted otherwise): say which, then abort,
// as the launch cannot be unwound. Outside a kernel, the fault is not ours.
void on_fault(int sig, siginfo_t* info, void* uctx) {
    if (!running_kernel) {
        sigaction(SIGSEGV, &previous_segv, nullptr);
        return;  // re-executes the access under the previous handler
    }
    const uintptr_t address = (uintptr_t)info->si_addr;
    if (const auto* a = memory.guarding(address))
        std::fprintf(stderr, "kappa CPU stand-in: kernel %s accessed 0x%lx, outside the %zu-byte allocation at 0x%lx (a guard page)\n",
                     running_kernel, (unsigned long)address, a->second.bytes, (unsigned long)a->first);
    else
        std::fprintf(stderr, "kappa CPU stand-in: kernel %s faulted at 0x%lx, in no allocation\n", running_kernel, (unsigned long)address);
    std::fflush(stderr);
    (void)sig;
    (void)uctx;
    std::abort();
}

void install_fault_handler() {
    static std::vector<char> alt(1 << 16);
    stack_t ss{};
    ss.ss_sp = alt.data();
    ss.ss_size = alt.size();
    sigaltstack(&ss, nullptr);
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

// A write to device memory by `what` has finished: a broken canary faults the context.
CUresult after_write(const char* what) {
    if (!memory.canaries_intact(what)) sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
    return sticky;
}

CUresult copy(void* dst, const void* src, size_t bytes, bool dst_device, bool src_device, const char* what) {
    Guard g(lock);
    if (sticky) return sticky;
    if (bytes == 0) return CUDA_SUCCESS;
    if ((dst_device && !memory.in_bounds(dst, bytes, what)) || (src_device && !memory.in_bounds(src, bytes, what)))
        return CUDA_ERROR_INVALID_VALUE;
    std::memmove(dst, src, bytes);
    return dst_device ? after_write(what) : CUDA_SUCCESS;
}

CUresult set_bytes(CUdeviceptr dst, unsigned char value, size_t n, const char* what) {
    Guard g(lock);
    if (sticky) return sticky;
    if (n == 0) return CUDA_SUCCESS;
    if (!memory.in_bounds((void*)dst, n, what)) return CUDA_ERROR_INVALID_VALUE;
    std::memset((void*)dst, value, n);
    return after_write(what);
}

// The driver's answer for each attribute kappa or cudarc asks about. Clock
// and bus widths are 0 ("unknown"), so no speed peak is derived for a CPU.
bool attribute(int attr, int* value) {
    switch (attr) {
        case 1: *value = 1024; return true;   // MAX_THREADS_PER_BLOCK
        case 10: *value = 32; return true;    // WARP_SIZE
        case 13: *value = 0; return true;     // CLOCK_RATE
        case 16: *value = 1; return true;     // MULTIPROCESSOR_COUNT
        case 36: *value = 0; return true;     // MEMORY_CLOCK_RATE
        case 37: *value = 0; return true;     // GLOBAL_MEMORY_BUS_WIDTH
        case 75: *value = 9; return true;     // COMPUTE_CAPABILITY_MAJOR
        case 76: *value = 0; return true;     // COMPUTE_CAPABILITY_MINOR
        case 115: *value = 1; return true;    // MEMORY_POOLS_SUPPORTED
        default: return false;
    }
}

const char* error_name(CUresult r) {
    switch (r) {
        case CUDA_SUCCESS: return "CUDA_SUCCESS";
        case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
        case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
        case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
        case CUDA_ERROR_INVALID_PTX: return "CUDA_ERROR_INVALID_PTX";
        case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
        case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
        case CUDA_ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
        case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
        default: return nullptr;
    }
}

// The grid and block limits of an sm_90 device.
bool valid_geometry(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    return gx >= 1 && gy >= 1 && gz >= 1 && gx <= 0x7fffffffu && gy <= 65535 && gz <= 65535 && threads >= 1 && threads <= 1024 &&
           bz <= 64;
}

}  // namespace

extern "C" {

bool kappa_standin_in_bounds(const void* ptr, size_t bytes, const char* what) {
    Guard g(lock);
    return memory.in_bounds(ptr, bytes, what);
}

bool kappa_standin_canaries_intact(const char* what) {
    Guard g(lock);
    return after_write(what) == CUDA_SUCCESS;
}

CUresult cuInit(unsigned flags) {
    Guard g(lock);
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (!initialised) install_fault_handler();
    initialised = true;
    return CUDA_SUCCESS;
}

// KAPPA_STANDIN_DRIVER_VERSION=N reports an older (or newer) driver, so the
// tests reach kappa's messages for a driver that cannot run its build.
CUresult cuDriverGetVersion(int* version) {
    const char* v = std::getenv("KAPPA_STANDIN_DRIVER_VERSION");
    *version = v ? std::atoi(v) : DRIVER_VERSION;
    return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult r, const char** name) {
    *name = error_name(r);
    return *name ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult r, const char** text) {
    *text = error_name(r);
    return *text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceGetCount(int* count) {
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    *count = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::snprintf(name, (size_t)len, "%s", DEVICE_NAME);
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = TOTAL_MEM;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int* value, int attr, CUdevice device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (attribute(attr, value)) return CUDA_SUCCESS;
    std::fprintf(stderr, "kappa CPU stand-in: cuDeviceGetAttribute(%d) is not stood in for\n", attr);
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *ctx = &primary;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) { return device == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }

CUresult cuCtxSetCurrent(CUcontext ctx) {
    if (ctx && ctx != &primary) return CUDA_ERROR_INVALID_HANDLE;
    current = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext* ctx) {
    *ctx = current;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize() {
    Guard g(lock);
    return sticky;
}

CUresult cuStreamCreate(CUstream* stream, unsigned) {
    *stream = new StandinStream;
    return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
    delete stream;
    return CUDA_SUCCESS;
}

CUresult cuStreamSynchronize(CUstream) {
    Guard g(lock);
    return sticky;
}

CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return CUDA_SUCCESS; }

CUresult cuEventCreate(CUevent* event, unsigned) {
    *event = new StandinEvent{std::chrono::steady_clock::now()};
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent event) {
    delete event;
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent event, CUstream) {
    event->at = std::chrono::steady_clock::now();
    return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(CUevent) {
    Guard g(lock);
    return sticky;
}

CUresult cuEventQuery(CUevent) { return CUDA_SUCCESS; }

CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
    return CUDA_SUCCESS;
}

CUresult cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) { return cuEventElapsedTime(ms, start, end); }

CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* out, CUdevice device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *out = &pool;
    return CUDA_SUCCESS;
}

// The pool's counters are the allocator's: what is in use and its peak (the
// stand-in keeps nothing reserved beyond what is in use).
CUresult cuMemPoolGetAttribute(CUmemoryPool p, int attr, void* value) {
    Guard g(lock);
    if (p != &pool) return CUDA_ERROR_INVALID_HANDLE;
    auto* v = static_cast<unsigned long long*>(value);
    switch (attr) {
        case 4: *v = pool.release_threshold; return CUDA_SUCCESS;             // RELEASE_THRESHOLD
        case 5: case 7: *v = memory.used; return CUDA_SUCCESS;                // RESERVED / USED_MEM_CURRENT
        case 6: case 8: *v = memory.high; return CUDA_SUCCESS;                // RESERVED / USED_MEM_HIGH
        default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cuMemPoolSetAttribute(CUmemoryPool p, int attr, void* value) {
    Guard g(lock);
    if (p != &pool) return CUDA_ERROR_INVALID_HANDLE;
    const unsigned long long v = *static_cast<unsigned long long*>(value);
    switch (attr) {
        case 4: pool.release_threshold = v; return CUDA_SUCCESS;
        case 6:
        case 8:  // the driver accepts only 0: start a new peak
            if (v != 0) return CUDA_ERROR_INVALID_VALUE;
            memory.high = memory.used;
            return CUDA_SUCCESS;
        default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
    Guard g(lock);
    *total = TOTAL_MEM;
    *free = TOTAL_MEM - memory.used;
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes) {
    Guard g(lock);
    if (sticky) return sticky;
    if (memory.used + bytes > TOTAL_MEM) return CUDA_ERROR_OUT_OF_MEMORY;
    return memory.allocate(ptr, bytes, "cuMemAlloc_v2");
}

CUresult cuMemAllocAsync(CUdeviceptr* ptr, size_t bytes, CUstream) {
    Guard g(lock);
    if (sticky) return sticky;
    if (memory.used + bytes > TOTAL_MEM) return CUDA_ERROR_OUT_OF_MEMORY;
    return memory.allocate(ptr, bytes, "cuMemAllocAsync");
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
    Guard g(lock);
    return memory.release(ptr, "cuMemFree_v2");
}

CUresult cuMemFreeAsync(CUdeviceptr ptr, CUstream) {
    Guard g(lock);
    return memory.release(ptr, "cuMemFreeAsync");
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    return copy((void*)dst, src, n, true, false, "cuMemcpyHtoD_v2");
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    return copy((void*)dst, src, n, true, false, "cuMemcpyHtoDAsync_v2");
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    return copy(dst, (const void*)src, n, false, true, "cuMemcpyDtoH_v2");
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream) {
    return copy(dst, (const void*)src, n, false, true, "cuMemcpyDtoHAsync_v2");
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    return copy((void*)dst, (const void*)src, n, true, true, "cuMemcpyDtoD_v2");
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    return copy((void*)dst, (const void*)src, n, true, true, "cuMemcpyDtoDAsync_v2");
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) { return set_bytes(dst, value, n, "cuMemsetD8_v2"); }
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUstream) {
    return set_bytes(dst, value, n, "cuMemsetD8Async");
}

CUresult cuLaunchHostFunc(CUstream, void (*fn)(void*), void* data) {
    fn(data);
    return CUDA_SUCCESS;
}

// Each `.entry` of the PTX must have a host twin whose C signature has the
// same parameter sizes.
CUresult cuModuleLoadData(CUmodule* module, const void* image) {
    Guard g(lock);
    if (sticky) return sticky;
    std::string error;
    const auto entries = standin::ptx_entries(static_cast<const char*>(image), error);
    const auto& twins = standin::twins(error);
    if (!error.empty()) {
        std::fprintf(stderr, "kappa CPU stand-in: cuModuleLoadData: %s\n", error.c_str());
        return CUDA_ERROR_INVALID_PTX;
    }
    auto loaded = std::make_unique<StandinModule>();
    for (const auto& e : entries) {
        auto it = twins.find(e.name);
        if (it == twins.end()) {
            std::fprintf(stderr, "kappa CPU stand-in: cuModuleLoadData: kernel %s has no host twin in kernels/*.cu\n", e.name.c_str());
            return CUDA_ERROR_INVALID_PTX;
        }
        const standin::Kernel& k = *it->second.kernel;
        bool same = k.params == e.param_sizes.size();
        for (unsigned i = 0; same && i < k.params; ++i) same = k.sizes[i] == e.param_sizes[i];
        if (!same) {
            std::fprintf(stderr, "kappa CPU stand-in: cuModuleLoadData: kernel %s: the PTX's parameters differ from its host twin's\n",
                         e.name.c_str());
            return CUDA_ERROR_INVALID_PTX;
        }
        loaded->functions.push_back(std::make_unique<StandinFunction>(StandinFunction{e.name, it->second}));
    }
    *module = loaded.release();
    return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule module) {
    Guard g(lock);
    delete module;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction* f, CUmodule module, const char* name) {
    Guard g(lock);
    for (auto& fn : module->functions)
        if (fn->name == name) {
            *f = fn.get();
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

// Runs the launch to completion. Pointer arguments must be null or point into
// a live allocation; afterwards every canary must be intact.
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared_bytes,
                        CUstream, void** params, void** extra) {
    Guard g(lock);
    if (sticky) return sticky;
    const char* name = f->name.c_str();
    if (shared_bytes != 0 || extra != nullptr) {
        std::fprintf(stderr, "kappa CPU stand-in: kernel %s: dynamic shared memory and `extra` are not stood in for\n", name);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (!valid_geometry(gx, gy, gz, bx, by, bz)) {
        std::fprintf(stderr, "kappa CPU stand-in: kernel %s: grid (%u, %u, %u) × block (%u, %u, %u) exceeds the device's limits\n", name, gx,
                     gy, gz, bx, by, bz);
        return CUDA_ERROR_INVALID_VALUE;
    }
    const standin::Kernel& k = *f->twin.kernel;
    for (unsigned i = 0; i < k.params; ++i) {
        if (!k.pointer[i]) continue;
        const void* p = *static_cast<void**>(params[i]);
        if (p && !memory.in_bounds(p, 1, name)) {
            std::fprintf(stderr, "kappa CPU stand-in: kernel %s: argument %u is not device memory\n", name, i);
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    running_kernel = name;
    f->twin.launch(gx, gy, gz, bx, by, bz, k.body, params);
    running_kernel = nullptr;
    return after_write(name);
}

}  // extern "C"
