// sanitas/sanity_unit.h -- the sanity unit of the sanitas accelerator: Hamming-indexed sanity rows as extra weight
// columns of a conv/linear layer's GEMM, the lazy layer-wide check, location, correction, the scrub of the
// parameter memory with its seals, spatial checksums of depthwise convs and the patrol lines
// (docs/architecture.md, "The accelerator"; the golden algorithms are python/sanitas/protect/{sanity,layerwide,
// code,seal,spatial,patrol}.py, ported here word for word so that logits and counters agree fault by fault).
//
// A sanity layer's parameter memory is mutable (a fault delivered at a read stays until scrubbed, as
// protect.base.Memory): weight (O, K) int8, bias (O,) int32, sanity rows (G, M+1, K) and sanity biases (G, M+1)
// int32 words (int16 storage where the exact width fits: faults act on row_bits), the seals (G, 2, 4) int64,
// the weighted layer-wide row wx (G, K) / bx (G,) of lazy "weighted" layers and the parameter seals (2, 4) of
// depthwise convs; `pristine` holds the trusted image (weights.h) a reload rewrites it from.
//
//   sanity_conv   fast path: the data GEMM + the selected sanity rows as extra columns of the same im2col tiles
//                 (lazy: the total row only, it rides the array's checksum PE; eager: all M + 1), residual per
//                 pixel wrap32(cover @ y + s); lazy also the layer-wide check on the box sums of the input
//                 (weighted: one position-weighted row, exact mod 2^64; hamming: the M partial rows mod 2^32).
//                 The box sums and the check MACs (input + stored rows only) run in the check unit concurrently
//                 with the GEMM (gemm_and_check: one DATAFLOW region; check_cycles counts what is not hidden).
//                 On an alarm: scrub, rebuild wx/bx, recompute all M+1 sanity neurons, locate, correct y_i - r.
//   spatial_conv  depthwise convs (one output per group): parameter seals checked before use, per-channel
//                 wrap32(sum_p y_c - (B_c . w_c + P b_c)); a failing channel is recomputed.
//   sanity_patrol the patrol lines lo..hi of one guard (K weight columns, the bias codeword, the seals, and for a
//                 depthwise conv the parameter seals): verify, repair, escalate (reload) what the code cannot.
// Counters are the regmap.STATUS_COUNTERS indices (SC_*).
#ifndef SANITAS_SANITY_UNIT_H
#define SANITAS_SANITY_UNIT_H

#include <stdint.h>
#include <string.h>

#include "sanitas/layers.h"

// Elements of the unit's scratch buffers (box sums, sanity accumulators, verdicts); the generated network
// defines it as the largest need of its layers before including this header.
#ifndef SANITAS_SU_BUF
#define SANITAS_SU_BUF 65536
#endif

namespace sanitas {

enum { SC_DET = 0, SC_LOC = 1, SC_COR = 2, SC_REP = 3, SC_RB = 4, SC_UNC = 5, SC_ESC = 6, SC_SCRUB = 7 };
enum { LW_NONE = 0, LW_WEIGHTED = 1, LW_HAMMING = 2 };             // layer-wide check mode (eager: none)
enum { LOC_OK = 0, LOC_DATA = 1, LOC_SANITY = 2, LOC_UNC = 3 };    // code.locate verdicts
enum { SEAL_OK = 0, SEAL_WORD = 1, SEAL_SEAL = 2, SEAL_BAD = 3 };  // seal.check verdicts

inline int32_t wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

// The geometry of one guarded conv/linear layer (a linear layer: C_in = F, H = W = 1, 1x1 kernel).
struct sanity_layer {
    int cin, h, w, o, kh, kw, stride, pad, dil, groups, ho, wo;  // the conv
    int G, C, K, M;        // code groups, outputs per group, weight words per output, partial rows
    bool lazy;             // lazy location (total row + layer-wide check) or eager (all M + 1 rows)
    int lw_mode;           // LW_* of the layer-wide check
    int row_bits;          // storage width of a sanity row word (16 or 32)
    bool spatial;          // depthwise: spatial checksums (spatial.SpatialSanity)
};

struct sanity_image {      // the trusted image (weights.h) of one guarded layer
    const int8_t *w;
    const int32_t *b, *rows, *sb;
    const int64_t *seals;
    const int32_t *wx;
    const int64_t *bx, *psum;
};

struct sanity_mem {        // the mutable parameter memory of one guarded layer
    int8_t *w;
    int32_t *b, *rows, *sb;
    int64_t *seals;
    int32_t *wx;
    int64_t *bx, *psum;
    sanity_image pristine;
};

// Rewrite every word from the trusted image (Memory.reload: escalation, the per-layer reload port).
inline void sanity_reload(const sanity_layer &L, sanity_mem &m) {
    memcpy(m.w, m.pristine.w, (size_t)L.o * L.K);
    memcpy(m.b, m.pristine.b, sizeof(int32_t) * L.o);
    memcpy(m.rows, m.pristine.rows, sizeof(int32_t) * L.G * (L.M + 1) * L.K);
    memcpy(m.sb, m.pristine.sb, sizeof(int32_t) * L.G * (L.M + 1));
    memcpy(m.seals, m.pristine.seals, sizeof(int64_t) * L.G * 8);
    if (L.lw_mode == LW_WEIGHTED) {
        memcpy(m.wx, m.pristine.wx, sizeof(int32_t) * L.G * L.K);
        memcpy(m.bx, m.pristine.bx, sizeof(int64_t) * L.G);
    }
    if (L.spatial) memcpy(m.psum, m.pristine.psum, sizeof(int64_t) * 8);
}

// Hamming cover (code.hamming_cover): row r < M covers output c when bit r of c + 1 is set; row M covers all.
inline int cover(int r, int c, int M) { return r >= M ? 1 : (((c + 1) >> r) & 1); }

// The im2col element (pixel p, reduction index k) of group g: the layer input at the tap, 0 in the padding.
inline int64_t im2col_at(const word_t *x, const sanity_layer &L, int g, int p, int k) {
    const int cg = L.cin / L.groups;
    const int ci = k / (L.kh * L.kw), ki = (k / L.kw) % L.kh, kj = k % L.kw;
    const int oh = p / L.wo, ow = p % L.wo;
    const int ih = oh * L.stride - L.pad + ki * L.dil, iw = ow * L.stride - L.pad + kj * L.dil;
    if (ih < 0 || ih >= L.h || iw < 0 || iw >= L.w) return 0;
    return x[((g * cg + ci) * L.h + ih) * L.w + iw];
}

// A memory read through the fault port: a fault delivered at the read stays in memory (Memory.read).
template <class T>
inline void read_fault(T *mem, int n, int site, int layer, const net_fault &f, int bits) {
    if (fault_hits(f, site, layer) && f.index >= 0 && f.index < n)
        mem[f.index] = (T)fault_value64((int64_t)mem[f.index], f, bits, true);
}

// ------------------------------------------------------------------------------------------------ seal.py
struct seal_verdict {
    int status;
    long pos;
    int64_t err;
};

template <class T>
inline void weighted_sums(const T *a, long n, uint64_t s[3]) {
    s[0] = s[1] = s[2] = 0;
seal_sums:
    for (long i = 0; i < n; ++i) {
        const uint64_t v = (uint64_t)(int64_t)a[i], p = (uint64_t)(i + 1);
        s[0] += v;
        s[1] += v * p;
        s[2] += v * p * p;
    }
}

// seal.check: verify the n words of a against their stored seal [S0, S1, S2, C] (mod 2^64).
template <class T>
inline seal_verdict seal_check(const T *a, long n, const int64_t *stored) {
    uint64_t f[3];
    weighted_sums(a, n, f);
    const uint64_t s[4] = {(uint64_t)stored[0], (uint64_t)stored[1], (uint64_t)stored[2], (uint64_t)stored[3]};
    const uint64_t fresh[4] = {f[0], f[1], f[2], (uint64_t)0 - (f[0] + f[1] + f[2])};
    seal_verdict v = {SEAL_BAD, -1, 0};
    if (s[0] + s[1] + s[2] + s[3] == 0) {
        if (f[0] == s[0] && f[1] == s[1] && f[2] == s[2]) {
            v.status = SEAL_OK;
            return v;
        }
        const int64_t d0 = (int64_t)(f[0] - s[0]), d1 = (int64_t)(f[1] - s[1]), d2 = (int64_t)(f[2] - s[2]);
        if (d0 != 0) {
            bool div;
            int64_t q;
            if (d0 == -1) {
                div = true;
                q = (int64_t)((uint64_t)0 - (uint64_t)d1);
                if (d1 == INT64_MIN) div = false;   // q = 2^63 > n
            } else {
                div = d1 % d0 == 0;
                q = div ? d1 / d0 : 0;
            }
            if (div && q >= 1 && q <= n && (uint64_t)d2 == (uint64_t)q * (uint64_t)d1) {
                v.status = SEAL_WORD;
                v.pos = (long)(q - 1);
                v.err = d0;
            }
        }
        return v;
    }
    int ndiff = 0, at = -1;
    for (int j = 0; j < 4; ++j)
        if (s[j] != fresh[j]) ndiff++, at = j;
    if (ndiff == 1) {
        v.status = SEAL_SEAL;
        v.pos = at;
        v.err = (int64_t)fresh[at];
    }
    return v;
}

// ------------------------------------------------------------------------------------------------ code.py
// code.locate over one residual vector r[0..M] (r[M] the total) of c protected outputs; *idx the output / row.
inline int code_locate(const int64_t *r, int M, int c, int *idx) {
    const int64_t rt = r[M];
    int nfail = 0, first = -1;
    long long bits = 0;
    bool consistent = true;
    for (int m = 0; m < M; ++m) {
        if (r[m] != 0) {
            nfail++;
            if (first < 0) first = m;
            bits |= 1LL << m;
            if (r[m] != rt) consistent = false;
        }
    }
    const long long id = bits - 1;
    if (rt == 0 && nfail == 0) return LOC_OK;
    if (rt != 0 && nfail == 0) {
        *idx = M;
        return LOC_SANITY;
    }
    if (rt == 0 && nfail == 1) {
        *idx = first;
        return LOC_SANITY;
    }
    if (rt != 0 && consistent && id >= 0 && id < c) {
        *idx = (int)id;
        return LOC_DATA;
    }
    return LOC_UNC;
}

// Residual vector of weight codeword (g, column k): cover @ W[g, :, k] + rows[g, :, k], exact.
inline void weight_residual(const sanity_layer &L, const sanity_mem &m, int g, int k, int64_t *res) {
    for (int r = 0; r <= L.M; ++r) {
        int64_t v = m.rows[(g * (L.M + 1) + r) * L.K + k];
        for (int c = 0; c < L.C; ++c)
            if (cover(r, c, L.M)) v += m.w[(g * L.C + c) * L.K + k];
        res[r] = v;
    }
}

// Residual vector of the bias codeword of group g, modulo 2^32.
inline void bias_residual(const sanity_layer &L, const sanity_mem &m, int g, int64_t *res) {
    for (int r = 0; r <= L.M; ++r) {
        uint32_t v = (uint32_t)m.sb[g * (L.M + 1) + r];
        for (int c = 0; c < L.C; ++c)
            if (cover(r, c, L.M)) v += (uint32_t)m.b[g * L.C + c];
        res[r] = (int32_t)v;
    }
}

// code.verify_sanity: the sanity memory against its seals; a single faulty word or seal word is rebuilt.
inline void verify_sanity(const sanity_layer &L, sanity_mem &m, int *nrep, int *unc) {
    for (int g = 0; g < L.G; ++g) {
        for (int j = 0; j < 2; ++j) {
            int32_t *arr = j == 0 ? m.rows + (long)g * (L.M + 1) * L.K : m.sb + g * (L.M + 1);
            const long n = j == 0 ? (long)(L.M + 1) * L.K : (L.M + 1);
            int64_t *seal = m.seals + (g * 2 + j) * 4;
            const seal_verdict v = seal_check(arr, n, seal);
            if (v.status == SEAL_OK) continue;
            if (v.status == SEAL_WORD) arr[v.pos] = (int32_t)((int64_t)arr[v.pos] - v.err);
            else if (v.status == SEAL_SEAL) seal[v.pos] = v.err;
            else {
                (*unc)++;
                continue;
            }
            (*nrep)++;
        }
    }
}

// code.scrub over weight columns [k_lo, k_hi), + the bias codeword, + the seals' check words.
inline void code_scrub(const sanity_layer &L, sanity_mem &m, int k_lo, int k_hi, bool with_bias, bool with_seals,
                       int *nrep_out, int *unc_out) {
    int64_t res[33];
    bool any = false;
scrub_check:
    for (int g = 0; g < L.G && !any; ++g) {
        for (int k = k_lo; k < k_hi && !any; ++k) {
            weight_residual(L, m, g, k, res);
            for (int r = 0; r <= L.M; ++r) any |= res[r] != 0;
        }
        if (with_bias && !any) {
            bias_residual(L, m, g, res);
            for (int r = 0; r <= L.M; ++r) any |= res[r] != 0;
        }
    }
    if (with_seals && !any)
        for (int g = 0; g < L.G * 2; ++g) {
            const int64_t *s = m.seals + g * 4;
            any |= (uint64_t)s[0] + (uint64_t)s[1] + (uint64_t)s[2] + (uint64_t)s[3] != 0;
        }
    int nrep = 0, unc = 0;
    if (any) {
        verify_sanity(L, m, &nrep, &unc);   // before any repair reads the sanity rows
        if (!unc) {
        scrub_repair:
            for (int g = 0; g < L.G; ++g) {
                for (int k = k_lo; k < k_hi; ++k) {
                    weight_residual(L, m, g, k, res);
                    int idx = -1;
                    const int st = code_locate(res, L.M, L.C, &idx);
                    if (st == LOC_OK) continue;
                    if (st != LOC_DATA) {
                        unc++;
                        continue;
                    }
                    int8_t &wv = m.w[(g * L.C + idx) * L.K + k];
                    const int64_t v = (int64_t)wv - res[L.M];
                    if (v < -128 || v > 127) {
                        unc++;
                        continue;
                    }
                    wv = (int8_t)v;
                    nrep++;
                }
                if (with_bias) {
                    bias_residual(L, m, g, res);
                    int idx = -1;
                    const int st = code_locate(res, L.M, L.C, &idx);
                    if (st == LOC_DATA) {
                        int32_t &bv = m.b[g * L.C + idx];
                        bv = wrap32((int64_t)bv - res[L.M]);
                        nrep++;
                    } else if (st != LOC_OK) {
                        unc++;
                    }
                }
            }
        }
    }
    *nrep_out += nrep;
    *unc_out += unc;
}

// layerwide.LayerCheck.rebuild (weighted mode): wx of columns [k_lo, k_hi) (+ bx) from the verified weights;
// returns the words rewritten.
inline int rebuild_derived(const sanity_layer &L, sanity_mem &m, int k_lo, int k_hi, bool with_bias) {
    if (L.lw_mode != LW_WEIGHTED) return 0;
    int changed = 0;
    for (int g = 0; g < L.G; ++g) {
        for (int k = k_lo; k < k_hi; ++k) {
            int64_t v = 0;
            for (int c = 0; c < L.C; ++c) v -= (int64_t)(c + 1) * m.w[(g * L.C + c) * L.K + k];
            if (m.wx[g * L.K + k] != v) changed++, m.wx[g * L.K + k] = (int32_t)v;
        }
        if (with_bias) {
            uint64_t v = 0;
            for (int c = 0; c < L.C; ++c) v -= (uint64_t)(c + 1) * (uint64_t)(int64_t)m.b[g * L.C + c];
            if ((uint64_t)m.bx[g] != v) changed++, m.bx[g] = (int64_t)v;
        }
    }
    return changed;
}

// ------------------------------------------------------------------------------------------------ layerwide.py
// Box sums B[g*K + k] = sum over output pixels of the im2col element (spatial.box_sums; linear: the input).
inline void box_sums(const word_t *x, const sanity_layer &L, int64_t *B) {
    const int P = L.ho * L.wo;
box_sum:
    for (int g = 0; g < L.groups; ++g)
        for (int k = 0; k < L.K; ++k) {
            int64_t s = 0;
            for (int p = 0; p < P; ++p) s += im2col_at(x, L, g, p, k);
            B[g * L.K + k] = s;
        }
}

// LayerCheck.sums: weighted hs[g] (int64, mod 2^64) or hamming hs[g*M + r] (mod 2^32), from memory m.
inline void lw_sums(const sanity_layer &L, const sanity_mem &m, const int64_t *B, int64_t *hs, net_stats &st) {
    const int64_t P = (int64_t)L.ho * L.wo;
    for (int g = 0; g < L.G; ++g) {
        if (L.lw_mode == LW_WEIGHTED) {
            uint64_t v = 0;
            for (int k = 0; k < L.K; ++k) v += (uint64_t)B[g * L.K + k] * (uint64_t)(int64_t)m.wx[g * L.K + k];
            hs[g] = (int64_t)(v + (uint64_t)P * (uint64_t)m.bx[g]);
            st.macs += L.K;
        } else {
            for (int r = 0; r < L.M; ++r) {
                uint32_t v = 0;
                for (int k = 0; k < L.K; ++k)
                    v += (uint32_t)((uint64_t)B[g * L.K + k] * (uint64_t)(int64_t)m.rows[(g * (L.M + 1) + r) * L.K + k]);
                hs[g * L.M + r] = (int32_t)(v + (uint32_t)P * (uint32_t)m.sb[g * (L.M + 1) + r]);
            }
            st.macs += (long long)L.M * L.K;
        }
    }
}

// LayerCheck.residual: true when the layer-wide check fails for outputs y and sums hs.
inline bool lw_fails(const sanity_layer &L, const word_t *y, const int64_t *hs) {
    const int P = L.ho * L.wo;
    for (int g = 0; g < L.G; ++g) {
        if (L.lw_mode == LW_WEIGHTED) {
            uint64_t v = (uint64_t)hs[g];
            for (int c = 0; c < L.C; ++c) {
                int64_t ys = 0;
                for (int p = 0; p < P; ++p) ys += y[(g * L.C + c) * P + p];
                v += (uint64_t)(c + 1) * (uint64_t)ys;
            }
            if (v != 0) return true;
        } else {
            for (int r = 0; r < L.M; ++r) {
                uint32_t v = (uint32_t)hs[g * L.M + r];
                for (int c = 0; c < L.C; ++c) {
                    if (!cover(r, c, L.M)) continue;
                    uint32_t ys = 0;
                    for (int p = 0; p < P; ++p) ys += (uint32_t)y[(g * L.C + c) * P + p];
                    v += ys;
                }
                if (v != 0) return true;
            }
        }
    }
    return false;
}

// The check unit: the work that depends only on the layer input and the stored check rows (box sums on the
// integral-image adder, then the check dot products on the unit's MAC), into B and hs; it runs concurrently with
// the layer's GEMM (sanity_conv's DATAFLOW region: separate inputs read, separate outputs written, its own counters).
inline void check_unit(const word_t *x, const sanity_layer &L, const sanity_mem &m, int64_t *B, int64_t *hs,
                       net_stats &cst) {
    if (!L.lazy) return;   // eager: every check rides the GEMM's columns
    box_sums(x, L, B);
    lw_sums(L, m, B, hs, cst);
}

// Cycles of the sanity unit, fault-free (cycles.cycle_model):
//   overlap  the check unit (box sums: one padded input element per cycle, then one box per (channel, tap); a
//            linear layer's box sums are its input; one cycle per check MAC) -- concurrent with the GEMM;
//   serial   a depthwise conv's parameter seals (one cycle per sealed word), checked before the GEMM uses them;
//   tail     after the GEMM, one cycle per check word compared (the layer-wide sums, a depthwise conv's channels).
// The per-pixel residuals and the output channel sums accumulate during the array's read-out (no cycles of their
// own). check_cycles: what the unit adds to a layer whose GEMM took `gemm` cycles (max(gemm, overlap) - gemm +
// serial + tail).
inline long long check_overlap_cycles(const sanity_layer &L) {
    if (!L.lazy && !L.spatial) return 0;
    const bool conv = L.kh * L.kw > 1 || L.h > 1 || L.w > 1;
    long long c = conv ? (long long)L.cin * (L.h + 2 * L.pad) * (L.w + 2 * L.pad) + (long long)L.cin * L.kh * L.kw : 0;
    if (L.spatial) return c + (long long)L.o * (L.K + 1);
    return c + (long long)L.G * (L.lw_mode == LW_WEIGHTED ? 1 : L.M) * L.K;
}

inline long long check_serial_cycles(const sanity_layer &L) { return L.spatial ? (long long)L.o * L.K + L.o : 0; }

inline long long check_tail_cycles(const sanity_layer &L) {
    if (L.spatial) return L.o;
    if (!L.lazy) return 0;
    return (long long)L.G * (L.lw_mode == LW_WEIGHTED ? 1 : L.M);
}

inline long long check_cycles(const sanity_layer &L, long long gemm) {
    const long long ov = check_overlap_cycles(L);
    return (ov > gemm ? ov - gemm : 0) + check_serial_cycles(L) + check_tail_cycles(L);
}

// ------------------------------------------------------------------------------------------------ sanity.py
// Sanity accumulators of all M + 1 rows of group g at pixel p, from memory (the fault path's recompute).
inline void sanity_neurons(const word_t *x, const sanity_layer &L, const sanity_mem &m, int g, int p, int64_t *s,
                           const int64_t *col) {
    for (int r = 0; r <= L.M; ++r) {
        const int32_t *row = m.rows + (long)(g * (L.M + 1) + r) * L.K;
        uint32_t v = (uint32_t)m.sb[g * (L.M + 1) + r];
        for (int k = 0; k < L.K; ++k) v += (uint32_t)((uint64_t)col[k] * (uint64_t)(int64_t)row[k]);
        s[r] = (int32_t)v;
    }
    (void)x;
}

// SanityLayer._correct: scrub, rebuild, recompute the sanity neurons, locate and correct; returns ok.
inline bool sanity_correct(const word_t *x, const sanity_layer &L, sanity_mem &m, word_t *y, int *cnt,
                           int64_t *B, int64_t *hs, net_stats &st) {
    int nrep = 0, unc = 0;
    code_scrub(L, m, 0, L.K, true, true, &nrep, &unc);
    cnt[SC_REP] += nrep;
    if (unc) return false;
    if (L.lazy) cnt[SC_REP] += rebuild_derived(L, m, 0, L.K, true);
    const int P = L.ho * L.wo;
    static int64_t col[SANITAS_SU_BUF];
    static int8_t verdict[SANITAS_SU_BUF];
    static int32_t where[SANITAS_SU_BUF];   // the located output (up to C - 1)
    static int32_t rtot[SANITAS_SU_BUF];
    int64_t s[33], res[33];
    // pass 1: every pixel's verdict (nothing changes when any pixel is uncorrectable)
locate_px:
    for (int g = 0; g < L.G; ++g)
        for (int p = 0; p < P; ++p) {
            for (int k = 0; k < L.K; ++k) col[k] = im2col_at(x, L, g, p, k);
            sanity_neurons(x, L, m, g, p, s, col);
            for (int r = 0; r <= L.M; ++r) {
                uint32_t v = (uint32_t)s[r];
                for (int c = 0; c < L.C; ++c)
                    if (cover(r, c, L.M)) v += (uint32_t)y[(g * L.C + c) * P + p];
                res[r] = (int32_t)v;
            }
            int idx = -1;
            const int v = code_locate(res, L.M, L.C, &idx);
            if (v == LOC_UNC || v == LOC_SANITY) return false;
            verdict[g * P + p] = (int8_t)v;
            where[g * P + p] = idx;
            rtot[g * P + p] = (int32_t)res[L.M];
        }
correct_px:
    for (int g = 0; g < L.G; ++g)
        for (int p = 0; p < P; ++p)
            if (verdict[g * P + p] == LOC_DATA) {
                word_t &v = y[(g * L.C + where[g * P + p]) * P + p];
                v = wrap32((int64_t)v - rtot[g * P + p]);
                cnt[SC_LOC]++;
                cnt[SC_COR]++;
            }
    if (L.lazy) {
        net_stats scratch_st;
        box_sums(x, L, B);
        lw_sums(L, m, B, hs, scratch_st);
        if (lw_fails(L, y, hs)) return false;
    }
    (void)st;
    return true;
}

// The layer's GEMM (with the sanity columns) and its check unit as the two processes of one DATAFLOW region:
// both read the layer input (a dual-port buffer), the GEMM writes y and the sanity accumulators, the check unit
// B and hs, each its own counters, so they run concurrently (check_cycles counts max(gemm, overlap) + the tail).
template <class GC>
void gemm_and_check(const word_t *x, const sanity_layer &L, const sanity_mem &m, word_t *y, int layer,
                    const net_fault &gf, net_stats &st, sanity_cols *sc, int64_t *B, int64_t *hs, net_stats &cst) {
#pragma HLS DATAFLOW
    conv_gemm<GC>(x, L.cin, L.h, L.w, m.w, m.b, L.o, L.kh, L.kw, L.stride, L.pad, L.dil, L.groups, y, L.ho, L.wo,
                  layer, gf, st, sc);
    check_unit(x, L, m, B, hs, cst);
}

// SanityLayer.run for one image: y (O, Ho, Wo) of input x, the sanity checks and, on an alarm, the correction.
// Returns ok (false: a detected fault could not be corrected). acc_f is the fault with the memory sites removed
// (the memory faults were applied at the reads).
template <class GC>
bool sanity_conv(const word_t *x, const sanity_layer &L, sanity_mem &m, word_t *y, int layer, const net_fault &f,
                 net_stats &st, int *cnt) {
    const int P = L.ho * L.wo;
    const int e = L.lazy ? 1 : L.M + 1, r0 = L.lazy ? L.M : 0;
    read_fault(m.w, L.o * L.K, FI_WEIGHT, layer, f, 8);
    read_fault(m.b, L.o, FI_BIAS, layer, f, 32);
    read_fault(m.rows, L.G * (L.M + 1) * L.K, FI_SANITY_W, layer, f, L.row_bits);
    read_fault(m.sb, L.G * (L.M + 1), FI_SANITY_B, layer, f, 32);
    read_fault(m.seals, L.G * 8, FI_SANITY_SUM, layer, f, 64);
    if (L.lazy && L.lw_mode == LW_WEIGHTED) {   // the check unit's own memory words
        read_fault(m.wx, L.G * L.K, FI_SANITY_WX, layer, f, 32);
        read_fault(m.bx, L.G, FI_SANITY_BX, layer, f, 64);
    }
    static word_t sacc[SANITAS_SU_BUF];
    static int64_t B[SANITAS_SU_BUF];
    static int64_t hs[SANITAS_SU_BUF];
    sanity_cols sc = {m.rows, m.sb, r0, e, L.M + 1, sacc};
    net_stats cst;   // the check unit's counters, merged after the region
    const long long c0 = st.cycles;
    gemm_and_check<GC>(x, L, m, y, layer, without_memory(f), st, &sc, B, hs, cst);
    st.macs += cst.macs;
    st.cycles += check_cycles(L, st.cycles - c0);
    if (fault_hits(f, FI_OUTPUT, layer)) fault_tensor(y, L.o * P, f, 32, true);
    if (fault_hits(f, FI_SANITY_ACC, layer)) fault_tensor(sacc, L.G * e * P, f, 32, true);
    bool fired = false;
residual_px:
    for (int g = 0; g < L.G; ++g)
        for (int j = 0; j < e; ++j)
            for (int p = 0; p < P; ++p) {
                uint32_t v = (uint32_t)sacc[(g * e + j) * P + p];
                for (int c = 0; c < L.C; ++c)
                    if (cover(r0 + j, c, L.M)) v += (uint32_t)y[(g * L.C + c) * P + p];
                fired |= v != 0;
            }
    if (L.lazy) {
        if (fault_hits(f, FI_SANITY_SPATIAL, layer))
            fault_tensor64(hs, L.lw_mode == LW_WEIGHTED ? L.G : L.G * L.M, f,
                           L.lw_mode == LW_WEIGHTED ? 64 : 32);
        fired |= lw_fails(L, y, hs);
    }
    if (!fired) return true;
    cnt[SC_DET]++;
    return sanity_correct(x, L, m, y, cnt, B, hs, st);
}

// ------------------------------------------------------------------------------------------------ spatial.py
inline bool params_ok(const sanity_layer &L, const sanity_mem &m) {
    return seal_check(m.w, (long)L.o * L.K, m.psum).status == SEAL_OK &&
           seal_check(m.b, L.o, m.psum + 4).status == SEAL_OK;
}

// SpatialSanity._repair_params: scrub with the code, then the parameter seals' own words.
inline void repair_params(const sanity_layer &L, sanity_mem &m, int *nrep, int *unc) {
    int u = 0;
    code_scrub(L, m, 0, L.K, true, true, nrep, &u);
    if (u) {
        *unc += u;
        return;
    }
    for (int j = 0; j < 2; ++j) {
        const seal_verdict v = j == 0 ? seal_check(m.w, (long)L.o * L.K, m.psum) : seal_check(m.b, L.o, m.psum + 4);
        if (v.status == SEAL_SEAL) {
            m.psum[j * 4 + v.pos] = v.err;
            (*nrep)++;
        } else if (v.status != SEAL_OK) {
            (*unc)++;
        }
    }
}

// Spatial checksums of channel c: wrap32(B_c . w_c + P b_c) (expected sum of y's channel c).
inline int32_t spatial_expected(const sanity_layer &L, const sanity_mem &m, const int64_t *B, int c) {
    uint32_t v = (uint32_t)((uint32_t)(L.ho * L.wo) * (uint32_t)m.b[c]);
    for (int k = 0; k < L.K; ++k) v += (uint32_t)((uint64_t)B[c * L.K + k] * (uint64_t)(int64_t)m.w[c * L.K + k]);
    return (int32_t)v;
}

// The check unit of a depthwise conv: box sums of the input, then the expected channel sums ex (B_c . w_c + P b_c),
// concurrent with the GEMM (spatial_conv's DATAFLOW region).
inline void spatial_unit(const word_t *x, const sanity_layer &L, const sanity_mem &m, int64_t *B, word_t *ex,
                         net_stats &cst) {
    box_sums(x, L, B);
spatial_ex:
    for (int c = 0; c < L.o; ++c) ex[c] = spatial_expected(L, m, B, c);
    cst.macs += (long long)L.o * (L.K + 1);
}

// A depthwise conv's GEMM and its check unit as the two processes of one DATAFLOW region (as gemm_and_check).
template <class GC>
void gemm_and_spatial(const word_t *x, const sanity_layer &L, const sanity_mem &m, word_t *y, int layer,
                      const net_fault &gf, net_stats &st, int64_t *B, word_t *ex, net_stats &cst) {
#pragma HLS DATAFLOW
    conv_gemm<GC>(x, L.cin, L.h, L.w, m.w, m.b, L.o, L.kh, L.kw, L.stride, L.pad, L.dil, L.groups, y, L.ho, L.wo,
                  layer, gf, st);
    spatial_unit(x, L, m, B, ex, cst);
}

// SpatialSanity.run for one image; returns ok.
template <class GC>
bool spatial_conv(const word_t *x, const sanity_layer &L, sanity_mem &m, word_t *y, int layer, const net_fault &f,
                  net_stats &st, int *cnt) {
    const int P = L.ho * L.wo;
    read_fault(m.w, L.o * L.K, FI_WEIGHT, layer, f, 8);
    read_fault(m.b, L.o, FI_BIAS, layer, f, 32);
    read_fault(m.rows, L.M + 1 > 0 ? (L.M + 1) * L.K : 0, FI_SANITY_W, layer, f, L.row_bits);
    read_fault(m.sb, L.M + 1, FI_SANITY_B, layer, f, 32);
    read_fault(m.seals, 8, FI_SANITY_SUM, layer, f, 64);
    read_fault(m.psum, 8, FI_PARAM_SUM, layer, f, 64);
    bool ok = true;
    if (!params_ok(L, m)) {
        cnt[SC_DET]++;
        int nrep = 0, unc = 0;
        repair_params(L, m, &nrep, &unc);
        cnt[SC_REP] += nrep;
        ok = !unc;
    }
    static int64_t B[SANITAS_SU_BUF];
    static word_t ex[SANITAS_SU_BUF];
    net_stats cst;   // the check unit's counters, merged after the region
    const long long c0 = st.cycles;
    gemm_and_spatial<GC>(x, L, m, y, layer, without_memory(f), st, B, ex, cst);
    st.macs += cst.macs;
    st.cycles += check_cycles(L, st.cycles - c0);
    if (fault_hits(f, FI_OUTPUT, layer)) fault_tensor(y, L.o * P, f, 32, true);
    if (fault_hits(f, FI_SANITY_ACC, layer)) fault_tensor(ex, L.o, f, 32, true);
    static int bad[SANITAS_SU_BUF];
    int nbad = 0;
    for (int c = 0; c < L.o; ++c) {
        uint32_t v = 0;
        for (int p = 0; p < P; ++p) v += (uint32_t)y[c * P + p];
        if (v - (uint32_t)ex[c] != 0) bad[nbad++] = c;
    }
    if (!nbad) return ok;
    cnt[SC_DET]++;
    int changed = 0;
    for (int i = 0; i < nbad; ++i) {   // recompute the failing channels from the verified input
        const int c = bad[i];
        for (int p = 0; p < P; ++p) {
            uint32_t v = (uint32_t)m.b[c];
            for (int k = 0; k < L.K; ++k) v += (uint32_t)((uint64_t)im2col_at(x, L, c, p, k) * (uint64_t)(int64_t)m.w[c * L.K + k]);
            changed += (word_t)v != y[c * P + p];
            y[c * P + p] = (word_t)v;
        }
    }
    for (int c = 0; c < L.o; ++c) {
        uint32_t v = 0;
        for (int p = 0; p < P; ++p) v += (uint32_t)y[c * P + p];
        if (v - (uint32_t)spatial_expected(L, m, B, c) != 0) ok = false;
    }
    cnt[SC_LOC] += nbad;
    cnt[SC_COR] += changed;
    return ok;
}

// ------------------------------------------------------------------------------------------------ patrol.py
// Patrolled.patrol: verify and repair lines lo <= j < hi of one guard; returns true when it must escalate.
inline bool sanity_patrol(const sanity_layer &L, sanity_mem &m, int lo, int hi, int *cnt) {
    const int K = L.K, code = L.C + L.M + 1;
    const int k_lo = lo < K ? lo : K, k_hi = hi < K ? hi : K;
    const bool with_bias = lo <= K && K < hi, with_seals = lo <= K + 1 && K + 1 < hi;
    long words = (long)L.G * ((k_hi - k_lo) * code + (with_bias ? code : 0) + (with_seals ? 8 : 0));
    int nrep = 0, unc = 0;
    code_scrub(L, m, k_lo, k_hi, with_bias, with_seals, &nrep, &unc);
    if (!L.spatial && L.lazy && !unc && L.lw_mode == LW_WEIGHTED) {
        words += (long)L.G * ((k_hi - k_lo) + (with_bias ? 1 : 0));
        nrep += rebuild_derived(L, m, k_lo, k_hi, with_bias);
    }
    if (L.spatial && lo <= K + 2 && K + 2 < hi) {   // the parameter seals
        words += (long)L.o * L.K + L.o + 8;
        if (!params_ok(L, m)) repair_params(L, m, &nrep, &unc);
    }
    cnt[SC_SCRUB] += (int)words;
    cnt[SC_REP] += nrep;
    if (unc) {
        sanity_reload(L, m);
        cnt[SC_ESC]++;
        return true;
    }
    return false;
}

inline int patrol_lines(const sanity_layer &L) { return L.K + 2 + (L.spatial ? 1 : 0); }

}  // namespace sanitas

#endif  // SANITAS_SANITY_UNIT_H
