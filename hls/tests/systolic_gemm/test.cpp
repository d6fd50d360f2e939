// hls/tests/systolic_gemm/test.cpp -- C simulation of sanitas::systolic_gemm (hls/include/sanitas/systolic_gemm.h).
//
// systolic_gemm_top is the thin synthesis top (one fixed configuration); main() is the C testbench.
// Usage: systolic_gemm_csim VECTOR_DIR.  VECTOR_DIR is written by `python -m sanitas.hls.csim vectors` and holds
//   sanitas_test_config.h    the configuration struct `systolic_gemm_test_config` (included via -I VECTOR_DIR)
//   cases.txt               one case file name per line
//   case_NNN.txt            "systolic_gemm m k n", then tagged blocks "A" (m*k DATA_W-bit), "B" (k*n DATA_W-bit),
//                           "C" (m*n ACC_W-bit = A @ B), "S" (m checksum values), "F" (m expected flags)
//   faults.txt              "case site row col cycle and or xor value" per line ('#' comments): one accumulator
//                           fault per line (a gemm_fault, written by sanitas.hls.csim.fault_to_gemm_fault) and the
//                           faulty value the golden model predicts for C[row][col] (S[row] if col == n)
//   replay.txt (optional)   "case site row col cycle and or xor" per line: faults of any site; the kernel's full
//                           outputs go to replay_out.txt, one line per fault: "C <m*n> S <m> F <m>", for the
//                           caller to compare with its own levels (sanitas.hls.csim.run_replay)
// Fault-free, every case must reproduce C, S and F exactly.  Each fault must yield exactly the predicted
// element value, leave every other element as in the fault-free run, and raise the flag of its row only.
// Prints one line per case and fault, then "systolic_gemm: N mismatches"; the exit status is N (capped at 255
// so that it never wraps to 0).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sanitas/systolic_gemm.h"
#include "sanitas_test_config.h"  // generated: struct systolic_gemm_test_config

typedef systolic_gemm_test_config cfg_t;

// Synthesis top: (max_m, max_k) A, (max_k, cols) B (DATA_W bits) -> (max_m, cols) C, (max_m,) S (ACC_W), flags.
int systolic_gemm_top(unsigned m, unsigned k, unsigned n,
                      const cfg_t::a_t a[cfg_t::max_m][cfg_t::max_k],
                      const cfg_t::w_t b[cfg_t::max_k][cfg_t::cols],
                      cfg_t::acc_t c[cfg_t::max_m][cfg_t::cols],
                      cfg_t::sacc_t s[cfg_t::max_m],
                      bool flags[cfg_t::max_m],
                      sanitas::gemm_fault fault) {
    return sanitas::systolic_gemm<cfg_t>(m, k, n, a, b, c, s, flags, fault);
}

namespace {

// One test case as read from case_NNN.txt; all values as long long (DATA_W / ACC_W <= 64 bits fit exactly).
struct gemm_case {
    std::string name;
    bool ok = false;                       // readable and inside the configuration
    unsigned m = 0, k = 0, n = 0;
    std::vector<long long> a, b, c, s, f;  // (m*k), (k*n), (m*n), (m), (m), row-major: inputs and expected
    std::vector<long long> c_run, s_run;   // (m*n), (m): the kernel's fault-free outputs (fault-run baseline)
};

bool read_block(std::istream &in, const char *tag, std::size_t count, std::vector<long long> &out) {
    std::string t;
    if (!(in >> t) || t != tag) return false;
    out.resize(count);
    for (std::size_t i = 0; i < count; ++i)
        if (!(in >> out[i])) return false;
    return true;
}

bool read_case(const std::string &path, gemm_case &g) {
    std::ifstream in(path.c_str());
    std::string magic;
    if (!in || !(in >> magic >> g.m >> g.k >> g.n) || magic != "systolic_gemm") return false;
    return read_block(in, "A", std::size_t(g.m) * g.k, g.a) && read_block(in, "B", std::size_t(g.k) * g.n, g.b) &&
           read_block(in, "C", std::size_t(g.m) * g.n, g.c) && read_block(in, "S", g.m, g.s) &&
           read_block(in, "F", g.m, g.f);
}

// Kernel buffers, max-sized (static: kept off the stack).
cfg_t::a_t buf_a[cfg_t::max_m][cfg_t::max_k];
cfg_t::w_t buf_b[cfg_t::max_k][cfg_t::cols];
cfg_t::acc_t buf_c[cfg_t::max_m][cfg_t::cols];
cfg_t::sacc_t buf_s[cfg_t::max_m];
bool buf_f[cfg_t::max_m];

// Non-zero filler for the buffer entries outside (m, k, n): the kernel must ignore them.
int junk(unsigned x, unsigned y) { return int((x * 31u + y * 17u + 5u) % 255u) - 127; }

int run(const gemm_case &g, sanitas::gemm_fault fault) {
    for (unsigned r = 0; r < cfg_t::max_m; ++r) {
        for (unsigned kk = 0; kk < cfg_t::max_k; ++kk)
            buf_a[r][kk] = (r < g.m && kk < g.k) ? g.a[std::size_t(r) * g.k + kk] : junk(r, kk);
        buf_s[r] = 0;
        buf_f[r] = false;
    }
    for (unsigned kk = 0; kk < cfg_t::max_k; ++kk)
        for (unsigned j = 0; j < cfg_t::cols; ++j)
            buf_b[kk][j] = (kk < g.k && j < g.n) ? g.b[std::size_t(kk) * g.n + j] : junk(j, kk);
    return systolic_gemm_top(g.m, g.k, g.n, buf_a, buf_b, buf_c, buf_s, buf_f, fault);
}

// Compare the kernel outputs against expected C (m*n), S (m) and flags (m); returns the mismatch count.
// C columns j >= n must be 0 (padding PEs receive zero weights).
int compare(const gemm_case &g, const std::vector<long long> &c, const std::vector<long long> &s,
            const std::vector<long long> &f, const char *what) {
    int bad = 0;
    for (unsigned r = 0; r < g.m; ++r) {
        for (unsigned j = 0; j < cfg_t::cols; ++j) {
            const long long want = j < g.n ? c[std::size_t(r) * g.n + j] : 0;
            const long long got = buf_c[r][j].to_int64();
            if (got != want) {
                if (bad < 5) std::printf("  %s %s: C[%u][%u] = %lld, expected %lld\n", g.name.c_str(), what, r, j, got, want);
                ++bad;
            }
        }
        if (buf_s[r].to_int64() != s[r]) {
            if (bad < 5) std::printf("  %s %s: S[%u] = %lld, expected %lld\n", g.name.c_str(), what, r,
                                     (long long)buf_s[r].to_int64(), s[r]);
            ++bad;
        }
        if ((buf_f[r] ? 1 : 0) != f[r]) {
            if (bad < 5) std::printf("  %s %s: flag[%u] = %d, expected %lld\n", g.name.c_str(), what, r, int(buf_f[r]), f[r]);
            ++bad;
        }
    }
    return bad;
}

// Rows the kernel flagged; its return value must equal this.
int count_flags(const gemm_case &g) {
    int n = 0;
    for (unsigned r = 0; r < g.m; ++r) n += buf_f[r] ? 1 : 0;
    return n;
}

// Parse "case site row col cycle and or xor" from `ls` into (ci, fault); false on a malformed line.
bool read_fault(std::istream &ls, unsigned &ci, sanitas::gemm_fault &fault) {
    return bool(ls >> ci >> fault.site >> fault.row >> fault.col >> fault.cycle >> fault.and_mask >> fault.or_mask >>
                fault.xor_mask);
}

// Replay mode: run every fault of replay.txt and write the kernel's full outputs to replay_out.txt.
int replay(const std::string &dir, const std::vector<gemm_case> &cases) {
    std::ifstream in((dir + "/replay.txt").c_str());
    std::ofstream out((dir + "/replay_out.txt").c_str());
    int errors = 0;
    unsigned n = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        unsigned ci = 0;
        sanitas::gemm_fault fault;
        if (!read_fault(ls, ci, fault) || ci >= cases.size() || !cases[ci].ok || fault.row < 0 ||
            fault.row >= int(cases[ci].m) || fault.col < 0 || fault.col > int(cases[ci].n)) {
            std::printf("replay.txt: bad line '%s'\n", line.c_str());
            ++errors;
            continue;
        }
        const gemm_case &g = cases[ci];
        const int flagged = run(g, fault);
        out << "C";
        for (unsigned r = 0; r < g.m; ++r)
            for (unsigned j = 0; j < g.n; ++j) out << " " << (long long)buf_c[r][j].to_int64();
        out << " S";
        for (unsigned r = 0; r < g.m; ++r) out << " " << (long long)buf_s[r].to_int64();
        out << " F";
        for (unsigned r = 0; r < g.m; ++r) out << " " << (buf_f[r] ? 1 : 0);
        out << "\n";
        if (flagged != count_flags(g)) ++errors;
        ++n;
    }
    std::printf("systolic_gemm: %u faults replayed\n", n);
    return errors;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s VECTOR_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    int errors = 0;

    // Fault-free cases.
    std::vector<gemm_case> cases;
    unsigned n_cases = 0;
    std::ifstream index((dir + "/cases.txt").c_str());
    if (!index) {
        std::printf("systolic_gemm: cannot read %s/cases.txt\n", dir.c_str());
        std::printf("systolic_gemm: 1 mismatches\n");
        return 1;
    }
    for (std::string name; index >> name;) {
        gemm_case g;
        g.name = name;
        if (!read_case(dir + "/" + name, g) || g.m > cfg_t::max_m || g.k > cfg_t::max_k || g.n > cfg_t::cols ||
            g.m == 0 || g.k == 0 || g.n == 0) {
            std::printf("%s: unreadable or outside the configuration (max m %u, k %u, n %u)\n", name.c_str(),
                        cfg_t::max_m, cfg_t::max_k, cfg_t::cols);
            ++errors;
            cases.push_back(g);  // keeps faults.txt's case indices aligned; its faults are skipped
            continue;
        }
        g.ok = true;
        const int flagged = run(g, sanitas::gemm_fault());
        int bad = compare(g, g.c, g.s, g.f, "fault-free");
        if (flagged != count_flags(g)) ++bad;
        for (unsigned r = 0; r < g.m; ++r) {
            for (unsigned j = 0; j < g.n; ++j) g.c_run.push_back(buf_c[r][j].to_int64());
            g.s_run.push_back(buf_s[r].to_int64());
        }
        std::printf("%s m=%u k=%u n=%u: %d mismatches\n", name.c_str(), g.m, g.k, g.n, bad);
        errors += bad;
        cases.push_back(g);
        ++n_cases;
    }
    std::printf("systolic_gemm: %u cases\n", n_cases);

    // Fault injection: one accumulator fault per line of faults.txt.
    std::ifstream faults((dir + "/faults.txt").c_str());
    unsigned n_faults = 0, n_located = 0;
    for (std::string line; std::getline(faults, line);) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        unsigned ci = 0;
        long long value = 0;
        sanitas::gemm_fault fault;
        if (ls >> ci && ci < cases.size() && !cases[ci].ok) continue;  // its case already counted an error
        ls.clear();
        ls.seekg(0);
        if (!read_fault(ls, ci, fault) || !(ls >> value) || ci >= cases.size() || fault.site != sanitas::GEMM_FAULT_ACC ||
            fault.row < 0 || fault.row >= int(cases[ci].m) || fault.col < 0 || fault.col > int(cases[ci].n)) {
            std::printf("faults.txt: bad line '%s'\n", line.c_str());
            ++errors;
            continue;
        }
        const gemm_case &g = cases[ci];
        // Expected outputs: the kernel's fault-free outputs (checked against golden above, so a wrong expected
        // value counts once) with the faulty element replaced by its golden value; only the faulty row flagged.
        std::vector<long long> c = g.c_run, s = g.s_run, f(g.m, 0);
        if (fault.col == int(g.n))
            s[fault.row] = value;
        else
            c[std::size_t(fault.row) * g.n + fault.col] = value;
        f[fault.row] = 1;
        const int flagged = run(g, fault);
        int bad = compare(g, c, s, f, "faulty");
        if (flagged != count_flags(g)) ++bad;
        ++n_faults;
        if (bad == 0) ++n_located;
        std::printf("fault %s row=%d col=%d%s xor=%#llx cycle=%d: flagged rows %d, %d mismatches\n", g.name.c_str(),
                    fault.row, fault.col, fault.col == int(g.n) ? "(S)" : "", fault.xor_mask, fault.cycle, flagged,
                    bad);
        errors += bad;
    }
    std::printf("systolic_gemm: %u/%u faults flagged in their row only\n", n_located, n_faults);
    if (std::ifstream((dir + "/replay.txt").c_str())) errors += replay(dir, cases);
    std::printf("systolic_gemm: %d mismatches\n", errors);
    return errors > 255 ? 255 : errors;
}
