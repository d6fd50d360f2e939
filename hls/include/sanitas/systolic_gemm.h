// sanitas/systolic_gemm.h -- INT8 x INT8 -> INT32 GEMM (any DATA_W x DATA_W -> ACC_W) on an output-stationary
// systolic array, with one extra total-checksum PE column (Huang & Abraham ABFT, the "sanity" column of Sanity).
//
// C = A @ B with A (m x k) activations and B (k x n) weights, DATA_W-bit signed (INT8 by default; the
// configuration struct is rendered from sanitas.config.ArrayConfig by sanitas.hls.csim).  The array has `rows` x `cols`
// multiply-accumulate PEs plus one checksum PE per row; PE (i, j) keeps the int32 accumulator of output
// C[r0 + i][j] (output-stationary), A enters from the left edge skewed by one cycle per row, B from the top
// edge skewed by one cycle per column, so at wavefront cycle t PE (i, j) multiplies A[r0+i][kk] * B[kk][j]
// with kk = t - i - j.  The checksum PE of row i (array column index `cols`) gets the weight column
//     w_s[kk] = -sum_{j<n} B[kk][j]                    (csum_t: DATA_W + clog2(cols) + 1 bits, exact)
// and accumulates S[r] = sum_kk A[r][kk] * w_s[kk] (sacc_t).  Fault-free, for every output row r,
//     sum_{j<n} C[r][j] + S[r] == 0                    (exact integers, check_t never wraps)
// and the kernel raises flags[r] when that row sum is non-zero.  A single flipped accumulator bit changes one
// term by +-2^bit (modulo 2^width after wrap-around), which is never 0, so it is always detected and located
// to its row.
//
// Overflow bounds (enforced by static_assert below, CONFIG_T::max_k = K, cols = N_max, D = DATA_W):
//   |C| <= K * 2^(2D-2)                   -> acc_t  needs 2D + clog2(K) bits            (INT8: 16 + clog2(K))
//   |S| <= K * 2^(D-1) * (N_max * 2^(D-1)) -> sacc_t needs 2D + clog2(K) + clog2(N_max) bits
// which for INT8 is the golden model's bound (python/sanitas/golden/gemm.py) K * (N + 1) < 2^17 for 32 bits.
//
// Verification hook: `gemm_fault` is the HLS form of one array-site fault record (sanitas.faults.Fault; the sites
// and the one meaning of `cycle` are documented in python/sanitas/faults/fault.py, the adapter is
// sanitas.hls.csim.fault_to_gemm_fault).  In wavefront cycle t PE (i, j) runs the MAC of kk = t - i - j; an
// accumulator fault acts after the MAC of cycle `cycle` (-1: at read-out), an operand fault on the register's
// value in cycle `cycle` before the MAC (it then moves on with the value).  The fault is the (AND, OR, XOR) mask
// triple of sanitas.faults.fault_masks on the register's bit pattern, so every fault kind replays.  The default
// `gemm_fault()` injects nothing; a synthesised top passes the default and the branch folds away.
//
// Loops are labelled; every pragma sits next to its loop.  Compiles with plain g++ -std=c++14 against the
// ap_types headers shipped inside hls4ml (templates/vivado/ap_types); Vitis HLS reads the pragmas.
#ifndef SANITAS_SYSTOLIC_GEMM_H
#define SANITAS_SYSTOLIC_GEMM_H

#include "ap_int.h"

namespace sanitas {

// ceil(log2(x)) for x >= 1, usable in template arguments (clog2(1) == 0, clog2(16) == 4, clog2(17) == 5).
constexpr int clog2(unsigned long long x) { return x <= 1 ? 0 : 1 + clog2((x + 1) / 2); }
constexpr int max_int(int a, int b) { return a > b ? a : b; }

// Geometry and types of one systolic GEMM instance (the hls4ml-style `struct ..._config`).
//   ROWS   : PE rows = output rows computed per pass (m is processed in ceil(m / ROWS) row tiles)
//   COLS   : PE columns = largest n (columns j >= n are fed zero weights)
//   MAX_M  : largest m (rows of the A / C buffers; a testbench buffer size)
//   MAX_K  : largest k (reduction length, rows of the B buffer)
//   DATA_W : signed operand width, bits (INT8: 8)
//   ACC_W  : signed accumulator width of C and S, bits (INT32: 32)
template <unsigned ROWS, unsigned COLS, unsigned MAX_M, unsigned MAX_K, int DATA_W = 8, int ACC_W = 32>
struct systolic_gemm_config {
    static const unsigned rows = ROWS;
    static const unsigned cols = COLS;
    static const unsigned max_m = MAX_M;
    static const unsigned max_k = MAX_K;
    static const int data_w = DATA_W;
    typedef ap_int<DATA_W> a_t;                          // activation, DATA_W bits
    typedef ap_int<DATA_W> w_t;                          // weight, DATA_W bits
    typedef ap_int<ACC_W> acc_t;                         // C accumulator, ACC_W bits
    typedef ap_int<DATA_W + clog2(COLS) + 1> csum_t;     // checksum weight -sum_j B[k][j]: |.| <= COLS * 2^(D-1)
    typedef ap_int<ACC_W> sacc_t;                        // S accumulator, ACC_W bits
};

// Register a fault acts on (sanitas.faults sites pe_acc / chk_acc, pe_a, pe_b).
enum gemm_fault_site { GEMM_FAULT_NONE = 0, GEMM_FAULT_ACC = 1, GEMM_FAULT_A = 2, GEMM_FAULT_B = 3 };

// One array-site fault (a fault is data: the same record replays in the golden model, here and in RTL).
struct gemm_fault {
    int site = GEMM_FAULT_NONE;  // gemm_fault_site; GEMM_FAULT_NONE = no fault
    int row = -1;                // GEMM row in [0, m): the PE row is row % rows, in row's tile
    int col = 0;                 // GEMM column in [0, n); col == n selects the checksum PE (array column cols)
    int cycle = -1;              // wavefront cycle t of row's tile; -1 = at read-out (accumulator sites only)
    long long and_mask = -1;     // u' = ((u & and_mask) | or_mask) ^ xor_mask on the register's bit pattern u
    long long or_mask = 0;
    long long xor_mask = 0;
};

// Apply the fault's mask triple to a register value of type T (ap_int<W>), on its W-bit pattern.
template <class T>
T gemm_fault_apply(T v, const gemm_fault &f) {
    ap_uint<T::width> u = v;
    const ap_uint<T::width> and_m = ap_uint<64>(f.and_mask), or_m = ap_uint<64>(f.or_mask),
                            xor_m = ap_uint<64>(f.xor_mask);
    u = ((u & and_m) | or_m) ^ xor_m;
    T r;
    r.range(T::width - 1, 0) = u;
    return r;
}

// systolic_gemm: C = A @ B, S = A @ w_s, flags[r] = (sum_j C[r][j] + S[r] != 0); returns the number of
// flagged rows.  Dimensions m <= max_m, k <= max_k, n <= cols are run-time; buffers are max-sized, row-major:
//   a     (max_m, max_k) a_t      b (max_k, cols) w_t
//   c     (max_m, cols)  acc_t    (columns j >= n are written as 0)
//   s     (max_m,)       sacc_t   flags (max_m,) bool
template <class CONFIG_T>
int systolic_gemm(unsigned m, unsigned k, unsigned n,
                  const typename CONFIG_T::a_t a[CONFIG_T::max_m][CONFIG_T::max_k],
                  const typename CONFIG_T::w_t b[CONFIG_T::max_k][CONFIG_T::cols],
                  typename CONFIG_T::acc_t c[CONFIG_T::max_m][CONFIG_T::cols],
                  typename CONFIG_T::sacc_t s[CONFIG_T::max_m],
                  bool flags[CONFIG_T::max_m],
                  gemm_fault fault = gemm_fault()) {
    typedef typename CONFIG_T::a_t a_t;
    typedef typename CONFIG_T::w_t w_t;
    typedef typename CONFIG_T::acc_t acc_t;
    typedef typename CONFIG_T::csum_t csum_t;
    typedef typename CONFIG_T::sacc_t sacc_t;
    const unsigned rows = CONFIG_T::rows;
    const unsigned cols = CONFIG_T::cols;
    // Row check sum of cols + 1 terms, each |.| <= 2^(w-1) even after a fault wraps one: exact, never wraps.
    typedef ap_int<max_int(acc_t::width, sacc_t::width) + clog2(CONFIG_T::cols + 1) + 1> check_t;

    // Weights are DATA_W bits; activations DATA_W bits, or DATA_W + 1 where they are unsigned (uint8 after ReLU).
    static_assert(w_t::width == CONFIG_T::data_w && (a_t::width == CONFIG_T::data_w ||
                  a_t::width == CONFIG_T::data_w + 1), "operands are DATA_W bits (activations: DATA_W + 1)");
    static_assert(acc_t::width >= 2 * CONFIG_T::data_w + clog2(CONFIG_T::max_k),
                  "acc_t too narrow for max_k DATA_W x DATA_W products");
    static_assert(csum_t::width >= CONFIG_T::data_w + clog2(CONFIG_T::cols) + 1,
                  "csum_t too narrow for -sum_j B[k][j]");
    static_assert(sacc_t::width >= 2 * CONFIG_T::data_w + clog2(CONFIG_T::max_k) + clog2(CONFIG_T::cols),
                  "sacc_t too narrow for the checksum accumulator");

#pragma HLS ARRAY_PARTITION variable = a cyclic factor = CONFIG_T::rows dim = 1
#pragma HLS ARRAY_PARTITION variable = b complete dim = 2
#pragma HLS ARRAY_PARTITION variable = c cyclic factor = CONFIG_T::rows dim = 1
#pragma HLS ARRAY_PARTITION variable = c complete dim = 2

    // (max_k,) checksum weight column w_s[kk] = -sum_{j<n} B[kk][j], csum_t.
    csum_t w_s[CONFIG_T::max_k];
weight_checksum:
    for (unsigned kk = 0; kk < k; ++kk) {
#pragma HLS LOOP_TRIPCOUNT max = CONFIG_T::max_k
#pragma HLS PIPELINE II = 1
        csum_t sum = 0;
    weight_checksum_col:
        for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
            if (j < n) sum += b[kk][j];
        }
        w_s[kk] = -sum;
    }

    // PE state: (rows, cols + 1) activation pipeline registers (column cols feeds the checksum PE),
    // (rows, cols) weight registers, (rows,) csum_t checksum-weight registers, accumulators.
    a_t a_reg[CONFIG_T::rows][CONFIG_T::cols + 1];
    w_t b_reg[CONFIG_T::rows][CONFIG_T::cols];
    csum_t bs_reg[CONFIG_T::rows];
    acc_t acc[CONFIG_T::rows][CONFIG_T::cols];
    sacc_t sacc[CONFIG_T::rows];
#pragma HLS ARRAY_PARTITION variable = a_reg complete dim = 0
#pragma HLS ARRAY_PARTITION variable = b_reg complete dim = 0
#pragma HLS ARRAY_PARTITION variable = bs_reg complete dim = 0
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
#pragma HLS ARRAY_PARTITION variable = sacc complete dim = 0

    const unsigned cycles = k + rows + cols - 1;  // last MAC: checksum PE of row rows-1 at kk = k - 1
    int flagged = 0;
    // Array column the fault's PE sits in (col == n: the checksum PE at column cols).
    const int fault_pe_col = fault.col == int(n) ? int(cols) : fault.col;

row_tile:
    for (unsigned r0 = 0; r0 < m; r0 += rows) {
#pragma HLS LOOP_TRIPCOUNT max = (CONFIG_T::max_m + CONFIG_T::rows - 1) / CONFIG_T::rows
    pe_reset_row:
        for (unsigned i = 0; i < rows; ++i) {
#pragma HLS UNROLL
            bs_reg[i] = 0;
            sacc[i] = 0;
            a_reg[i][cols] = 0;
        pe_reset_col:
            for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                a_reg[i][j] = 0;
                b_reg[i][j] = 0;
                acc[i][j] = 0;
            }
        }

    wavefront:
        for (unsigned t = 0; t < cycles; ++t) {
#pragma HLS LOOP_TRIPCOUNT max = CONFIG_T::max_k + CONFIG_T::rows + CONFIG_T::cols - 1
#pragma HLS PIPELINE II = 1
            // Shift: activations move right, weights move down (old values first: reverse order).
        shift_a_row:
            for (unsigned i = 0; i < rows; ++i) {
#pragma HLS UNROLL
            shift_a_col:
                for (unsigned j = cols; j > 0; --j) {
#pragma HLS UNROLL
                    a_reg[i][j] = a_reg[i][j - 1];
                }
                // Left edge: row i receives A[r0 + i][t - i] (zero outside the matrix).
                const int ka = int(t) - int(i);
                a_reg[i][0] = (ka >= 0 && ka < int(k) && r0 + i < m) ? a[r0 + i][ka] : a_t(0);
            }
        shift_b_row:
            for (unsigned i = rows - 1; i > 0; --i) {
#pragma HLS UNROLL
                bs_reg[i] = bs_reg[i - 1];
            shift_b_col:
                for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                    b_reg[i][j] = b_reg[i - 1][j];
                }
            }
        feed_b_col:
            for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                // Top edge: column j receives B[t - j][j] (zero outside the matrix and for j >= n).
                const int kb = int(t) - int(j);
                b_reg[0][j] = (kb >= 0 && kb < int(k) && j < n) ? b[kb][j] : w_t(0);
            }
            const int ks = int(t) - int(cols);
            bs_reg[0] = (ks >= 0 && ks < int(k)) ? w_s[ks] : csum_t(0);

            // Operand faults: the register of PE (fault.row - r0, fault_pe_col) in this cycle, before the MAC.
            const bool fault_now = fault.cycle == int(t) && fault.row >= int(r0) && fault.row < int(r0 + rows);
            if (fault_now && fault.site == GEMM_FAULT_A) {
                a_reg[fault.row - r0][fault_pe_col] = gemm_fault_apply(a_reg[fault.row - r0][fault_pe_col], fault);
            }
            if (fault_now && fault.site == GEMM_FAULT_B) {
                if (fault_pe_col == int(cols))
                    bs_reg[fault.row - r0] = gemm_fault_apply(bs_reg[fault.row - r0], fault);
                else
                    b_reg[fault.row - r0][fault_pe_col] = gemm_fault_apply(b_reg[fault.row - r0][fault_pe_col], fault);
            }

            // MAC: every PE accumulates the product of the values it holds this cycle.
        mac_row:
            for (unsigned i = 0; i < rows; ++i) {
#pragma HLS UNROLL
            mac_col:
                for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                    acc[i][j] += a_reg[i][j] * b_reg[i][j];
                    if (fault.site == GEMM_FAULT_ACC && fault.cycle == int(t) && fault.row == int(r0 + i) &&
                        fault.col == int(j) && j < n)
                        acc[i][j] = gemm_fault_apply(acc[i][j], fault);
                }
                sacc[i] += a_reg[i][cols] * bs_reg[i];
                if (fault.site == GEMM_FAULT_ACC && fault.cycle == int(t) && fault.row == int(r0 + i) &&
                    fault.col == int(n))
                    sacc[i] = gemm_fault_apply(sacc[i], fault);
            }
        }

        // Read-out and row check: sum_j C[r][j] + S[r] == 0 fault-free.
    readout_row:
        for (unsigned i = 0; i < rows; ++i) {
#pragma HLS PIPELINE II = 1
            if (r0 + i < m) {
                const bool here = fault.site == GEMM_FAULT_ACC && fault.cycle < 0 && fault.row == int(r0 + i);
                check_t row_sum = 0;
            readout_col:
                for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                    acc_t v = acc[i][j];
                    if (here && fault.col == int(j) && j < n) v = gemm_fault_apply(v, fault);
                    c[r0 + i][j] = v;
                    row_sum += v;
                }
                sacc_t sv = sacc[i];
                if (here && fault.col == int(n)) sv = gemm_fault_apply(sv, fault);
                s[r0 + i] = sv;
                row_sum += sv;
                flags[r0 + i] = (row_sum != 0);
                flagged += (row_sum != 0) ? 1 : 0;
            }
        }
    }
    return flagged;
}

}  // namespace sanitas

#endif  // SANITAS_SYSTOLIC_GEMM_H
