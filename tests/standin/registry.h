// The host twins of kappa's kernels: every library in the `kernels/` folder
// next to the stand-in's libcuda.so (one per kernels/*.cu file, built by
// scripts/standin/build with kernels/emulate.h), found by globbing, so a file
// renamed or added needs no change here.
#pragma once

#include "kernel_table.h"

#include <map>
#include <string>

namespace standin {

using LaunchFn = void (*)(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void (*)(void*), void*);

struct Twin {
    const Kernel* kernel;
    LaunchFn launch;  // the emu_launch of the library that defines it
    std::string library;
};

// Loads the libraries once; a failure is described in `error`.
const std::map<std::string, Twin>& twins(std::string& error);

}  // namespace standin
