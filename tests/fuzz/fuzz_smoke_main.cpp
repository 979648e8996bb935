// Runs a libFuzzer target without libFuzzer (any compiler, so in both of
// scripts/test's trees, ASan+UBSan included): every seed in the corpus
// directory given as argv[1] (or just the one file given), then a fixed number
// (argv[2], default 20,000) of deterministic random
// mutations of them (byte inserts from a parser-minded alphabet, deletions,
// splices of other seeds). Exit 0 when no input aborted; when one does, the
// input is printed (C-escaped) to stderr first. `scripts/fuzz` runs the real
// libFuzzer builds of the same targets for longer.
#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

const std::string* current = nullptr;  // the input being run, for on_abort

// Prints the input that failed an invariant (async-signal-safe: write(2) only).
extern "C" void on_abort(int sig) {
    if (current != nullptr) {
        constexpr char hex[] = "0123456789abcdef";
        static const char head[] = "\nfuzz smoke: this input failed (C-escaped):\n\"";
        (void)!::write(2, head, sizeof head - 1);
        for (const char ch : *current) {
            const auto c = static_cast<unsigned char>(ch);
            char buf[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
                (void)!::write(2, &ch, 1);
            } else {
                (void)!::write(2, buf, 4);
            }
        }
        (void)!::write(2, "\"\n", 2);
    }
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

void run(const std::string& input) {
    current = &input;
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
    current = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2 && argc != 3) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR|INPUT_FILE [MUTATIONS (default 20000)]\n", argv[0]);
        return 2;
    }
    std::signal(SIGABRT, on_abort);
    std::vector<std::string> seeds;
    std::vector<std::filesystem::path> files;
    const bool one_file = std::filesystem::is_regular_file(argv[1]);  // a reproducer: run it alone
    if (one_file) {
        files.emplace_back(argv[1]);
    } else {
        for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
            files.push_back(e.path());
        }
    }
    std::sort(files.begin(), files.end());  // the same mutations on every file system
    for (const auto& path : files) {
        std::ifstream f(path, std::ios::binary);
        std::ostringstream s;
        s << f.rdbuf();
        seeds.push_back(s.str());
    }
    if (seeds.empty()) {
        std::fprintf(stderr, "no seeds in %s\n", argv[1]);
        return 1;
    }
    using namespace std::string_literals;
    const std::string alphabet = "[]{}=\"'#.\n\r\t ,host\\abc0123:/?&%@;+-_~\x00\xff"s;  // NUL included
    std::mt19937 rng(20240601);
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    std::size_t runs = 0;
    for (const auto& s : seeds) {
        run(s);
        ++runs;
    }
    const long mutations = one_file ? 0 : (argc == 3 ? std::strtol(argv[2], nullptr, 10) : 20000);
    for (long i = 0; i < mutations; ++i) {
        std::string m = seeds[pick(seeds.size())];
        const std::size_t edits = 1 + pick(4);
        for (std::size_t e = 0; e < edits; ++e) {
            const std::size_t at = m.empty() ? 0 : pick(m.size() + 1);
            switch (pick(3)) {
                case 0:
                    m.insert(at, 1, alphabet[pick(alphabet.size())]);
                    break;
                case 1:
                    if (at < m.size()) {
                        m.erase(at, 1 + pick(3));
                    }
                    break;
                default:
                    m.insert(at, seeds[pick(seeds.size())].substr(0, pick(40)));
                    break;
            }
        }
        run(m);
        ++runs;
    }
    std::printf("fuzz smoke on %s: %zu inputs, no failure\n", argv[1], runs);
    return 0;
}
