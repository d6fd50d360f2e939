// sanitas/hls4ml_glue.h -- entry points that let an hls4ml project (io_parallel, channels-last tensors of
// ap_fixed types) call the sanitas kernels of layers.h (python/sanitas/hls/ext: the hls4ml extension's function
// templates emit one call per sanitas layer into the project's myproject.cpp).
//
// An hls4ml tensor element of type ap_(u)fixed<W, I> holds the golden model's integer v at the grid 2^(I-W): its
// W-bit pattern *is* v. `to_word` reads that pattern as a signed / unsigned integer, `from_word` writes v's low W
// bits into it, so no value is ever rounded here: every rounding and saturation is the kernel's (requant), exactly
// the golden's. hls4ml keeps conv tensors channels-last (H, W, C); layers.h computes on (C, H, W) maps, so the conv
// and pool entry points transpose at their boundary (a vector, (F,), is the same in both layouts).
//
// Each CONFIG_T is written by the extension's config template from one `SanitasLayer` record (geometry, the GEMM
// struct rendered from ArrayConfig, the node index used by the fault port). `glue_stats()` accumulates the
// engine's counters over every call (cycles, data MACs, flagged checksum rows); `glue_fault()` is the one fault the
// layers apply (none by default; set it only in builds with -DSANITAS_FAULT_PORT).
#ifndef SANITAS_HLS4ML_GLUE_H
#define SANITAS_HLS4ML_GLUE_H

#include "layers.h"

namespace sanitas {
namespace glue {

inline net_stats &glue_stats() {
    static net_stats st;
    return st;
}

inline net_fault &glue_fault() {
    static net_fault f;
    return f;
}

// The integer of an hls4ml element (its bit pattern, read signed or unsigned as its type is).
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
word_t to_word(const ap_fixed<W, I, Q, O, N> &x) {
    ap_int<W> r;
    r.range(W - 1, 0) = x.range(W - 1, 0);
    return (word_t)r.to_int64();
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
word_t to_word(const ap_ufixed<W, I, Q, O, N> &x) {
    ap_uint<W> r;
    r.range(W - 1, 0) = x.range(W - 1, 0);
    return (word_t)r.to_uint64();
}
template <int W>
word_t to_word(const ap_int<W> &x) {
    return (word_t)x.to_int64();
}
template <int W>
word_t to_word(const ap_uint<W> &x) {
    return (word_t)x.to_uint64();
}

// Write integer v (already in the type's range: the kernels saturate / wrap as the golden does) as x's pattern.
template <class T>
void from_word(T &x, word_t v) {
    x.range(T::width - 1, 0) = ap_uint<T::width>((uint32_t)v);
}

// Channels-last hls4ml tensor (H, W, C) -> (C, H, W) words, and back.
template <class T>
void hwc_to_chw(const T *x, word_t *y, int C, int H, int W) {
hwc_to_chw_loop:
    for (int i = 0; i < H * W * C; ++i) {
        const int c = i % C, p = i / C;
        y[c * H * W + p] = to_word(x[i]);
    }
}
template <class T>
void chw_to_hwc(const word_t *x, T *y, int C, int H, int W) {
chw_to_hwc_loop:
    for (int i = 0; i < H * W * C; ++i) {
        const int c = i % C, p = i / C;
        from_word(y[i], x[c * H * W + p]);
    }
}

// conv / linear / depthwise: im2col + systolic GEMM tiles (conv_gemm). CONFIG_T: C H W O kh kw stride pad dil
// groups Ho Wo, n_w (weights) and node (fault-port index); gemm: the systolic_gemm config. Weights are int8 in
// (O, C/g, kh, kw) order, biases int32, both as hls4ml weight arrays of integer types.
template <class data_T, class res_T, class w_T, class b_T, class CONFIG_T>
void conv(const data_T *x, res_T *y, const w_T *w, const b_T *b) {
    static word_t xin[CONFIG_T::C * CONFIG_T::H * CONFIG_T::W];
    static word_t yout[CONFIG_T::O * CONFIG_T::Ho * CONFIG_T::Wo];
    static int8_t wq[CONFIG_T::n_w];
    static int32_t bq[CONFIG_T::O];
load_weights:
    for (int i = 0; i < CONFIG_T::n_w; ++i) wq[i] = (int8_t)to_word(w[i]);
load_bias:
    for (int i = 0; i < CONFIG_T::O; ++i) bq[i] = (int32_t)to_word(b[i]);
    hwc_to_chw(x, xin, CONFIG_T::C, CONFIG_T::H, CONFIG_T::W);
    conv_gemm<typename CONFIG_T::gemm>(xin, CONFIG_T::C, CONFIG_T::H, CONFIG_T::W, wq, bq, CONFIG_T::O,
                                       CONFIG_T::kh, CONFIG_T::kw, CONFIG_T::stride, CONFIG_T::pad, CONFIG_T::dil,
                                       CONFIG_T::groups, yout, CONFIG_T::Ho, CONFIG_T::Wo, CONFIG_T::node,
                                       glue_fault(), glue_stats());
    chw_to_hwc(yout, y, CONFIG_T::O, CONFIG_T::Ho, CONFIG_T::Wo);
}

// requantise: y = clip(round_half_even(x / 2^shift), lo, hi), elementwise (layout-free). CONFIG_T: n, shift, lo, hi.
template <class data_T, class res_T, class CONFIG_T>
void requantize(const data_T *x, res_T *y) {
    static word_t a[CONFIG_T::n], r[CONFIG_T::n];
requant_in:
    for (int i = 0; i < CONFIG_T::n; ++i) a[i] = to_word(x[i]);
    requant(a, r, CONFIG_T::n, CONFIG_T::shift, CONFIG_T::lo, CONFIG_T::hi, glue_stats());
requant_out:
    for (int i = 0; i < CONFIG_T::n; ++i) from_word(y[i], r[i]);
}

// max pool k x k (padding -inf). CONFIG_T: C H W k stride pad Ho Wo.
template <class data_T, class res_T, class CONFIG_T>
void max_pool(const data_T *x, res_T *y) {
    static word_t xin[CONFIG_T::C * CONFIG_T::H * CONFIG_T::W];
    static word_t yout[CONFIG_T::C * CONFIG_T::Ho * CONFIG_T::Wo];
    hwc_to_chw(x, xin, CONFIG_T::C, CONFIG_T::H, CONFIG_T::W);
    maxpool(xin, CONFIG_T::C, CONFIG_T::H, CONFIG_T::W, CONFIG_T::k, CONFIG_T::stride, CONFIG_T::pad, yout,
            CONFIG_T::Ho, CONFIG_T::Wo, glue_stats());
    chw_to_hwc(yout, y, CONFIG_T::C, CONFIG_T::Ho, CONFIG_T::Wo);
}

// residual add, exact (layout-free: both inputs have the same layout). CONFIG_T: n.
template <class a_T, class b_T, class res_T, class CONFIG_T>
void add2(const a_T *a, const b_T *b, res_T *y) {
    static word_t u[CONFIG_T::n], v[CONFIG_T::n], r[CONFIG_T::n];
add_in:
    for (int i = 0; i < CONFIG_T::n; ++i) {
        u[i] = to_word(a[i]);
        v[i] = to_word(b[i]);
    }
    add(u, v, r, CONFIG_T::n, glue_stats());
add_out:
    for (int i = 0; i < CONFIG_T::n; ++i) from_word(y[i], r[i]);
}

// channel concat of two tensors on one grid, a copy (channels-last: per pixel a's Ca channels, then b's Cb;
// a vector is one pixel). CONFIG_T: HW, Ca, Cb. Counts the cycles of layers.h's copy of both parts.
template <class a_T, class b_T, class res_T, class CONFIG_T>
void concat2(const a_T *a, const b_T *b, res_T *y) {
    static const int C = CONFIG_T::Ca + CONFIG_T::Cb;
concat_px:
    for (int p = 0; p < CONFIG_T::HW; ++p) {
    concat_a:
        for (int c = 0; c < CONFIG_T::Ca; ++c) from_word(y[p * C + c], to_word(a[p * CONFIG_T::Ca + c]));
    concat_b:
        for (int c = 0; c < CONFIG_T::Cb; ++c) from_word(y[p * C + CONFIG_T::Ca + c], to_word(b[p * CONFIG_T::Cb + c]));
    }
    glue_stats().cycles += CONFIG_T::HW * C;
}

// global sum over H, W -> (C,), exact. CONFIG_T: C, HW, chw (1: the input is (C, H, W), 0: channels-last).
template <class data_T, class res_T, class CONFIG_T>
void global_sum(const data_T *x, res_T *y) {
    static word_t xin[CONFIG_T::C * CONFIG_T::HW], r[CONFIG_T::C];
    if (CONFIG_T::chw) {
    gsum_in:
        for (int i = 0; i < CONFIG_T::C * CONFIG_T::HW; ++i) xin[i] = to_word(x[i]);
    } else {
        hwc_to_chw(x, xin, CONFIG_T::C, CONFIG_T::HW, 1);
    }
    gsum(xin, CONFIG_T::C, CONFIG_T::HW, r, glue_stats());
gsum_out:
    for (int c = 0; c < CONFIG_T::C; ++c) from_word(y[c], r[c]);
}

}  // namespace glue
}  // namespace sanitas

#endif  // SANITAS_HLS4ML_GLUE_H
