#include "ptx.h"

#include <cctype>
#include <sstream>

namespace standin {

namespace {

// Bytes of one `.param` declaration: `.param .u64 .ptr .align 1 k_param_0`,
// `.param .f32 k_param_1`, `.param .align 8 .b8 k_param_2[16]`. The type's bit
// width times the array length, if any; 0 when unreadable.
size_t param_bytes(const std::string& decl) {
    std::istringstream words(decl);
    std::string w;
    size_t bits = 0, count = 1;
    while (words >> w) {
        if (w == ".param" || w == ".ptr" || w == ".global" || w == ".const" || w == ".shared" || w == ".local") continue;
        if (w == ".align") {
            words >> w;
            continue;
        }
        if (w.size() > 2 && w[0] == '.' && std::isdigit((unsigned char)w[2])) {
            bits = std::stoul(w.substr(2));
            continue;
        }
        const auto open = w.find('[');
        if (open != std::string::npos) count = std::stoul(w.substr(open + 1));
    }
    return bits * count / 8;
}

}  // namespace

std::vector<PtxEntry> ptx_entries(const std::string& ptx, std::string& error) {
    std::vector<PtxEntry> entries;
    const std::string marker = ".entry ";
    for (size_t at = ptx.find(marker); at != std::string::npos; at = ptx.find(marker, at + 1)) {
        const size_t name_start = at + marker.size();
        const size_t open = ptx.find('(', name_start), close = ptx.find(')', name_start);
        if (open == std::string::npos || close == std::string::npos || close < open) {
            error = "an .entry without a parameter list";
            return {};
        }
        PtxEntry e{ptx.substr(name_start, open - name_start), {}};
        while (!e.name.empty() && std::isspace((unsigned char)e.name.back())) e.name.pop_back();
        std::istringstream params(ptx.substr(open + 1, close - open - 1));
        for (std::string decl; std::getline(params, decl, ',');) {
            if (decl.find(".param") == std::string::npos) continue;
            const size_t bytes = param_bytes(decl);
            if (bytes == 0) {
                error = "kernel " + e.name + ": unreadable parameter `" + decl + "`";
                return {};
            }
            e.param_sizes.push_back(bytes);
        }
        entries.push_back(std::move(e));
    }
    return entries;
}

}  // namespace standin
