// sanitas/systolic_gemm.h -- INT8 x INT8 -> INT32 GEMM on an output-stationary systolic array, with one
// extra total-checksum PE column (Huang & Abraham ABFT, the "sanity" column of the Sanity scheme).
//
// C = A @ B with A (m x k) int8 activations and B (k x n) int8 weights.  The array has `rows` x `cols`
// multiply-accumulate PEs plus one checksum PE per row; PE (i, j) keeps the int32 accumulator of output
// C[r0 + i][j] (output-stationary), A enters from the left edge skewed by one cycle per row, B from the top
// edge skewed by one cycle per column, so at wavefront cycle t PE (i, j) multiplies A[r0+i][kk] * B[kk][j]
// with kk = t - i - j.  The checksum PE of row i (array column index `cols`) gets the weight column
//     w_s[kk] = -sum_{j<n} B[kk][j]                    (csum_t: 8 + clog2(cols) + 1 bits, exact)
// and accumulates S[r] = sum_kk A[r][kk] * w_s[kk] (sacc_t).  Fault-free, for every output row r,
//     sum_{j<n} C[r][j] + S[r] == 0                    (exact integers, check_t never wraps)
// and the kernel raises flags[r] when that row sum is non-zero.  A single flipped accumulator bit changes one
// term by +-2^bit (modulo 2^width after wrap-around), which is never 0, so it is always detected and located
// to its row.
//
// Overflow bounds (enforced by static_assert below, CONFIG_T::max_k = K, cols = N_max):
//   |C| <= K * 2^14                 -> acc_t  needs 16 + clog2(K) bits
//   |S| <= K * 2^7 * (N_max * 2^7)  -> sacc_t needs 16 + clog2(K) + clog2(N_max) bits
// which is the golden model's bound (python/sanitas/golden/gemm.py) K * (N + 1) < 2^17 for 32-bit types.
//
// Verification hook: `gemm_fault` {row, col, bit, cycle} flips one accumulator bit (col == n selects the
// checksum accumulator S) after the MAC of wavefront cycle `cycle` (-1: at read-out).  The default
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
//   ROWS  : PE rows = output rows computed per pass (m is processed in ceil(m / ROWS) row tiles)
//   COLS  : PE columns = largest n (columns j >= n are fed zero weights)
//   MAX_M : largest m (rows of the A / C buffers)
//   MAX_K : largest k (reduction length, rows of the B buffer)
template <unsigned ROWS, unsigned COLS, unsigned MAX_M, unsigned MAX_K>
struct systolic_gemm_config {
    static const unsigned rows = ROWS;
    static const unsigned cols = COLS;
    static const unsigned max_m = MAX_M;
    static const unsigned max_k = MAX_K;
    typedef ap_int<8> a_t;                          // activation, int8
    typedef ap_int<8> w_t;                          // weight, int8
    typedef ap_int<32> acc_t;                       // C accumulator, int32
    typedef ap_int<8 + clog2(COLS) + 1> csum_t;     // checksum weight -sum_j B[k][j]: |.| <= COLS * 128
    typedef ap_int<32> sacc_t;                      // S accumulator, int32
};

// One accumulator bit-flip (a fault is data: the same descriptor replays in the golden model and in RTL).
struct gemm_fault {
    int row = -1;    // output row in [0, m); -1 = no fault
    int col = 0;     // output column in [0, n); col == n selects the checksum accumulator S[row]
    int bit = 0;     // bit to flip, in [0, acc_t::width) (or sacc_t::width for the checksum column)
    int cycle = -1;  // wavefront cycle in [0, k + rows + cols - 1) after whose MAC to flip; -1 = at read-out
};

// systolic_gemm: C = A @ B, S = A @ w_s, flags[r] = (sum_j C[r][j] + S[r] != 0); returns the number of
// flagged rows.  Dimensions m <= max_m, k <= max_k, n <= cols are run-time; buffers are max-sized, row-major:
//   a     (max_m, max_k) int8     b (max_k, cols) int8
//   c     (max_m, cols)  int32    (columns j >= n are written as 0)
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

    static_assert(a_t::width == 8 && w_t::width == 8, "systolic_gemm is an INT8 x INT8 kernel");
    static_assert(acc_t::width >= 16 + clog2(CONFIG_T::max_k), "acc_t too narrow for max_k int8 products");
    static_assert(csum_t::width >= 8 + clog2(CONFIG_T::cols) + 1, "csum_t too narrow for -sum_j B[k][j]");
    static_assert(sacc_t::width >= 16 + clog2(CONFIG_T::max_k) + clog2(CONFIG_T::cols),
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

    // PE state: (rows, cols + 1) int8 activation pipeline registers (column cols feeds the checksum PE),
    // (rows, cols) int8 weight registers, (rows,) csum_t checksum-weight registers, accumulators.
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

            // MAC: every PE accumulates the product of the values it holds this cycle.
        mac_row:
            for (unsigned i = 0; i < rows; ++i) {
#pragma HLS UNROLL
            mac_col:
                for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                    acc[i][j] += a_reg[i][j] * b_reg[i][j];
                    if (fault.cycle == int(t) && fault.row == int(r0 + i) && fault.col == int(j) && j < n)
                        acc[i][j] ^= acc_t(1) << fault.bit;
                }
                sacc[i] += a_reg[i][cols] * bs_reg[i];
                if (fault.cycle == int(t) && fault.row == int(r0 + i) && fault.col == int(n))
                    sacc[i] ^= sacc_t(1) << fault.bit;
            }
        }

        // Read-out and row check: sum_j C[r][j] + S[r] == 0 fault-free.
    readout_row:
        for (unsigned i = 0; i < rows; ++i) {
#pragma HLS PIPELINE II = 1
            if (r0 + i < m) {
                const bool here = fault.cycle < 0 && fault.row == int(r0 + i);
                check_t row_sum = 0;
            readout_col:
                for (unsigned j = 0; j < cols; ++j) {
#pragma HLS UNROLL
                    acc_t v = acc[i][j];
                    if (here && fault.col == int(j) && j < n) v ^= acc_t(1) << fault.bit;
                    c[r0 + i][j] = v;
                    row_sum += v;
                }
                sacc_t sv = sacc[i];
                if (here && fault.col == int(n)) sv ^= sacc_t(1) << fault.bit;
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
