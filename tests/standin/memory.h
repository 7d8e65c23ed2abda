// Device memory on the host, guarded. Each allocation is its own mapping:
//
//   [guard page | canary … | data … | canary | guard page]
//
// The data ends (16-byte aligned) as close to the trailing guard page as its
// alignment allows, so a kernel that reads or writes one element past the end
// either faults on the guard page (the SIGSEGV handler names the kernel) or
// overwrites a canary byte (found right after the launch or copy, naming it).
// Reads of canary bytes are not caught; every other stray access is. Fresh
// data is filled with 0xFF bytes, a NaN in f32 and f64, so a read of memory
// nobody wrote shows up in the results.
#pragma once

#include "api.h"

#include <map>
#include <string>

namespace standin {

struct Allocation {
    char* mapping;  // the whole mapping, guard pages included
    size_t mapped;
    size_t bytes;   // what the caller asked for
};

class Memory {
public:
    CUresult allocate(CUdeviceptr* out, size_t bytes, const char* what);
    CUresult release(CUdeviceptr ptr, const char* what);
    bool in_bounds(const void* ptr, size_t bytes, const char* what) const;
    bool canaries_intact(const char* what) const;
    // The allocation whose guard pages hold `address`, if any (for the fault handler).
    const std::pair<const uintptr_t, Allocation>* guarding(uintptr_t address) const;
    size_t used = 0, high = 0;

private:
    std::map<uintptr_t, Allocation> live;  // by data address
};

}  // namespace standin
