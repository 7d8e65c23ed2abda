// The table each host-compiled kernels/*.cu library exports to the stand-in
// driver: every kernel's name, the sizes of its parameters (checked against
// the PTX the driver is handed), which of them are pointers (checked against
// the live allocations), and a body that unpacks cuLaunchKernel's
// `void** kernelParams` into the kernel's typed arguments. scripts/standin/build
// appends `KAPPA_STANDIN_KERNELS(a, b, …)` to each file, with the names of
// its `extern "C" __global__` functions.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace standin {

constexpr unsigned MAX_PARAMS = 24;

struct Kernel {
    const char* name;
    unsigned params;
    size_t sizes[MAX_PARAMS];
    bool pointer[MAX_PARAMS];
    void (*body)(void* params);  // called once per emulated thread, ctx = kernelParams
};

// kernelParams[i] points at the i-th argument's value, as the driver API has it.
template <class... A, size_t... I>
void call(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<A>*>(params[I])...);
}

template <auto K>
struct Entry;

template <class... A, void (*K)(A...)>
struct Entry<K> {
    static_assert(sizeof...(A) <= MAX_PARAMS);
    static void body(void* params) { call(K, static_cast<void**>(params), std::index_sequence_for<A...>{}); }
    static constexpr Kernel make(const char* name) {
        return {name, sizeof...(A), {sizeof(A)...}, {std::is_pointer_v<A>...}, body};
    }
};

}  // namespace standin

#define KAPPA_STANDIN_ENTRY(k) standin::Entry<&k>::make(#k)
#define KAPPA_STANDIN_KERNELS(...)                                                            \
    extern "C" const standin::Kernel kappa_standin_kernels[] = {__VA_ARGS__, {nullptr, 0, {}, {}, nullptr}};
