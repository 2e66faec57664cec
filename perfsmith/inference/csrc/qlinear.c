/* The local engine's CPU decode loop in C (AVX-512): weight-only linear layers and whole
   Llama decoder layers.

   Decoding a small model on a CPU reads every weight once per forward pass, so the pass
   costs what reading the weights costs: a GGUF file's own 4-bit blocks are an eighth of
   fp32's bytes, int8 a quarter, bf16 half. Weights are packed in panels of 16 output
   channels, so one load feeds 16 channels and no horizontal sums are needed; a block of
   up to 6 activation rows shares each loaded panel, so verifying a speculative draft of a
   few tokens costs little more than one token. Activations and accumulation stay fp32
   for every weight type, except where asked for int8 activations (Q8_0, Q4_0 and Q4_1
   blocks times activations quantized per row and block of 32, integer dot products with
   AVX-512 VNNI, as llama.cpp computes these types: see ablock).

   GGUF's block types keep the file's values: Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 (32 weights
   per block, an fp16 scale each, an fp16 minimum for Q4_1 and Q5_1) in panels holding,
   per block of 32 k, the 16 channels' scales (and minimums), for Q5 their 32-bit words
   of fifth bits ([16] uint32, bit k), then their quants (Q8_0: [32 k][16] int8; the rest
   [16 j][16] bytes, each the file's own byte qs[j], k = j in its low nibble and j + 16
   in its high one); the K-quants Q4_K and Q6_K: see kblock. Each block's quants are
   multiplied with the activations in one FMA chain, then scaled by the block's scale
   (and its minimum, or its offset, times the activations' sum).

   Every output element is one fused multiply-add chain over k in a fixed order (and a
   row's activations are quantized from that row alone), whatever the number of rows: a token's logits are bit-identical whether it goes through the pass
   alone, with a draft, or beside other sequences, which keeps speculative greedy decoding
   lossless. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MB 6
#define NP 4

enum {
    W_INT8 = 0, W_BF16 = 1, W_F32 = 2,
    W_Q8_0 = 3, W_Q4_0 = 4, W_Q4_1 = 5, W_Q4_K = 6, W_Q6_K = 7, W_Q5_0 = 8, W_Q5_1 = 9,
    /* the same blocks, multiplied with int8 activations (see ablock) */
    W_Q8_0_A8 = 10, W_Q4_0_A8 = 11, W_Q4_1_A8 = 12
};
#define A8(QT) ((QT) >= W_Q8_0_A8)
/* block types with a minimum per block (weight = d q + m), and with a fifth bit */
#define HAS_MIN(QT) ((QT) == W_Q4_1 || (QT) == W_Q5_1)
#define FIVE_BIT(QT) ((QT) == W_Q5_0 || (QT) == W_Q5_1)

#define QNP 2 /* panels per step for block types (block sums take registers) */

/* 16 weights of panel row k, as fp32 */
static inline __attribute__((always_inline)) __m512 load_w(const int WT, const void *panel,
                                                           int64_t k) {
    if (WT == W_INT8)
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)((const int8_t *)panel + k * 16))));
    if (WT == W_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(
                _mm256_loadu_si256((const __m256i *)((const uint16_t *)panel + k * 16))),
            16));
    return _mm512_loadu_ps((const float *)panel + k * 16);
}

static inline int64_t w_size(const int WT) { return WT == W_INT8 ? 1 : WT == W_BF16 ? 2 : 4; }

static inline __attribute__((always_inline)) void block(
    const int WT, const int MM, const int PP, const float *x, int64_t K, const void *w,
    const float *scale, int64_t N, int64_t m0, int64_t p0, float *out) {
    /* N: the output's row stride */
    __m512 acc[MB][NP];
    for (int i = 0; i < MM; i++)
        for (int p = 0; p < PP; p++) acc[i][p] = _mm512_setzero_ps();
    const char *wp[NP];
    for (int p = 0; p < PP; p++) wp[p] = (const char *)w + (p0 + p) * K * 16 * w_size(WT);
    for (int64_t k = 0; k < K; k++) {
        __m512 wv[NP];
        for (int p = 0; p < PP; p++) wv[p] = load_w(WT, wp[p], k);
        for (int i = 0; i < MM; i++) {
            __m512 xb = _mm512_set1_ps(x[(m0 + i) * K + k]);
            for (int p = 0; p < PP; p++) acc[i][p] = _mm512_fmadd_ps(xb, wv[p], acc[i][p]);
        }
    }
    for (int p = 0; p < PP; p++) {
        if (scale != NULL) {
            const __m512 s = _mm512_loadu_ps(scale + (p0 + p) * 16);
            for (int i = 0; i < MM; i++) acc[i][p] = _mm512_mul_ps(acc[i][p], s);
        }
        for (int i = 0; i < MM; i++)
            _mm512_storeu_ps(out + (m0 + i) * N + (p0 + p) * 16, acc[i][p]);
    }
}


/* bytes of one panel's block of 32 k: scales (and minimums), then quants */
static inline int64_t q_bytes(const int QT) {
    return QT == W_Q8_0 ? 32 + 512 : (HAS_MIN(QT) ? 64 : 32) + (FIVE_BIT(QT) ? 64 : 0) + 256;
}

static inline __attribute__((always_inline)) void qblock(const int QT, const int MM,
                                                          const int PP, const float *x,
                                                          const float *xsum, int64_t K,
                                                          const uint8_t *w, int64_t N,
                                                          int64_t m0, int64_t p0, float *out) {
    /* per block: s = sum_k x[k] * q[k] (one FMA chain), then out += d * s, and for
       Q4_1 + m * sum_k x[k], for Q4_0 - 8 d * sum_k x[k] (xsum: each row's block sums) */
    __m512 acc[MB][QNP];
    for (int i = 0; i < MM; i++)
        for (int p = 0; p < PP; p++) acc[i][p] = _mm512_setzero_ps();
    const int64_t nb = K / 32, bb = q_bytes(QT);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[QNP];
        for (int p = 0; p < PP; p++) blk[p] = w + ((p0 + p) * nb + b) * bb;
        const float *xb = x + m0 * K + b * 32;
        __m512 s[MB][QNP];
        for (int i = 0; i < MM; i++)
            for (int p = 0; p < PP; p++) s[i][p] = _mm512_setzero_ps();
        if (QT == W_Q8_0) {
            for (int j = 0; j < 32; j++) {
                __m512 wv[QNP];
                for (int p = 0; p < PP; p++)
                    wv[p] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                        _mm_loadu_si128((const __m128i *)(blk[p] + 32 + j * 16))));
                for (int i = 0; i < MM; i++) {
                    const __m512 xv = _mm512_set1_ps(xb[i * K + j]);
                    for (int p = 0; p < PP; p++) s[i][p] = _mm512_fmadd_ps(xv, wv[p], s[i][p]);
                }
            }
        } else {
            const int64_t hoff = HAS_MIN(QT) ? 64 : 32, qoff = hoff + (FIVE_BIT(QT) ? 64 : 0);
            const __m512i low = _mm512_set1_epi32(0xF), one = _mm512_set1_epi32(1);
            for (int j = 0; j < 16; j++) {
                __m512 lo[QNP], hi[QNP];
                for (int p = 0; p < PP; p++) {
                    const __m512i q = _mm512_cvtepu8_epi32(
                        _mm_loadu_si128((const __m128i *)(blk[p] + qoff + j * 16)));
                    __m512i ql = _mm512_and_si512(q, low), qh = _mm512_srli_epi32(q, 4);
                    if (FIVE_BIT(QT)) { /* bit j (k = j) and bit j + 16 of each row's qh */
                        const __m512i bits = _mm512_loadu_si512((const void *)(blk[p] + hoff));
                        ql = _mm512_or_si512(
                            ql, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(bits, j), one), 4));
                        qh = _mm512_or_si512(
                            qh, _mm512_slli_epi32(
                                    _mm512_and_si512(_mm512_srli_epi32(bits, j + 16), one), 4));
                    }
                    lo[p] = _mm512_cvtepi32_ps(ql);
                    hi[p] = _mm512_cvtepi32_ps(qh);
                }
                for (int i = 0; i < MM; i++) {
                    const __m512 xl = _mm512_set1_ps(xb[i * K + j]);
                    const __m512 xh = _mm512_set1_ps(xb[i * K + j + 16]);
                    for (int p = 0; p < PP; p++) {
                        s[i][p] = _mm512_fmadd_ps(xl, lo[p], s[i][p]);
                        s[i][p] = _mm512_fmadd_ps(xh, hi[p], s[i][p]);
                    }
                }
            }
        }
        for (int p = 0; p < PP; p++) {
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk[p]));
            __m512 bias = _mm512_setzero_ps();
            if (HAS_MIN(QT))
                bias = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk[p] + 32)));
            else if (QT == W_Q4_0)
                bias = _mm512_mul_ps(d, _mm512_set1_ps(-8.0f));
            else if (QT == W_Q5_0)
                bias = _mm512_mul_ps(d, _mm512_set1_ps(-16.0f));
            for (int i = 0; i < MM; i++) {
                acc[i][p] = _mm512_fmadd_ps(d, s[i][p], acc[i][p]);
                if (QT != W_Q8_0)
                    acc[i][p] = _mm512_fmadd_ps(bias, _mm512_set1_ps(xsum[(m0 + i) * nb + b]),
                                                acc[i][p]);
            }
        }
    }
    for (int p = 0; p < PP; p++)
        for (int i = 0; i < MM; i++)
            _mm512_storeu_ps(out + (m0 + i) * N + (p0 + p) * 16, acc[i][p]);
}


/* GGUF's K-quants in panels, per panel of 16 rows and super-block of 256 k (8 sub-blocks
   of 32 for Q4_K, 16 of 16 for Q6_K), the file's values rearranged, none recomputed:
   Q4_K: fp16 d[16], fp16 dmin[16], the 6-bit sub-block scales [8][16] and minimums
         [8][16] unpacked to a byte each, then the quant bytes [128][16] (byte i is the
         file's qs[i]: k = 64 (i / 32) + i % 32 in its low nibble, k + 32 in its high one);
   Q6_K: fp16 d[16], the int8 sub-block scales [16][16], then the bytes ql [128][16] and
         qh [64][16] as the file has them (k = 128 n + 32 g + l takes ql[64 n + 32 (g % 2)
         + l] >> 4 (g / 2) and qh[32 n + l] >> 2 g). */
static inline int64_t k_bytes(const int QT) { return QT == W_Q4_K ? 2368 : 3360; }

static inline __attribute__((always_inline)) void kblock(const int QT, const int MM,
                                                          const int PP, const float *x,
                                                          const float *xsum, int64_t K,
                                                          const uint8_t *w, int64_t N,
                                                          int64_t m0, int64_t p0, float *out) {
    /* per sub-block: s = sum_k x[k] * q[k] (one FMA chain), then out += d * scale * s,
       and for Q4_K - dmin * min * sum_k x[k] */
    __m512 acc[MB][QNP];
    for (int i = 0; i < MM; i++)
        for (int p = 0; p < PP; p++) acc[i][p] = _mm512_setzero_ps();
    const int64_t nsb = K / 256, nb = K / 32, bb = k_bytes(QT);
    const __m512i low = _mm512_set1_epi32(0xF);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *blk[QNP];
        for (int p = 0; p < PP; p++) blk[p] = w + ((p0 + p) * nsb + sb) * bb;
        const float *xb = x + m0 * K + sb * 256;
        const int subs = QT == W_Q4_K ? 8 : 16, len = QT == W_Q4_K ? 32 : 16;
        for (int j = 0; j < subs; j++) {
            __m512 s[MB][QNP];
            for (int i = 0; i < MM; i++)
                for (int p = 0; p < PP; p++) s[i][p] = _mm512_setzero_ps();
            for (int l = 0; l < len; l++) {
                int64_t k;
                __m512 wv[QNP];
                if (QT == W_Q4_K) {
                    const int c = j / 2, h = j % 2;
                    k = 64 * c + 32 * h + l;
                    for (int p = 0; p < PP; p++) {
                        const __m512i q = _mm512_cvtepu8_epi32(
                            _mm_loadu_si128((const __m128i *)(blk[p] + 320 + (c * 32 + l) * 16)));
                        wv[p] = _mm512_cvtepi32_ps(h ? _mm512_srli_epi32(q, 4)
                                                     : _mm512_and_si512(q, low));
                    }
                } else {
                    const int n = j / 8, g = (j % 8) / 2, t = (j % 2) * 16 + l;
                    k = 128 * n + 32 * g + t;
                    for (int p = 0; p < PP; p++) {
                        const __m512i ql = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                            (const __m128i *)(blk[p] + 288 + (64 * n + 32 * (g % 2) + t) * 16)));
                        const __m512i qh = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                            (const __m128i *)(blk[p] + 2336 + (32 * n + t) * 16)));
                        const __m512i q = _mm512_or_si512(
                            _mm512_and_si512(_mm512_srli_epi32(ql, 4 * (g / 2)), low),
                            _mm512_slli_epi32(
                                _mm512_and_si512(_mm512_srli_epi32(qh, 2 * g), _mm512_set1_epi32(3)),
                                4));
                        wv[p] = _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(32)));
                    }
                }
                for (int i = 0; i < MM; i++) {
                    const __m512 xv = _mm512_set1_ps(xb[i * K + k]);
                    for (int p = 0; p < PP; p++) s[i][p] = _mm512_fmadd_ps(xv, wv[p], s[i][p]);
                }
            }
            for (int p = 0; p < PP; p++) {
                const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk[p]));
                if (QT == W_Q4_K) {
                    const __m512 scale = _mm512_mul_ps(
                        d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                               _mm_loadu_si128((const __m128i *)(blk[p] + 64 + j * 16)))));
                    const __m512 bias = _mm512_mul_ps(
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk[p] + 32))),
                        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                            _mm_loadu_si128((const __m128i *)(blk[p] + 192 + j * 16)))));
                    for (int i = 0; i < MM; i++) {
                        acc[i][p] = _mm512_fmadd_ps(scale, s[i][p], acc[i][p]);
                        acc[i][p] = _mm512_fnmadd_ps(
                            bias, _mm512_set1_ps(xsum[(m0 + i) * nb + sb * 8 + j]), acc[i][p]);
                    }
                } else {
                    const __m512 scale = _mm512_mul_ps(
                        d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                               _mm_loadu_si128((const __m128i *)(blk[p] + 32 + j * 16)))));
                    for (int i = 0; i < MM; i++) acc[i][p] = _mm512_fmadd_ps(scale, s[i][p], acc[i][p]);
                }
            }
        }
    }
    for (int p = 0; p < PP; p++)
        for (int i = 0; i < MM; i++)
            _mm512_storeu_ps(out + (m0 + i) * N + (p0 + p) * 16, acc[i][p]);
}

/* ---- int8 activations (AVX-512 VNNI) ------------------------------------------------

   W_Q8_0_A8, W_Q4_0_A8, W_Q4_1_A8: a GGUF file's Q8_0, Q4_0 and Q4_1 blocks multiplied
   with activations quantized to int8, as llama.cpp's own dot products for these types
   are: each row's block of 32 activations has one fp32 scale dx = max |x| / 127 and
   quants q = x / dx rounded to nearest, and sx = dx * sum q. A block's 32 products are one
   integer sum (vpdpbusd, 4 products per instruction), then scaled: Q8_0 d dx s, Q4_0
   d (dx s - 8 sx), Q4_1 d dx s + m sx. Per panel and block of 32 k: the 16 rows' fp16 d,
   then Q4_1 their fp16 m; then the quants in groups of 4 k, rows inside: Q8_0 [8 g][16
   rows][4] the file's int8 plus 128 (k = 4 g + t), Q4 [4 g][16 rows][4] the file's bytes
   qs[4 g + t] (k = 4 g + t in the low nibble, k + 16 in the high one); panels in pairs
   (a8_offset). Q8_0's unsigned weights multiply the activations' quants, and 128 times
   their sum is taken back. A row's result does not depend on the other rows here
   either. */
typedef struct {
    const int8_t *q;  /* [M][K] */
    const int32_t *n; /* [M][K / 32]: sums of q */
    const float *d, *s; /* [M][K / 32] */
} ps_xq;

static inline int64_t a_bytes(const int QT) {
    return QT == W_Q8_0_A8 ? 32 + 512 : (QT == W_Q4_1_A8 ? 64 : 32) + 256;
}

#ifdef __AVX512VNNI__
static inline __m512i bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* where block b of panel p is: panels in pairs, the pair's blocks interleaved (one
   stream for the two panels a step reads); an odd last panel alone */
static inline int64_t a8_offset(int64_t p, int64_t b, int64_t nb, int64_t bb, int64_t count) {
    if (p == count - 1 && count % 2) return (p * nb + b) * bb;
    return ((p / 2 * nb + b) * 2 + p % 2) * bb;
}

static inline __attribute__((always_inline)) void ablock(const int QT, const int MM,
                                                          const int PP, const ps_xq *X,
                                                          int64_t K, const uint8_t *w, int64_t N,
                                                          int64_t count, int64_t m0, int64_t p0,
                                                          float *out) {
    __m512 acc[MB][QNP];
    for (int i = 0; i < MM; i++)
        for (int p = 0; p < PP; p++) acc[i][p] = _mm512_setzero_ps();
    const int64_t nb = K / 32, bb = a_bytes(QT);
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[QNP];
        for (int p = 0; p < PP; p++) blk[p] = w + a8_offset(p0 + p, b, nb, bb, count);
        __m512i s[MB][QNP];
        for (int i = 0; i < MM; i++)
            for (int p = 0; p < PP; p++) s[i][p] = _mm512_setzero_si512();
        if (QT == W_Q8_0_A8) {
            const int8_t *xq = X->q + m0 * K + b * 32;
            for (int g = 0; g < 8; g++) {
                __m512i wv[QNP];
                for (int p = 0; p < PP; p++)
                    wv[p] = _mm512_loadu_si512((const void *)(blk[p] + 32 + g * 64));
                for (int i = 0; i < MM; i++) {
                    const __m512i xv = bcast4(xq + i * K + 4 * g);
                    for (int p = 0; p < PP; p++) s[i][p] = _mm512_dpbusd_epi32(s[i][p], wv[p], xv);
                }
            }
        } else {
            const int64_t qoff = QT == W_Q4_1_A8 ? 64 : 32;
            const int8_t *xq = X->q + m0 * K + b * 32;
            for (int g = 0; g < 4; g++) {
                __m512i lo[QNP], hi[QNP];
                for (int p = 0; p < PP; p++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(blk[p] + qoff + g * 64));
                    lo[p] = _mm512_and_si512(v, low);
                    hi[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                }
                for (int i = 0; i < MM; i++) {
                    const __m512i xl = bcast4(xq + i * K + 4 * g);
                    const __m512i xh = bcast4(xq + i * K + 16 + 4 * g);
                    for (int p = 0; p < PP; p++) {
                        s[i][p] = _mm512_dpbusd_epi32(s[i][p], lo[p], xl);
                        s[i][p] = _mm512_dpbusd_epi32(s[i][p], hi[p], xh);
                    }
                }
            }
        }
        for (int p = 0; p < PP; p++) {
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk[p]));
            __m512 m = _mm512_setzero_ps();
            if (QT == W_Q4_1_A8)
                m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk[p] + 32)));
            for (int i = 0; i < MM; i++) {
                const int64_t at = (m0 + i) * nb + b;
                const __m512 dx = _mm512_set1_ps(X->d[at]);
                if (QT == W_Q8_0_A8) {
                    const __m512i back = _mm512_set1_epi32(128 * X->n[at]);
                    const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s[i][p], back)), dx);
                    acc[i][p] = _mm512_fmadd_ps(d, t, acc[i][p]);
                } else if (QT == W_Q4_0_A8) {
                    const __m512 t = _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), _mm512_set1_ps(X->s[at]),
                                                      _mm512_mul_ps(_mm512_cvtepi32_ps(s[i][p]), dx));
                    acc[i][p] = _mm512_fmadd_ps(d, t, acc[i][p]);
                } else {
                    const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(s[i][p]), dx);
                    acc[i][p] = _mm512_fmadd_ps(d, t, acc[i][p]);
                    acc[i][p] = _mm512_fmadd_ps(m, _mm512_set1_ps(X->s[at]), acc[i][p]);
                }
            }
        }
    }
    for (int p = 0; p < PP; p++)
        for (int i = 0; i < MM; i++)
            _mm512_storeu_ps(out + (m0 + i) * N + (p0 + p) * 16, acc[i][p]);
}
#endif

/* each row's blocks of 32 activations as int8 (see ablock) */
static void quantize_rows(const float *x, int64_t M, int64_t K, int8_t *q, int32_t *n, float *d,
                          float *s) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t r = 0; r < M; r++)
        for (int64_t b = 0; b < K / 32; b++) {
            const float *v = x + r * K + b * 32;
            const __m512 a = _mm512_loadu_ps(v), c = _mm512_loadu_ps(v + 16);
            const float amax = _mm512_reduce_max_ps(
                _mm512_max_ps(_mm512_andnot_ps(sign, a), _mm512_andnot_ps(sign, c)));
            const float dd = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
            const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(id)));
            const __m512i qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, _mm512_set1_ps(id)));
            int8_t *dst = q + r * K + b * 32;
            _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(qa));
            _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtsepi32_epi8(qc));
            const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
            n[r * (K / 32) + b] = sum;
            d[r * (K / 32) + b] = dd;
            s[r * (K / 32) + b] = dd * (float)sum;
        }
}

/* what this build computes beyond the base kernels: bit 0, int8 activations (VNNI) */
int ps_features(void) {
#ifdef __AVX512VNNI__
    return 1;
#else
    return 0;
#endif
}

#define ROWS(CALL)                                                                        \
    do {                                                                                  \
        int64_t m0 = 0;                                                                   \
        for (; m0 + MB <= M; m0 += MB) CALL(MB);                                          \
        switch (M - m0) {                                                                 \
        case 1: CALL(1); break;                                                           \
        case 2: CALL(2); break;                                                           \
        case 3: CALL(3); break;                                                           \
        case 4: CALL(4); break;                                                           \
        case 5: CALL(5); break;                                                           \
        default: break;                                                                   \
        }                                                                                 \
    } while (0)

/* panels [begin, end) of a weight of type WT: out[:, p*16 .. p*16+16) for each panel p,
   out's rows N floats apart */
static inline __attribute__((always_inline)) void panels(
    const int WT, const float *x, const float *xsum, const ps_xq *X, int64_t M, int64_t K,
    const void *w, const float *scale, int64_t N, float *out, int64_t count, int64_t begin,
    int64_t end) {
    int64_t p = begin;
#ifdef __AVX512VNNI__
    if (A8(WT)) {
#define ACALL(MM) ablock(WT, MM, QNP, X, K, (const uint8_t *)w, N, count, m0, p, out)
#define ACALL1(MM) ablock(WT, MM, 1, X, K, (const uint8_t *)w, N, count, m0, p, out)
        for (; p + QNP <= end; p += QNP) ROWS(ACALL);
        if (p < end) ROWS(ACALL1);
        return;
    }
#else
    (void)X;
    (void)count;
#endif
    if (WT == W_Q4_K || WT == W_Q6_K) {
#define KCALL(MM) kblock(WT, MM, QNP, x, xsum, K, (const uint8_t *)w, N, m0, p, out)
#define KCALL1(MM) kblock(WT, MM, 1, x, xsum, K, (const uint8_t *)w, N, m0, p, out)
        for (; p + QNP <= end; p += QNP) ROWS(KCALL);
        if (p < end) ROWS(KCALL1);
        return;
    }
    if (WT >= W_Q8_0) {
#define QCALL(MM) qblock(WT, MM, QNP, x, xsum, K, (const uint8_t *)w, N, m0, p, out)
#define QCALL1(MM) qblock(WT, MM, 1, x, xsum, K, (const uint8_t *)w, N, m0, p, out)
        for (; p + QNP <= end; p += QNP) ROWS(QCALL);
        if (p < end) ROWS(QCALL1);
        return;
    }
#define DCALL(MM) block(WT, MM, PP, x, K, w, scale, N, m0, p, out)
    {
        enum { PP = NP };
        for (; p + NP <= end; p += NP) ROWS(DCALL);
    }
    switch (end - p) {
    case 1: { enum { PP = 1 }; ROWS(DCALL); break; }
    case 2: { enum { PP = 2 }; ROWS(DCALL); break; }
    case 3: { enum { PP = 3 }; ROWS(DCALL); break; }
    default: break;
    }
}

/* A weight matrix as the kernels take it: up to three parts stacked along the output
   (a fused q/k/v or gate/up whose parts may be of different types), each `rows` output
   channels (a multiple of 16) of type `type`, packed; `scale` per channel for int8. */
typedef struct {
    const void *w;
    const float *scale;
    int64_t type, rows;
} ps_part;

typedef struct {
    ps_part part[3];
    int64_t parts;
} ps_matrix;

static void part_panels(const ps_part *P, const float *x, const float *xsum, const ps_xq *X,
                        int64_t M, int64_t K, int64_t N, float *out, int64_t begin, int64_t end) {
    /* one instance of the panel loop per weight type: the type is a constant in each */
#define PANELS(T)                                                                       \
    case T:                                                                             \
        panels(T, x, xsum, X, M, K, P->w, T == W_INT8 ? P->scale : NULL, N, out,         \
               P->rows / 16, begin, end);                                               \
        break;
    switch (P->type) {
        PANELS(W_INT8) PANELS(W_BF16) PANELS(W_F32) PANELS(W_Q8_0) PANELS(W_Q4_0)
        PANELS(W_Q4_1) PANELS(W_Q5_0) PANELS(W_Q5_1) PANELS(W_Q4_K) PANELS(W_Q6_K)
        PANELS(W_Q8_0_A8) PANELS(W_Q4_0_A8) PANELS(W_Q4_1_A8)
    default: break;
    }
}

/* out[M, N] = x[M, K] @ W^T, N the parts' rows together. Each thread takes an even share
   of every part's panels. */
void ps_matmul(const float *x, int64_t M, int64_t K, const ps_matrix *W, float *out,
               int threads) {
    int64_t N = 0;
    for (int64_t i = 0; i < W->parts; i++) N += W->part[i].rows;
    /* each row's sums over blocks of 32, in k order: only the block types with a minimum
       or an offset (all but Q8_0 and Q6_K) read them */
    int sums = 0, a8 = 0;
    for (int64_t i = 0; i < W->parts; i++) {
        const int64_t t = W->part[i].type;
        sums |= t == W_Q4_0 || t == W_Q4_1 || t == W_Q5_0 || t == W_Q5_1 || t == W_Q4_K;
        a8 |= A8(t);
    }
    ps_xq X = {NULL, NULL, NULL, NULL};
    void *xq = NULL;
    if (a8 && K % 32 == 0) {
        xq = malloc(sizeof(float) * 3 * M * (K / 32) + (size_t)(M * K));
        X.d = xq;
        X.s = X.d + M * (K / 32);
        X.n = (const int32_t *)(X.s + M * (K / 32));
        X.q = (const int8_t *)(X.n + M * (K / 32));
        quantize_rows(x, M, K, (int8_t *)X.q, (int32_t *)X.n, (float *)X.d, (float *)X.s);
    }
    float *xsum = NULL;
    if (sums && K % 32 == 0) {
        xsum = malloc(sizeof(float) * M * (K / 32));
        for (int64_t r = 0; r < M; r++)
            for (int64_t b = 0; b < K / 32; b++) {
                float t = 0.0f;
                for (int64_t k = 0; k < 32; k++) t += x[r * K + b * 32 + k];
                xsum[r * (K / 32) + b] = t;
            }
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t col = 0;
        for (int64_t i = 0; i < W->parts; i++) {
            const ps_part *P = &W->part[i];
            const int64_t count = P->rows / 16;
            part_panels(P, x, xsum, &X, M, K, N, out + col, count * t / nt, count * (t + 1) / nt);
            col += P->rows;
        }
    }
    free(xsum);
    free(xq);
}

/* [N, K] row-major weights of `size` bytes each -> [N/16][K][16]. */
void ps_pack(const void *w, int64_t N, int64_t K, int64_t size, void *packed) {
    const char *src = w;
    char *dst = packed;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            memcpy(dst + (((n / 16) * K + k) * 16 + n % 16) * size, src + (n * K + k) * size,
                   size);
}

/* ---- one decoder layer (Llama, Qwen2, Qwen3, Gemma 3), for any set of rows ---------------------------------

   Row r is a token at position pos[r] of cache slot slot[r] (the cache is
   [slots, kv_heads, capacity, head_dim] fp32): a prompt, a draft being
   verified (one slot, consecutive positions) or one token of each of several sequences
   (batched decode) all go through the same code. Each row's arithmetic is the same
   whatever the other rows are, so a token's result does not depend on how it was
   batched. The residual stream x [R, hidden] is updated in place. */

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, inter;
    float eps;
    const float *ln1, *ln2;
    ps_matrix qkv, o, gate_up, down;
    const float *cos, *sin; /* [positions, head_dim] */
    const float *qkv_bias;  /* [(heads + 2 kv_heads) head_dim] or NULL (Qwen2) */
    const float *q_norm, *k_norm; /* [head_dim] or NULL: RMS norm of each head (Qwen3) */
    /* Gemma 3: norms of the attention's and the MLP's outputs ([hidden] or NULL), GELU
       (tanh) in the MLP (act 1; SiLU is 0), a sliding window of positions (0: none) and
       the attention's scale (0: 1 / sqrt(head_dim)) */
    const float *post_attn, *post_mlp;
    int64_t act, window;
    float attn_scale;
} ps_layer;

/* v[0:D] = v / rms(v) * weight, in place */
static void head_norm(float *v, int64_t D, const float *weight, float eps) {
    float ss = 0.0f;
    for (int64_t d = 0; d < D; d++) ss += v[d] * v[d];
    const float inv = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t d = 0; d < D; d++) v[d] = v[d] * inv * weight[d];
}

static float sum16(__m512 v) { return _mm512_reduce_add_ps(v); }

/* out[r] = x[r] / rms(x[r]) * weight */
void ps_rms_norm(const float *x, int64_t R, int64_t H, const float *weight, float eps,
                 float *out) {
    for (int64_t r = 0; r < R; r++) {
        const float *row = x + r * H;
        __m512 acc = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= H; k += 16) {
            __m512 v = _mm512_loadu_ps(row + k);
            acc = _mm512_fmadd_ps(v, v, acc);
        }
        float ss = sum16(acc);
        for (; k < H; k++) ss += row[k] * row[k];
        const float inv = 1.0f / sqrtf(ss / (float)H + eps);
        for (k = 0; k < H; k++) out[r * H + k] = row[k] * inv * weight[k];
    }
}

static void rope(float *v, const float *cos, const float *sin, int64_t D) {
    const int64_t half = D / 2;
    for (int64_t i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

/* e^x for 16 lanes (Cephes' expf polynomial, about 1 ulp), the same on every call. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* out = act(g) * u: SiLU (act 0) or GELU with tanh (act 1, torch's "tanh"), 16 at a time
   (exp16; tanh y = 1 - 2 / (exp 2y + 1)) */
static void gated(const float *g, const float *u, int64_t n, int64_t act, float *out) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        __m512 a;
        if (act == 1) {
            const __m512 y = _mm512_mul_ps(
                _mm512_set1_ps(0.7978845608028654f),
                _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), x), _mm512_mul_ps(x, x), x));
            const __m512 e = exp16(_mm512_add_ps(y, y));
            const __m512 t = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
            a = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(one, t));
        } else
            a = _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(a, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float x = g[i];
        out[i] = (act == 1 ? 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)))
                           : x / (1.0f + expf(-x))) *
                 u[i];
    }
}

#define QK_ROWS 8
#define PV_ROWS 6
#define ATT_TOKENS 16 /* tokens of a run per attention task */

/* Each row's scores (row t at position pos[t], width positions) to its attention
   weights: positions past pos[t] and, with a sliding window, before its last `window`
   get weight exactly 0. */
static void softmax_rows(float *score, int64_t width, const int64_t *pos, int64_t rows,
                         int64_t window) {
    for (int64_t t = 0; t < rows; t++) {
        float *st = score + t * width;
        const int64_t len = pos[t] + 1, live = (len + 15) / 16;
        /* a sliding window: the row sees its last `window` positions, weight 0 elsewhere */
        const int64_t first = window > 0 && len > window ? len - window : 0;
        for (int64_t j = 0; j < first; j++) st[j] = -INFINITY;
        for (int64_t j = len; j < live * 16; j++) st[j] = -INFINITY;
        __m512 top = _mm512_set1_ps(-INFINITY);
        for (int64_t b = 0; b < live; b++) top = _mm512_max_ps(top, _mm512_loadu_ps(st + b * 16));
        const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(top));
        __m512 total = _mm512_setzero_ps();
        for (int64_t b = 0; b < live; b++) {
            const int64_t lo = first - b * 16, hi = len - b * 16;
            const uint32_t upto = hi >= 16 ? 0xFFFFu : (1u << hi) - 1u;
            const uint32_t from = lo <= 0 ? 0xFFFFu : lo >= 16 ? 0u : ~((1u << lo) - 1u);
            const __mmask16 valid = (__mmask16)(upto & from);
            const __m512 e =
                _mm512_maskz_mov_ps(valid, exp16(_mm512_sub_ps(_mm512_loadu_ps(st + b * 16), mx)));
            _mm512_storeu_ps(st + b * 16, e);
            total = _mm512_add_ps(total, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(total));
        for (int64_t b = 0; b < live; b++)
            _mm512_storeu_ps(st + b * 16, _mm512_mul_ps(_mm512_loadu_ps(st + b * 16), inv));
        for (int64_t j = live * 16; j < width; j++) st[j] = 0.0f;
    }
}

/* ---- KIVI: a quantized key/value cache ----------------------------------------------

   Keys are quantized per channel (each channel's 32 positions of a group share an fp16
   scale and minimum), values per token (each position's channels in groups of 32); codes
   are 2 or 4 bits, position (or channel) i at bit i * bits of a little-endian stream.
   A position is read quantized by a row more than `window` positions after it, whole
   groups at a time: row p sees groups below kivi_boundary(p) quantized and the rest in
   fp32. That depends on p only, so a token's arithmetic is the same fed alone, in a
   prompt, with a draft or beside other sequences (speculative decoding stays lossless).
   The fp32 keys and values of a slot's last `ring` positions are kept in a ring (index
   position % ring); groups are quantized as soon as a row needs them, from the ring or
   from the rows being run. */
#define KG 32

typedef struct {
    int64_t bits, window, ring;
    const int64_t *stored; /* [slots]: positions quantized so far (a multiple of KG) */
    uint8_t *kcodes;       /* [slots][kv_heads][capacity / KG][head_dim][KG bits / 8] */
    uint16_t *kscale, *kmin; /* [slots][kv_heads][capacity / KG][head_dim] fp16 */
    uint8_t *vcodes;       /* [slots][kv_heads][capacity][head_dim bits / 8] */
    uint16_t *vscale, *vmin; /* [slots][kv_heads][capacity][head_dim / KG] fp16 */
    float *rkeys, *rvalues;  /* [slots][kv_heads][ring][head_dim] */
} ps_kivi;

static inline int64_t kivi_boundary(const ps_kivi *K, int64_t p) {
    const int64_t old = p - K->window + 1;
    return old > 0 ? old / KG * KG : 0;
}

/* KG values x[0], x[stride], ... to codes (KG bits / 8 bytes), an fp16 scale and minimum */
static void quantize_kg(const float *x, int64_t stride, int64_t bits, uint8_t *codes,
                        uint16_t *scale, uint16_t *minimum) {
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < KG; i++) {
        lo = fminf(lo, x[i * stride]);
        hi = fmaxf(hi, x[i * stride]);
    }
    const int top = (1 << bits) - 1;
    const uint16_t s16 = _cvtss_sh((hi - lo) / (float)top, _MM_FROUND_TO_NEAREST_INT);
    const uint16_t m16 = _cvtss_sh(lo, _MM_FROUND_TO_NEAREST_INT);
    const float s = _cvtsh_ss(s16), m = _cvtsh_ss(m16);
    memset(codes, 0, (size_t)(KG * bits / 8));
    for (int64_t i = 0; i < KG; i++) {
        int c = s > 0.0f ? (int)lrintf((x[i * stride] - m) / s) : 0;
        c = c < 0 ? 0 : c > top ? top : c;
        codes[i * bits / 8] |= (uint8_t)(c << (i * bits % 8));
    }
    *scale = s16;
    *minimum = m16;
}

/* 16 codes from 2 * bits bytes, as fp32 */
static inline __m512 unpack16(int64_t bits, const uint8_t *p) {
    uint32_t w0, w1;
    memcpy(&w0, p, 4);
    if (bits == 4) {
        memcpy(&w1, p + 4, 4);
        const __m512i w =
            _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32((int)w0), _mm512_set1_epi32((int)w1));
        const __m512i sh = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
        return _mm512_cvtepi32_ps(_mm512_and_epi32(_mm512_srlv_epi32(w, sh), _mm512_set1_epi32(15)));
    }
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_cvtepi32_ps(
        _mm512_and_epi32(_mm512_srlv_epi32(_mm512_set1_epi32((int)w0), sh), _mm512_set1_epi32(3)));
}

static inline __m512 dequant16(int64_t bits, const uint8_t *codes, uint16_t scale,
                               uint16_t minimum) {
    return _mm512_fmadd_ps(unpack16(bits, codes), _mm512_set1_ps(_cvtsh_ss(scale)),
                           _mm512_set1_ps(_cvtsh_ss(minimum)));
}

/* The keys of 16 positions (block b) of a slot's kv head as [D][16] fp32 */
static void kivi_key_block(const ps_kivi *K, int64_t head, int64_t C, int64_t D, int64_t b,
                           float *out) {
    const int64_t g = b * 16 / KG, half = b * 16 % KG, gb = KG * K->bits / 8;
    const int64_t at = (head * (C / KG) + g) * D;
    for (int64_t d = 0; d < D; d++)
        _mm512_storeu_ps(out + d * 16,
                         dequant16(K->bits, K->kcodes + (at + d) * gb + half * K->bits / 8,
                                   K->kscale[at + d], K->kmin[at + d]));
}

/* Channels c..c+15 of the value at position j of a slot's kv head */
static inline __m512 kivi_value16(const ps_kivi *K, int64_t head, int64_t C, int64_t D,
                                  int64_t j, int64_t c) {
    const int64_t row = head * C + j, groups = D / KG;
    return dequant16(K->bits, K->vcodes + row * (D * K->bits / 8) + c * K->bits / 8,
                     K->vscale[row * groups + c / KG], K->vmin[row * groups + c / KG]);
}

/* One row of attention: a query head of a token at position pos, which sees positions
   0..pos. Position j of its keys and values comes from KIVI's dequantized dk, dv below
   `bound`, else from a shared prefix (pk, pv, another slot's cache, Hydragen) below
   `shared`, else from its own k, v, which start at position t0 (keys in blocks of 16
   positions: bound, shared and t0 are multiples of 16). */
typedef struct {
    const float *q;
    float *out;
    int64_t pos, bound, shared, t0;
    const float *k, *v, *pk, *pv;
} att_row;

static inline const float *key_block(const att_row *r, const float *dk, int64_t b, int64_t D) {
    if (b * 16 < r->bound) return dk + b * D * 16;
    if (b * 16 < r->shared) return r->pk + b * D * 16;
    return r->k + (b - r->t0 / 16) * D * 16;
}

static inline const float *value_row(const att_row *r, const float *dv, int64_t j, int64_t D) {
    if (j < r->bound) return dv + j * D;
    if (j < r->shared) return r->pv + j * D;
    return r->v + (j - r->t0) * D;
}

/* Attention for `rows` rows (a sequence's tokens times the query heads of one KV head, or
   one token of each of several sequences that share a prompt prefix). Keys are stored in
   blocks of 16 positions, transposed ([blocks][D][16]), so a block's 16 scores are D
   multiply-adds with no horizontal sums; values are [positions][D]. A key block or value
   row that several rows read from the same place (their own sequence's, or a prefix they
   share) is loaded once for all of them. Every row's arithmetic is the same whichever rows
   share the call: the same multiply-adds in the same order, and positions past its own
   end get weight exactly 0 (scores) or are skipped (values). */
static void attend(const att_row *row, int64_t rows, int64_t D, const float *dk,
                   const float *dv, float scale, int64_t window) {
    int64_t *pos = calloc((size_t)rows, sizeof(int64_t));
    int64_t maxlen = 0;
    for (int64_t t = 0; t < rows; t++) {
        pos[t] = row[t].pos;
        if (pos[t] + 1 > maxlen) maxlen = pos[t] + 1;
    }
    const int64_t width = (maxlen + 15) / 16 * 16;
    float *score = malloc(sizeof(float) * rows * width);
    for (int64_t r0 = 0; r0 < rows; r0 += QK_ROWS) {
        const int64_t n = rows - r0 < QK_ROWS ? rows - r0 : QK_ROWS;
        const att_row *rr = row + r0;
        int64_t end = 0; /* blocks this chunk's rows see (softmax_rows zeroes the rest) */
        for (int64_t t = 0; t < n; t++)
            if ((rr[t].pos + 16) / 16 > end) end = (rr[t].pos + 16) / 16;
        for (int64_t b = 0; b < end; b++) {
            __m512 acc[QK_ROWS];
            for (int64_t t = 0; t < n; t++) acc[t] = _mm512_setzero_ps();
            const float *src[QK_ROWS];
            int one = 1;
            for (int64_t t = 0; t < n; t++) {
                src[t] = key_block(&rr[t], dk, b, D);
                one &= src[t] == src[0];
            }
            if (one) { /* one source for every row: loaded once */
                for (int64_t d = 0; d < D; d++) {
                    const __m512 kd = _mm512_loadu_ps(src[0] + d * 16);
                    for (int64_t t = 0; t < n; t++)
                        acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(rr[t].q[d]), kd, acc[t]);
                }
            } else {
                for (int64_t d = 0; d < D; d++)
                    for (int64_t t = 0; t < n; t++)
                        acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(rr[t].q[d]),
                                                 _mm512_loadu_ps(src[t] + d * 16), acc[t]);
            }
            for (int64_t t = 0; t < n; t++)
                _mm512_storeu_ps(score + (r0 + t) * width + b * 16,
                                 _mm512_mul_ps(acc[t], _mm512_set1_ps(scale)));
        }
    }
    softmax_rows(score, width, pos, rows, window);
    for (int64_t r0 = 0; r0 < rows; r0 += PV_ROWS) {
        const int64_t n = rows - r0 < PV_ROWS ? rows - r0 : PV_ROWS;
        const att_row *rr = row + r0;
        int64_t len = 0;
        for (int64_t t = 0; t < n; t++)
            if (rr[t].pos + 1 > len) len = rr[t].pos + 1;
        for (int64_t c = 0; c < D; c += 64) {
            const int64_t w_n = D - c < 64 ? (D - c) / 16 : 4;
            __m512 acc[PV_ROWS][4];
            for (int64_t t = 0; t < n; t++)
                for (int64_t w = 0; w < w_n; w++) acc[t][w] = _mm512_setzero_ps();
            for (int64_t j = 0; j < len; j++) {
                const float *loaded = NULL;
                __m512 v[4];
                for (int64_t t = 0; t < n; t++) {
                    if (j > rr[t].pos) continue;
                    const float *src = value_row(&rr[t], dv, j, D) + c;
                    if (src != loaded) {
                        for (int64_t w = 0; w < w_n; w++) v[w] = _mm512_loadu_ps(src + w * 16);
                        loaded = src;
                    }
                    const __m512 p = _mm512_set1_ps(score[(r0 + t) * width + j]);
                    for (int64_t w = 0; w < w_n; w++) acc[t][w] = _mm512_fmadd_ps(p, v[w], acc[t][w]);
                }
            }
            for (int64_t t = 0; t < n; t++)
                for (int64_t w = 0; w < w_n; w++)
                    _mm512_storeu_ps(rr[t].out + c + w * 16, acc[t][w]);
        }
    }
    free(pos);
    free(score);
}

/* Quantize and dequantize `groups` groups of KG values, as the cache stores and reads
   them (tests check it against a reference) */
void ps_kivi_roundtrip(const float *x, int64_t groups, int64_t bits, float *out) {
    uint8_t codes[KG / 2];
    uint16_t s, m;
    for (int64_t g = 0; g < groups; g++) {
        quantize_kg(x + g * KG, 1, bits, codes, &s, &m);
        for (int64_t i = 0; i < KG; i += 16)
            _mm512_storeu_ps(out + g * KG + i, dequant16(bits, codes + i * bits / 8, s, m));
    }
}

/* The fp32 key (kv = 0) or value (kv = 1) at position j of a run of rows starting at
   position start (rows r0...): from the run's rows, else from the ring */
static inline const float *kivi_source(const ps_kivi *K, int64_t head, int64_t D, int64_t j,
                                       int64_t start, const float *qkv, int64_t r0,
                                       int64_t NQKV, int64_t offset, int kv) {
    if (j >= start) return qkv + (r0 + j - start) * NQKV + offset;
    const float *ring = kv ? K->rvalues : K->rkeys;
    return ring + (head * K->ring + j % K->ring) * D;
}

/* For a run of rows of one slot and one kv head: quantize the groups its rows read
   quantized and the store lacks, dequantize what they read quantized (dk, dv), and build
   their fp32 tail from position t0 (tk, tv) */
static void kivi_prepare(const ps_kivi *K, int64_t slot, int64_t KV, int64_t g, int64_t C,
                         int64_t D, int64_t start, int64_t end, const float *qkv, int64_t r0,
                         int64_t NQKV, int64_t Q, float *dk, float *dv, float *tk,
                         float *tv) {
    const int64_t head = slot * KV + g;
    const int64_t koff = Q + g * D, voff = Q + KV * D + g * D;
    const int64_t have = K->stored[slot], need = kivi_boundary(K, end - 1);
    float *kx = malloc(sizeof(float) * KG * D);
    for (int64_t j0 = have; j0 < need; j0 += KG) {
        const int64_t gi = head * (C / KG) + j0 / KG, gb = KG * K->bits / 8;
        for (int64_t i = 0; i < KG; i++)
            memcpy(kx + i * D, kivi_source(K, head, D, j0 + i, start, qkv, r0, NQKV, koff, 0),
                   sizeof(float) * D);
        for (int64_t d = 0; d < D; d++)
            quantize_kg(kx + d, D, K->bits, K->kcodes + (gi * D + d) * gb, K->kscale + gi * D + d,
                        K->kmin + gi * D + d);
        for (int64_t i = 0; i < KG; i++) {
            const int64_t row = head * C + j0 + i, groups = D / KG;
            const float *v = kivi_source(K, head, D, j0 + i, start, qkv, r0, NQKV, voff, 1);
            for (int64_t cg = 0; cg < groups; cg++)
                quantize_kg(v + cg * KG, 1, K->bits, K->vcodes + row * (D * K->bits / 8) + cg * KG * K->bits / 8,
                            K->vscale + row * groups + cg, K->vmin + row * groups + cg);
        }
    }
    free(kx);
    /* what the rows read quantized, dequantized once for all the kv head's query heads */
    for (int64_t b = 0; b < need / 16; b++) kivi_key_block(K, head, C, D, b, dk + b * D * 16);
    for (int64_t j = 0; j < need; j++)
        for (int64_t c = 0; c < D; c += 16)
            _mm512_storeu_ps(dv + j * D + c, kivi_value16(K, head, C, D, j, c));
    const int64_t t0 = kivi_boundary(K, start), n = end - t0, padded = (n + 15) / 16 * 16;
    memset(tk, 0, sizeof(float) * padded * D);
    for (int64_t j = t0; j < end; j++) {
        const float *k = kivi_source(K, head, D, j, start, qkv, r0, NQKV, koff, 0);
        float *blk = tk + (j - t0) / 16 * D * 16 + (j - t0) % 16;
        for (int64_t d = 0; d < D; d++) blk[d * 16] = k[d];
        memcpy(tv + (j - t0) * D, kivi_source(K, head, D, j, start, qkv, r0, NQKV, voff, 1),
               sizeof(float) * D);
    }
}

/* at least `count` floats of the calling thread's scratch (grown, never shrunk; freed
   when the thread ends) */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread float *scratch_at;
static __thread int64_t scratch_count;
static void scratch_key_make(void) { pthread_key_create(&scratch_key, free); }
static float *scratch(int64_t count) {
    if (count > scratch_count) {
        pthread_once(&scratch_once, scratch_key_make);
        free(scratch_at);
        scratch_at = malloc(sizeof(float) * count);
        scratch_count = count;
        pthread_setspecific(scratch_key, scratch_at);
    }
    return scratch_at;
}

/* The key cache is [slots][kv_heads][ceil(capacity/16)][head_dim][16] (keys transposed in
   blocks of 16 positions); the value cache is [slots][kv_heads][capacity][head_dim].
   prefix (NULL: none): per row, the slot whose cache holds the row's first positions
   and how many (a multiple of 16; 0: the row's own slot holds them all): sequences
   whose prompts begin alike read that prefix from the one slot that computed it. */
void ps_layer_forward(const ps_layer *L, float *x, int64_t R, const int64_t *slot,
                      const int64_t *pos, const int64_t *prefix, float *keys, float *values,
                      const ps_kivi *kivi, int64_t capacity, int threads) {
    const int64_t H = L->hidden, NH = L->heads, KV = L->kv_heads, D = L->head_dim;
    const int64_t Q = NH * D, NQKV = (NH + 2 * KV) * D, I = L->inter, C = capacity;
    const int64_t CB = (C + 15) / 16;
    float *h = malloc(sizeof(float) * R * H);
    float *qkv = malloc(sizeof(float) * R * NQKV);
    float *att = malloc(sizeof(float) * R * Q);
    float *proj = malloc(sizeof(float) * R * H);
    float *gu = malloc(sizeof(float) * R * 2 * I);
    float *act = malloc(sizeof(float) * R * I);

    ps_rms_norm(x, R, H, L->ln1, L->eps, h);
    ps_matmul(h, R, H, &L->qkv, qkv, threads);
    for (int64_t r = 0; r < R; r++) {
        float *row = qkv + r * NQKV;
        if (L->qkv_bias != NULL)
            for (int64_t i = 0; i < NQKV; i++) row[i] += L->qkv_bias[i];
        if (L->q_norm != NULL)
            for (int64_t n = 0; n < NH; n++) head_norm(row + n * D, D, L->q_norm, L->eps);
        if (L->k_norm != NULL)
            for (int64_t n = NH; n < NH + KV; n++) head_norm(row + n * D, D, L->k_norm, L->eps);
        const float *c = L->cos + pos[r] * D, *s = L->sin + pos[r] * D;
        for (int64_t n = 0; n < NH + KV; n++) rope(row + n * D, c, s, D);
        for (int64_t g = 0; kivi == NULL && g < KV; g++) {
            const float *k = row + Q + g * D;
            float *kt = keys + ((slot[r] * KV + g) * CB + pos[r] / 16) * D * 16 + pos[r] % 16;
            for (int64_t d = 0; d < D; d++) kt[d * 16] = k[d];
            memcpy(values + ((slot[r] * KV + g) * C + pos[r]) * D, row + Q + KV * D + g * D,
                   sizeof(float) * D);
        }
    }
    const float scale = L->attn_scale > 0.0f ? L->attn_scale : 1.0f / sqrtf((float)D);
    const int64_t group = NH / KV;
    /* runs of consecutive rows in one slot: a draft, a prompt, or one row per slot */
    int64_t *run_start = malloc(sizeof(int64_t) * (R + 1));
    int64_t runs = 0;
    for (int64_t r = 0; r < R; r++)
        if (r == 0 || slot[r] != slot[r - 1]) run_start[runs++] = r;
    run_start[runs] = R;
    /* KIVI: each run's (slot's) groups quantized and its fp32 tail, per kv head */
    float **tails = NULL;
    if (kivi != NULL) {
        /* in the calling thread's scratch, kept between calls: a step at a long context
           needs megabytes, which fresh allocations would page in again every layer */
        tails = calloc((size_t)(4 * runs * KV), sizeof(float *));
        int64_t total = 0;
        for (int64_t u = 0; u < runs; u++) {
            const int64_t start = pos[run_start[u]], end = pos[run_start[u + 1] - 1] + 1;
            const int64_t n = (end - kivi_boundary(kivi, start) + 15) / 16 * 16;
            total += KV * 2 * ((kivi_boundary(kivi, end - 1) + 1) + n) * D;
        }
        float *at = scratch(total);
        for (int64_t u = 0; u < runs; u++) {
            const int64_t start = pos[run_start[u]], end = pos[run_start[u + 1] - 1] + 1;
            const int64_t n = (end - kivi_boundary(kivi, start) + 15) / 16 * 16;
            const int64_t q = kivi_boundary(kivi, end - 1);
            for (int64_t g = 0; g < KV; g++) {
                float **mine = tails + 4 * (u * KV + g);
                for (int i = 0; i < 4; i++) {
                    mine[i] = at;
                    at += (i < 2 ? q + 1 : n) * D;
                }
            }
        }
#pragma omp parallel for num_threads(threads) schedule(dynamic) collapse(2)
        for (int64_t u = 0; u < runs; u++) {
            for (int64_t g = 0; g < KV; g++) {
                const int64_t r0 = run_start[u], start = pos[r0];
                const int64_t end = pos[run_start[u + 1] - 1] + 1;
                float **mine = tails + 4 * (u * KV + g);
                kivi_prepare(kivi, slot[r0], KV, g, C, D, start, end, qkv, r0, NQKV, Q, mine[0],
                             mine[1], mine[2], mine[3]);
            }
        }
    }
    /* attention tasks: rows tok[first .. first + count) (row indices) times the query
       heads of KV head g. A run of several tokens (a prompt, a draft) in chunks of
       ATT_TOKENS; one-token runs that read one shared prefix (their own, or another slot's:
       prefix[2 r], the slot, prefix[2 r + 1], its length) together, in up to `parts`
       parts, so each part reads the prefix once for all its sequences (Hydragen) */
    int64_t *tok = malloc(sizeof(int64_t) * (R + 1));
    int64_t *task = malloc(sizeof(int64_t) * 4 * (R * KV + 1));
    int64_t *key = malloc(sizeof(int64_t) * (runs + 1));
    int64_t tasks = 0, used = 0;
    const int64_t parts = (2 * threads + KV - 1) / KV;
    for (int64_t u = 0; u < runs; u++) {
        const int64_t r0 = run_start[u], rows = run_start[u + 1] - r0;
        key[u] = rows == 1 && prefix != NULL && kivi == NULL ? prefix[2 * r0] : -1;
    }
    for (int64_t u = 0; u < runs; u++) {
        const int64_t r0 = run_start[u], rows = run_start[u + 1] - r0;
        if (key[u] == -2) continue; /* taken by an earlier run's group */
        if (key[u] == -1) {
            for (int64_t c = 0; c < rows; c += ATT_TOKENS)
                for (int64_t g = 0; g < KV; g++) {
                    task[4 * tasks] = used + c;
                    task[4 * tasks + 1] = rows - c < ATT_TOKENS ? rows - c : ATT_TOKENS;
                    task[4 * tasks + 2] = g;
                    task[4 * tasks + 3] = u;
                    tasks++;
                }
            for (int64_t i = 0; i < rows; i++) tok[used++] = r0 + i;
            continue;
        }
        const int64_t first = used, k = key[u];
        for (int64_t v = u; v < runs; v++)
            if (key[v] == k) {
                tok[used++] = run_start[v];
                key[v] = -2;
            }
        const int64_t m = used - first, n = m < parts ? m : parts;
        for (int64_t i = 0; i < n; i++)
            for (int64_t g = 0; g < KV; g++) {
                task[4 * tasks] = first + m * i / n;
                task[4 * tasks + 1] = m * (i + 1) / n - m * i / n;
                task[4 * tasks + 2] = g;
                task[4 * tasks + 3] = u;
                tasks++;
            }
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int64_t i = 0; i < tasks; i++) {
        const int64_t first = task[4 * i], count = task[4 * i + 1], g = task[4 * i + 2];
        const int64_t u = task[4 * i + 3], n = count * group;
        att_row *row = malloc(sizeof(att_row) * n);
        float *const *mine = kivi != NULL ? tails + 4 * (u * KV + g) : NULL;
        for (int64_t t = 0; t < count; t++) {
            const int64_t r = tok[first + t];
            for (int64_t h = 0; h < group; h++) {
                att_row *a = &row[t * group + h];
                a->q = qkv + r * NQKV + (g * group + h) * D;
                a->out = att + r * Q + (g * group + h) * D;
                a->pos = pos[r];
                if (kivi != NULL) {
                    a->bound = kivi_boundary(kivi, pos[r]);
                    a->t0 = kivi_boundary(kivi, pos[run_start[u]]);
                    a->shared = 0;
                    a->k = mine[2];
                    a->v = mine[3];
                } else {
                    a->bound = a->t0 = 0;
                    a->k = keys + (slot[r] * KV + g) * CB * D * 16;
                    a->v = values + (slot[r] * KV + g) * C * D;
                    a->shared = prefix != NULL ? prefix[2 * r + 1] : 0;
                    const int64_t from = prefix != NULL ? prefix[2 * r] : slot[r];
                    a->pk = keys + (from * KV + g) * CB * D * 16;
                    a->pv = values + (from * KV + g) * C * D;
                }
            }
        }
        attend(row, n, D, mine != NULL ? mine[0] : NULL, mine != NULL ? mine[1] : NULL, scale,
               L->window);
        free(row);
    }
    free(task);
    free(tok);
    free(key);
    if (kivi != NULL) {
        /* the runs' rows into the ring (the tails no longer read it) */
        for (int64_t u = 0; u < runs; u++) {
            const int64_t r0 = run_start[u], start = pos[r0];
            const int64_t end = pos[run_start[u + 1] - 1] + 1;
            for (int64_t j = end - kivi->ring > start ? end - kivi->ring : start; j < end; j++)
                for (int64_t g = 0; g < KV; g++) {
                    const int64_t at = ((slot[r0] * KV + g) * kivi->ring + j % kivi->ring) * D;
                    const float *row = qkv + (r0 + j - start) * NQKV;
                    memcpy(kivi->rkeys + at, row + Q + g * D, sizeof(float) * D);
                    memcpy(kivi->rvalues + at, row + Q + KV * D + g * D, sizeof(float) * D);
                }
        }
        free(tails);
    }
    free(run_start);
    ps_matmul(att, R, Q, &L->o, proj, threads);
    if (L->post_attn != NULL) ps_rms_norm(proj, R, H, L->post_attn, L->eps, proj);
    for (int64_t i = 0; i < R * H; i++) x[i] += proj[i];
    ps_rms_norm(x, R, H, L->ln2, L->eps, h);
    ps_matmul(h, R, H, &L->gate_up, gu, threads);
    for (int64_t r = 0; r < R; r++)
        gated(gu + r * 2 * I, gu + r * 2 * I + I, I, L->act, act + r * I);
    ps_matmul(act, R, I, &L->down, proj, threads);
    if (L->post_mlp != NULL) ps_rms_norm(proj, R, H, L->post_mlp, L->eps, proj);
    for (int64_t i = 0; i < R * H; i++) x[i] += proj[i];
    free(h);
    free(qkv);
    free(att);
    free(proj);
    free(gu);
    free(act);
}
