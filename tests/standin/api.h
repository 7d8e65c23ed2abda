// The slice of the CUDA driver, cuBLAS and cuSOLVER C APIs the stand-in
// implements: handles, enum values and the calls the libraries share. The
// values are those of the headers cudarc 0.19 binds (src/driver/sys,
// src/cublas/sys, src/cusolver/sys); only the ones kappa reaches are named.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct StandinContext* CUcontext;
typedef struct StandinStream* CUstream;
typedef struct StandinEvent* CUevent;
typedef struct StandinModule* CUmodule;
typedef struct StandinFunction* CUfunction;
typedef struct StandinPool* CUmemoryPool;

enum : CUresult {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_PTX = 218,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

// Allocation bookkeeping the three libraries share (exported by libcuda).
extern "C" {
// Whether [ptr, ptr + bytes) lies inside one live allocation; if not, says so
// on stderr, naming `what` (a call or a kernel), and returns false.
bool kappa_standin_in_bounds(const void* ptr, size_t bytes, const char* what);
// Checks every live allocation's canaries after `what` wrote device memory;
// a broken one is reported on stderr, naming `what`, and makes the context
// fail (CUDA_ERROR_ILLEGAL_ADDRESS from then on, as a real fault is sticky).
bool kappa_standin_canaries_intact(const char* what);
}

// The create, destroy and set-stream calls of a library handle that holds no
// state (streams run synchronously, so the stream is not even kept).
#define KAPPA_STANDIN_HANDLE_CALLS(Status, Handle, create, destroy, set_stream, ok, invalid) \
    Status create(Handle* handle) {                                                          \
        *handle = new std::remove_pointer_t<Handle>;                                         \
        return ok;                                                                           \
    }                                                                                        \
    Status destroy(Handle handle) {                                                          \
        delete handle;                                                                       \
        return ok;                                                                           \
    }                                                                                        \
    Status set_stream(Handle handle, CUstream) { return handle ? ok : invalid; }
