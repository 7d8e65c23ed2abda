#include "registry.h"

#include <dlfcn.h>
#include <glob.h>

namespace standin {

namespace {

std::string own_directory() {
    Dl_info info{};
    if (!dladdr((void*)&own_directory, &info) || !info.dli_fname) return ".";
    std::string path = info.dli_fname;
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::map<std::string, Twin> load(std::string& error) {
    std::map<std::string, Twin> found;
    const std::string pattern = own_directory() + "/kernels/*.so";
    glob_t g{};
    if (glob(pattern.c_str(), 0, nullptr, &g) != 0) {
        error = "no kernel libraries match " + pattern + " (run scripts/standin/build)";
        return found;
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) {
        const std::string path = g.gl_pathv[i];
        void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        auto* table = lib ? (const Kernel*)dlsym(lib, "kappa_standin_kernels") : nullptr;
        auto launch = lib ? (LaunchFn)dlsym(lib, "emu_launch") : nullptr;
        if (!table || !launch) {
            error = path + ": " + (lib ? "no kernel table or emu_launch" : dlerror());
            break;
        }
        for (const Kernel* k = table; k->name; ++k) {
            if (found.count(k->name)) {
                error = "kernel " + std::string(k->name) + " is defined by both " + found[k->name].library + " and " + path;
                break;
            }
            found[k->name] = {k, launch, path};
        }
    }
    globfree(&g);
    return found;
}

}  // namespace

const std::map<std::string, Twin>& twins(std::string& error) {
    static std::string load_error;
    static const std::map<std::string, Twin> all = load(load_error);
    error = load_error;
    return all;
}

}  // namespace standin
