// sanitas/layers.h -- the network layers of the sanitas accelerator on top of the systolic GEMM
// (docs/architecture.md, "The accelerator"): conv / linear / depthwise = im2col + systolic_gemm tiles, and the
// elementwise stages of the QNet op table (requantise, maxpool, add, concat, global sum, flatten).
//
// Every tensor of one image lives in a static int32 buffer in C order ((C, H, W) maps, (F,) vectors); the values
// are the golden model's integers (python/sanitas/golden/model.py), so each stage here is the golden kernel of its
// op written for the hardware:
//   conv/linear  A (M, K) = im2col of the input (M = Ho*Wo output pixels, K = C/g*kh*kw, zero padding), B (K, N) =
//                the layer's weights (N = O/g), per group; M, K and N are cut into tiles of the GEMM config
//                (max_m rows, max_k reduction steps, cols PE columns) and the int32 partial sums of K tiles are
//                added with 32-bit wrap-around, the bias last: exactly the golden accumulator mod 2^32.
//   requant      arithmetic shift with round half to even and saturation (golden/rounding.py).
//   maxpool      padding = -inf; add: exact; concat: channel axis; gsum: exact sum over H, W; flatten: a copy.
// The total-checksum column of every GEMM tile runs (systolic_gemm); `stats.flagged` counts the rows it flags
// (0 fault-free). `stats.cycles` is the cycle estimate of the engine at the configured geometry: per (group, row
// tile, k tile) and PE-column pass (the data columns; sanity columns beyond the checksum PE's one take more passes)
// the weight-checksum loop (k), per row tile the wavefront (k + rows + cols - 1) and the read-out (rows); one cycle
// per element of every elementwise stage (II = 1; DMR's duplicate runs as a second lane in the same iteration:
// requant2 ... gsum2, no extra cycles); the sanity unit adds what its check unit does not hide behind the GEMM
// (sanity_unit.h, check_cycles).
//
// Fault injection (SANITAS_FAULT_PORT): one `net_fault` (the fi_* registers of sanitas_top, encoded by
// sanitas.hls.faultport) corrupts one element of one node's weight, bias, accumulator, input read or output with
// the (AND, OR, XOR) mask triple of sanitas.faults.fault_masks on its bits-wide pattern, for every image.
// Without SANITAS_FAULT_PORT the checks fold away.
#ifndef SANITAS_LAYERS_H
#define SANITAS_LAYERS_H

#include <stdint.h>

#include "sanitas/systolic_gemm.h"

namespace sanitas {

typedef int32_t word_t;  // one tensor element (int8 / uint8 / int32 values of the golden model)

// Per-run counters of the engine (cycles: estimate at the configured geometry; macs: data MACs issued).
struct net_stats {
    long long cycles = 0;
    long long macs = 0;
    long long flagged = 0;  // GEMM rows whose total checksum did not vanish
};

// Fault sites of the debug port (sanitas.hls.faultport.SITE_CODES).
enum net_fault_site {
    FI_NONE = 0, FI_WEIGHT = 1, FI_BIAS = 2, FI_ACC = 3, FI_OUTPUT = 4, FI_INPUT = 5,
    // the sanity unit's own state (protect.base.STATE_SITES; sanity_unit.h)
    FI_SANITY_W = 6, FI_SANITY_B = 7, FI_SANITY_SUM = 8, FI_SANITY_ACC = 9, FI_SANITY_SPATIAL = 10,
    FI_SANITY_WX = 11, FI_SANITY_BX = 12, FI_PARAM_SUM = 13,
    // DMR's state: the duplicate lane's output, a stored checkpoint, its recorded checksum (int64 words)
    FI_DMR = 14, FI_CHECKPOINT = 15, FI_CHECKSUM = 16
};

struct net_fault {
    int site = FI_NONE;   // net_fault_site
    int layer = -1;       // node index
    int index = -1;       // flat C-order element index (one image's tensor, or the parameter array)
    uint64_t and_m = ~0ull, or_m = 0, xor_m = 0;   // 64-bit: the seals and layer-wide sums are int64 words
};

// The faulty value of v under f's masks on its `bits`-wide pattern (bits <= 64), read back signed or unsigned
// (faults.apply_masks).
inline int64_t fault_value64(int64_t v, const net_fault &f, int bits, bool is_signed) {
    const uint64_t full = bits >= 64 ? ~0ull : ((1ull << bits) - 1ull);
    uint64_t u = ((((uint64_t)v & full) & f.and_m) | f.or_m) ^ f.xor_m;
    u &= full;
    if (is_signed && bits < 64 && ((u >> (bits - 1)) & 1ull)) return (int64_t)(u - (1ull << bits));
    return (int64_t)u;
}

inline word_t fault_value(word_t v, const net_fault &f, int bits, bool is_signed) {
    return (word_t)fault_value64(v, f, bits, is_signed);
}

inline bool fault_hits(const net_fault &f, int site, int layer) {
#ifdef SANITAS_FAULT_PORT
    return f.site == site && f.layer == layer;
#else
    (void)f, (void)site, (void)layer;
    return false;
#endif
}

// 32-bit two's-complement add (the accumulator's wrap-around, without signed-overflow UB).
inline word_t add_wrap(word_t a, word_t b) { return (word_t)((uint32_t)a + (uint32_t)b); }

// Extra weight columns of a layer's GEMM: the sanity rows r0 .. r0+e-1 of every group (rows (G, stride, K) int32,
// biases sb (G, stride)) multiply the same im2col tiles as the data columns; s (G*e, Ho*Wo) their int32 wrapping
// accumulators (sanity_unit.h). The first rides the array's checksum PE column, the others take PE columns.
struct sanity_cols {
    const int32_t *rows, *sb;
    int r0, e, stride;
    word_t *s;
};

// conv_gemm: y (O, Ho, Wo) = conv(x (C, H, W), w (O, C/g, kh, kw)) + bias, int32 wrapping; a linear layer is the
// 1x1 case with H = W = 1. Weight / bias / accumulator faults of node `layer` are applied here. `sc`: sanity
// columns computed beside the data columns (none: null).
template <class G>
void conv_gemm(const word_t *x, int C, int H, int W, const int8_t *w, const int32_t *bias, int O, int kh, int kw,
               int stride, int pad, int dil, int groups, word_t *y, int Ho, int Wo, int layer, const net_fault &f,
               net_stats &st, const sanity_cols *sc = 0) {
    typedef typename G::a_t a_t;
    typedef typename G::w_t w_t;
    static a_t a[G::max_m][G::max_k];
    static w_t b[G::max_k][G::cols];
    static typename G::acc_t c[G::max_m][G::cols];
    static typename G::sacc_t s[G::max_m];
    static bool flags[G::max_m];
    const int cg = C / groups, og = O / groups;
    const int K = cg * kh * kw, M = Ho * Wo;
    const bool wf = fault_hits(f, FI_WEIGHT, layer);
    const int rows = G::rows, cols = G::cols;

    const int e = sc ? sc->e : 0;
    // PE-column passes per tile: the data columns, then the sanity columns beyond the checksum PE's one
    const int passes = (og + (e > 1 ? e - 1 : 0) + cols - 1) / cols;
clear_out:
    for (int i = 0; i < O * M; ++i) y[i] = 0;
clear_sanity:
    for (int i = 0; i < groups * e * M; ++i) sc->s[i] = 0;
group:
    for (int g = 0; g < groups; ++g) {
    m_tile:
        for (int m0 = 0; m0 < M; m0 += G::max_m) {
            const int mt = M - m0 < int(G::max_m) ? M - m0 : int(G::max_m);
        k_tile:
            for (int k0 = 0; k0 < K; k0 += G::max_k) {
                const int kt = K - k0 < int(G::max_k) ? K - k0 : int(G::max_k);
            im2col_row:
                for (int r = 0; r < mt; ++r) {
                    const int oh = (m0 + r) / Wo, ow = (m0 + r) % Wo;
                im2col_col:
                    for (int q = 0; q < kt; ++q) {
                        const int kk = k0 + q;
                        const int ci = kk / (kh * kw), ki = (kk / kw) % kh, kj = kk % kw;
                        const int ih = oh * stride - pad + ki * dil, iw = ow * stride - pad + kj * dil;
                        const bool in = ih >= 0 && ih < H && iw >= 0 && iw < W;
                        a[r][q] = in ? a_t(x[((g * cg + ci) * H + ih) * W + iw]) : a_t(0);
                    }
                }
                st.cycles += (long long)passes * (kt + ((mt + rows - 1) / rows) * (kt + rows + cols - 1 + rows));
            sanity_col:
                for (int j = 0; j < e; ++j) {
                    const int32_t *row = sc->rows + ((long)g * sc->stride + sc->r0 + j) * K + k0;
                sanity_col_row:
                    for (int r = 0; r < mt; ++r) {
                        uint32_t acc = 0;
                        for (int q = 0; q < kt; ++q) acc += (uint32_t)((int64_t)a[r][q].to_int() * row[q]);
                        word_t &sv = sc->s[(g * e + j) * M + m0 + r];
                        sv = add_wrap(sv, (word_t)acc);
                    }
                }
                st.macs += (long long)mt * kt * e;
            n_tile:
                for (int n0 = 0; n0 < og; n0 += cols) {
                    const int nt = og - n0 < cols ? og - n0 : cols;
                load_b_row:
                    for (int q = 0; q < kt; ++q) {
                    load_b_col:
                        for (int j = 0; j < cols; ++j) {
                            int wv = 0;
                            if (j < nt) {
                                const int widx = (g * og + n0 + j) * K + k0 + q;
                                wv = w[widx];
                                if (wf && widx == f.index) wv = fault_value(wv, f, 8, true);
                            }
                            b[q][j] = w_t(wv);
                        }
                    }
                    st.flagged += systolic_gemm<G>(mt, kt, nt, a, b, c, s, flags);
                    st.macs += (long long)mt * kt * nt;
                add_tile_row:
                    for (int r = 0; r < mt; ++r) {
                    add_tile_col:
                        for (int j = 0; j < nt; ++j) {
                            const int o = g * og + n0 + j;
                            word_t &acc = y[o * M + m0 + r];
                            acc = add_wrap(acc, (word_t)c[r][j].to_int());
                        }
                    }
                }
            }
        }
    }
    const bool bf = fault_hits(f, FI_BIAS, layer), af = fault_hits(f, FI_ACC, layer);
add_bias:
    for (int o = 0; o < O; ++o) {
        const word_t bo = (bf && o == f.index) ? fault_value(bias[o], f, 32, true) : bias[o];
    add_bias_px:
        for (int m = 0; m < M; ++m) y[o * M + m] = add_wrap(y[o * M + m], bo);
    }
    if (af && f.index >= 0 && f.index < O * M) y[f.index] = fault_value(y[f.index], f, 32, true);
sanity_bias:
    for (int g = 0; g < groups; ++g)
        for (int j = 0; j < e; ++j) {
            const word_t sbv = sc->sb[g * sc->stride + sc->r0 + j];
            for (int m = 0; m < M; ++m) sc->s[(g * e + j) * M + m] = add_wrap(sc->s[(g * e + j) * M + m], sbv);
        }
    st.cycles += O;
}

// round_half_even(v / 2^s) for s > 0, v << -s otherwise (golden/rounding.py: shift_round_half_even).
inline int64_t shift_round_half_even(int64_t v, int s) {
    if (s <= 0) return (int64_t)((uint64_t)v << (-s));
    const int64_t q = v >> s;                  // floor
    const int64_t r = v - (int64_t)((uint64_t)q << s);
    const int64_t half = (int64_t)1 << (s - 1);
    return q + ((r > half || (r == half && (q & 1))) ? 1 : 0);
}

// requant: y = clip(shift_round_half_even(x, shift), lo, hi) over n elements.
inline void requant(const word_t *x, word_t *y, int n, int shift, int lo, int hi, net_stats &st) {
requant_loop:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        int64_t v = shift_round_half_even(x[i], shift);
        y[i] = (word_t)(v < lo ? lo : (v > hi ? hi : v));
    }
    st.cycles += n;
}

// maxpool k x k, stride, padding (-inf) over (C, H, W) -> (C, Ho, Wo).
inline void maxpool(const word_t *x, int C, int H, int W, int k, int stride, int pad, word_t *y, int Ho, int Wo,
                    net_stats &st) {
pool_ch:
    for (int c = 0; c < C; ++c) {
    pool_px:
        for (int p = 0; p < Ho * Wo; ++p) {
            const int oh = p / Wo, ow = p % Wo;
            int64_t best = INT64_MIN;
        pool_win:
            for (int q = 0; q < k * k; ++q) {
                const int ih = oh * stride - pad + q / k, iw = ow * stride - pad + q % k;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W && x[(c * H + ih) * W + iw] > best)
                    best = x[(c * H + ih) * W + iw];
            }
            y[c * Ho * Wo + p] = (word_t)best;
        }
    }
    st.cycles += (long long)C * Ho * Wo * k * k;
}

inline void add(const word_t *a, const word_t *b, word_t *y, int n, net_stats &st) {
add_loop:
    for (int i = 0; i < n; ++i) y[i] = a[i] + b[i];
    st.cycles += n;
}

inline void copy(const word_t *x, word_t *y, int n, net_stats &st) {
copy_loop:
    for (int i = 0; i < n; ++i) y[i] = x[i];
    st.cycles += n;
}

// gsum: y[c] = sum over H*W of x[c] (exact; the 1/(H*W) is folded into the next requantisation).
inline void gsum(const word_t *x, int C, int HW, word_t *y, net_stats &st) {
gsum_ch:
    for (int c = 0; c < C; ++c) {
        int64_t acc = 0;
    gsum_px:
        for (int p = 0; p < HW; ++p) acc += x[c * HW + p];
        y[c] = (word_t)acc;
    }
    st.cycles += (long long)C * HW;
}

// Per-image weighted checksum of a tensor: [sum x_i, sum (i + 1) x_i] modulo 2^64 (protect/seal.py: checksums;
// in hardware Fletcher's running sums, two adds per element). DMR records it beside every checkpoint.
struct tensor_sum {
    uint64_t s0, s1;
};

inline tensor_sum tensor_checksum(const word_t *x, int n) {
    tensor_sum c = {0, 0};
checksum_loop:
    for (int i = 0; i < n; ++i) {
        const uint64_t v = (uint64_t)(int64_t)x[i];
        c.s0 += v;
        c.s1 += (uint64_t)(i + 1) * v;
    }
    return c;
}

inline bool checksum_equal(const tensor_sum &a, const tensor_sum &b) { return a.s0 == b.s0 && a.s1 == b.s1; }
inline bool checksum_equal(const tensor_sum &a, const uint64_t c[2]) { return a.s0 == c[0] && a.s1 == c[1]; }

// The fault as the duplicate lane sees it: only memory faults (weight, bias words) reach both lanes.
inline net_fault memory_only(const net_fault &f) {
    net_fault m = f;
    if (m.site == FI_ACC || m.site == FI_OUTPUT || m.site == FI_INPUT) m.site = FI_NONE;
    return m;
}

// Apply an output / input-read fault (flat index into one image's tensor of n elements).
inline void fault_tensor(word_t *t, int n, const net_fault &f, int bits, bool is_signed) {
    if (f.index >= 0 && f.index < n) t[f.index] = fault_value(t[f.index], f, bits, is_signed);
}

inline void fault_tensor64(int64_t *t, int n, const net_fault &f, int bits) {
    if (f.index >= 0 && f.index < n) t[f.index] = fault_value64(t[f.index], f, bits, true);
}

// ------------------------------------------------------------------------------------ DMR's two parallel lanes
// A duplicated elementwise node (DMR) runs as two lanes of one datapath: every loop iteration evaluates the
// element in both lanes (two instances of the per-element function: INLINE off, II = 1 needs both at once) and
// each lane writes its own tensor, so the duplicate costs no cycles of its own. A lane's write port applies the
// fault its output register sees (the hooked lane: FI_OUTPUT; the duplicate: FI_DMR; the same element and masks
// as fault_tensor on the stored tensor) and accumulates the checksum of what it wrote in the same pass.
struct lane {
    word_t *y;
    bool hit;          // the fault port reaches this lane's output
    const net_fault *f;
    int bits;
    bool is_signed;
    tensor_sum cs;     // tensor_checksum of y once every element is written (each exactly once)
};

inline lane make_lane(word_t *y, const net_fault &f, int site, int layer, int bits, bool is_signed) {
    lane l = {y, fault_hits(f, site, layer), &f, bits, is_signed, {0, 0}};
    return l;
}

inline void lane_put(lane &l, int i, word_t v) {
    if (l.hit && i == l.f->index) v = fault_value(v, *l.f, l.bits, l.is_signed);
    l.y[i] = v;
    const uint64_t u = (uint64_t)(int64_t)v;
    l.cs.s0 += u;
    l.cs.s1 += (uint64_t)(i + 1) * u;
}

inline word_t requant_px(word_t x, int shift, int lo, int hi) {
#pragma HLS INLINE off
    const int64_t v = shift_round_half_even(x, shift);
    return (word_t)(v < lo ? lo : (v > hi ? hi : v));
}

inline word_t add_px(word_t a, word_t b) {
#pragma HLS INLINE off
    return a + b;
}

inline void requant2(const word_t *x, int n, int shift, int lo, int hi, lane &a, lane &b, net_stats &st) {
requant2_loop:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        lane_put(a, i, requant_px(x[i], shift, lo, hi));
        lane_put(b, i, requant_px(x[i], shift, lo, hi));
    }
    st.cycles += n;
}

inline void add2(const word_t *x0, const word_t *x1, int n, lane &a, lane &b, net_stats &st) {
add2_loop:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        lane_put(a, i, add_px(x0[i], x1[i]));
        lane_put(b, i, add_px(x0[i], x1[i]));
    }
    st.cycles += n;
}

// copy: a concat part at offset off, flatten.
inline void copy2(const word_t *x, int off, int n, lane &a, lane &b, net_stats &st) {
copy2_loop:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        lane_put(a, off + i, x[i]);
        lane_put(b, off + i, x[i]);
    }
    st.cycles += n;
}

inline void maxpool2(const word_t *x, int C, int H, int W, int k, int stride, int pad, int Ho, int Wo, lane &a,
                     lane &b, net_stats &st) {
pool2_ch:
    for (int c = 0; c < C; ++c) {
    pool2_px:
        for (int p = 0; p < Ho * Wo; ++p) {
            const int oh = p / Wo, ow = p % Wo;
            int64_t best_a = INT64_MIN, best_b = INT64_MIN;
        pool2_win:
            for (int q = 0; q < k * k; ++q) {
#pragma HLS PIPELINE II = 1
                const int ih = oh * stride - pad + q / k, iw = ow * stride - pad + q % k;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                    const word_t v = x[(c * H + ih) * W + iw];
                    if (v > best_a) best_a = v;   // lane a's comparator
                    if (v > best_b) best_b = v;   // lane b's comparator
                }
            }
            lane_put(a, c * Ho * Wo + p, (word_t)best_a);
            lane_put(b, c * Ho * Wo + p, (word_t)best_b);
        }
    }
    st.cycles += (long long)C * Ho * Wo * k * k;
}

inline void gsum2(const word_t *x, int C, int HW, lane &a, lane &b, net_stats &st) {
gsum2_ch:
    for (int c = 0; c < C; ++c) {
        int64_t acc_a = 0, acc_b = 0;
    gsum2_px:
        for (int p = 0; p < HW; ++p) {
#pragma HLS PIPELINE II = 1
            acc_a += x[c * HW + p];
            acc_b += x[c * HW + p];
        }
        lane_put(a, c, (word_t)acc_a);
        lane_put(b, c, (word_t)acc_b);
    }
    st.cycles += (long long)C * HW;
}

// The fault as the GEMM of a sanity-guarded layer sees it: its memory faults were applied at the unit's reads.
inline net_fault without_memory(const net_fault &f) {
    net_fault m = f;
    if (m.site == FI_WEIGHT || m.site == FI_BIAS) m.site = FI_NONE;
    return m;
}

}  // namespace sanitas

#endif  // SANITAS_LAYERS_H
