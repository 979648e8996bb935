// Runs a libFuzzer target without libFuzzer (any compiler, so in both of
// scripts/test's trees, ASan+UBSan included): every seed in the corpus
// directory given as argv[1], then a fixed number of deterministic random
// mutations of them (byte inserts from a parser-minded alphabet, deletions,
// splices of other seeds). Exit 0 when no input aborted. `scripts/fuzz` runs
// the real libFuzzer builds of the same targets for longer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

void run(const std::string& input) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    std::vector<std::string> seeds;
    for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
        std::ifstream f(e.path(), std::ios::binary);
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
    for (int i = 0; i < 20000; ++i) {
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
