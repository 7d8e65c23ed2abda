// The kernels a PTX module declares: each `.entry name(…)` with the byte size
// of every parameter, so a launch can be checked against the host twin's C
// signature (a kernel renamed or re-typed on one side only is caught at load).
#pragma once

#include <string>
#include <vector>

namespace standin {

struct PtxEntry {
    std::string name;
    std::vector<size_t> param_sizes;
};

// Every entry of `ptx`, in order; an unreadable parameter list sets `error`.
std::vector<PtxEntry> ptx_entries(const std::string& ptx, std::string& error);

}  // namespace standin
