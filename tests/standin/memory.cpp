#include "memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <vector>

namespace standin {

namespace {

constexpr unsigned char CANARY = 0xA5, POISON = 0xFF;
constexpr size_t ALIGN = 16;

size_t page() {
    static const size_t size = (size_t)sysconf(_SC_PAGESIZE);
    return size;
}

// The data's offset in a mapping of `pages` data pages: as late as ALIGN allows.
size_t data_offset(size_t bytes, size_t pages) {
    const size_t rounded = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    return page() + pages * page() - rounded;
}

// Whether the n bytes at p are all CANARY: memcmp against a canary page,
// which runs vectorised (a byte loop made the check after each launch cost
// more than many kernels).
bool all_canary(const char* p, size_t n) {
    static const std::vector<char> ref(page(), (char)CANARY);
    for (size_t done = 0; done < n; done += ref.size())
        if (std::memcmp(p + done, ref.data(), std::min(ref.size(), n - done)) != 0) return false;
    return true;
}

}  // namespace

CUresult Memory::allocate(CUdeviceptr* out, size_t bytes, const char* what) {
    if (bytes == 0) {
        std::fprintf(stderr, "kappa CPU stand-in: %s of 0 bytes (the driver rejects it)\n", what);
        return CUDA_ERROR_INVALID_VALUE;
    }
    const size_t pages = (bytes + ALIGN - 1) / ALIGN * ALIGN / page() + 1;
    const size_t mapped = (pages + 2) * page();
    void* m = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    char* mapping = static_cast<char*>(m);
    mprotect(mapping, page(), PROT_NONE);
    mprotect(mapping + mapped - page(), page(), PROT_NONE);
    const size_t offset = data_offset(bytes, pages);
    std::memset(mapping + page(), CANARY, pages * page());
    std::memset(mapping + offset, POISON, bytes);
    live[(uintptr_t)(mapping + offset)] = {mapping, mapped, bytes};
    used += bytes;
    if (used > high) high = used;
    *out = (CUdeviceptr)(uintptr_t)(mapping + offset);
    return CUDA_SUCCESS;
}

CUresult Memory::release(CUdeviceptr ptr, const char* what) {
    auto it = live.find((uintptr_t)ptr);
    if (it == live.end()) {
        std::fprintf(stderr, "kappa CPU stand-in: %s of 0x%llx, which is not a live allocation\n", what, ptr);
        return CUDA_ERROR_INVALID_VALUE;
    }
    used -= it->second.bytes;
    munmap(it->second.mapping, it->second.mapped);
    live.erase(it);
    return CUDA_SUCCESS;
}

bool Memory::in_bounds(const void* ptr, size_t bytes, const char* what) const {
    const uintptr_t p = (uintptr_t)ptr;
    auto it = live.upper_bound(p);
    if (it != live.begin()) {
        --it;
        if (p >= it->first && p + bytes <= it->first + it->second.bytes) return true;
        if (p >= it->first && p < it->first + it->second.bytes) {
            std::fprintf(stderr, "kappa CPU stand-in: %s: %zu bytes at 0x%lx run %zu bytes past the end of the %zu-byte allocation at 0x%lx\n",
                         what, bytes, (unsigned long)p, p + bytes - (it->first + it->second.bytes), it->second.bytes,
                         (unsigned long)it->first);
            return false;
        }
    }
    std::fprintf(stderr, "kappa CPU stand-in: %s: %zu bytes at 0x%lx lie in no live allocation\n", what, bytes, (unsigned long)p);
    return false;
}

bool Memory::canaries_intact(const char* what) const {
    bool intact = true;
    for (const auto& [data, a] : live) {
        const char* front = a.mapping + page();
        const char* end = (const char*)data + a.bytes;
        const char* back_end = a.mapping + a.mapped - page();
        if (!all_canary(front, (const char*)data - front) || !all_canary(end, back_end - end)) {
            std::fprintf(stderr, "kappa CPU stand-in: %s wrote outside the %zu-byte allocation at 0x%lx\n", what, a.bytes,
                         (unsigned long)data);
            intact = false;
        }
    }
    return intact;
}

const std::pair<const uintptr_t, Allocation>* Memory::guarding(uintptr_t address) const {
    for (const auto& entry : live) {
        const Allocation& a = entry.second;
        const uintptr_t start = (uintptr_t)a.mapping, stop = start + a.mapped;
        const bool front = address >= start && address < start + page();
        const bool back = address >= stop - page() && address < stop;
        if (front || back) return &entry;
    }
    return nullptr;
}

}  // namespace standin
