/* Weight-only int8 linear layers for the local engine's CPU decode loop (AVX-512).

   Decoding a small model on a CPU reads every weight once per forward pass, so the pass
   costs what reading the weights costs: int8 weights are a quarter of fp32's bytes. The
   weights are packed in panels of 16 output channels ([N/16][K][16]), so one 16-byte load
   feeds 16 channels and no horizontal sums are needed; a block of up to 6 activation rows
   shares each loaded panel, so verifying a speculative draft of a few tokens costs little
   more than one token.

   Every output element is one fused multiply-add chain over k in order, whatever the
   number of rows: a token's logits are bit-identical whether it goes through the pass
   alone or with a draft, which keeps speculative greedy decoding lossless. */
#include <immintrin.h>
#include <stdint.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define MB 6
#define NP 4

static inline __attribute__((always_inline)) void block_i8(
    const int MM, const int PP, const float *x, int64_t K, const int8_t *w, const float *scale,
    int64_t N, int64_t m0, int64_t p0, float *out) {
    __m512 acc[MB][NP];
    for (int i = 0; i < MM; i++)
        for (int p = 0; p < PP; p++) acc[i][p] = _mm512_setzero_ps();
    const int8_t *wp[NP];
    for (int p = 0; p < PP; p++) wp[p] = w + (p0 + p) * K * 16;
    for (int64_t k = 0; k < K; k++) {
        __m512 wv[NP];
        for (int p = 0; p < PP; p++)
            wv[p] = _mm512_cvtepi32_ps(
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wp[p] + k * 16))));
        for (int i = 0; i < MM; i++) {
            __m512 xb = _mm512_set1_ps(x[(m0 + i) * K + k]);
            for (int p = 0; p < PP; p++) acc[i][p] = _mm512_fmadd_ps(xb, wv[p], acc[i][p]);
        }
    }
    for (int p = 0; p < PP; p++) {
        __m512 s = _mm512_loadu_ps(scale + (p0 + p) * 16);
        for (int i = 0; i < MM; i++)
            _mm512_storeu_ps(out + (m0 + i) * N + (p0 + p) * 16, _mm512_mul_ps(acc[i][p], s));
    }
}

#define ROWS(PP)                                                                        \
    do {                                                                                \
        int64_t m0 = 0;                                                                 \
        for (; m0 + MB <= M; m0 += MB) block_i8(MB, PP, x, K, w, scale, N, m0, p, out); \
        switch (M - m0) {                                                               \
        case 1: block_i8(1, PP, x, K, w, scale, N, m0, p, out); break;                  \
        case 2: block_i8(2, PP, x, K, w, scale, N, m0, p, out); break;                  \
        case 3: block_i8(3, PP, x, K, w, scale, N, m0, p, out); break;                  \
        case 4: block_i8(4, PP, x, K, w, scale, N, m0, p, out); break;                  \
        case 5: block_i8(5, PP, x, K, w, scale, N, m0, p, out); break;                  \
        default: break;                                                                 \
        }                                                                               \
    } while (0)

/* out[M, N] = (x[M, K] @ W[N, K]^T) * scale[N], with W packed as [N/16][K][16] int8.
   Every output is one fused multiply-add chain over k in order, whatever M is, so a
   row's result does not depend on the other rows in the call. */
void ps_int8_linear(const float *x, int64_t M, int64_t K, const int8_t *w, const float *scale,
                    int64_t N, float *out, int threads) {
    const int64_t panels = N / 16;
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t begin = panels * t / nt, end = panels * (t + 1) / nt;
        int64_t p = begin;
        for (; p + NP <= end; p += NP) ROWS(NP);
        switch (end - p) {
        case 1: ROWS(1); break;
        case 2: ROWS(2); break;
        case 3: ROWS(3); break;
        default: break;
        }
    }
}

/* [N, K] int8 row-major -> [N/16][K][16]. */
void ps_int8_pack(const int8_t *w, int64_t N, int64_t K, int8_t *packed) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) packed[((n / 16) * K + k) * 16 + n % 16] = w[n * K + k];
}

/* ---- one Llama decoder layer, for any set of rows ---------------------------------

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
    const int8_t *qkv, *o, *gate_up, *down;
    const float *qkv_s, *o_s, *gate_up_s, *down_s;
    const float *cos, *sin; /* [positions, head_dim] */
} ps_layer;

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

void ps_layer_forward(const ps_layer *L, float *x, int64_t R, const int64_t *slot,
                      const int64_t *pos, float *keys, float *values, int64_t capacity,
                      int threads) {
    const int64_t H = L->hidden, NH = L->heads, KV = L->kv_heads, D = L->head_dim;
    const int64_t Q = NH * D, NQKV = (NH + 2 * KV) * D, I = L->inter, C = capacity;
    float *h = malloc(sizeof(float) * R * H);
    float *qkv = malloc(sizeof(float) * R * NQKV);
    float *att = malloc(sizeof(float) * R * Q);
    float *proj = malloc(sizeof(float) * R * H);
    float *gu = malloc(sizeof(float) * R * 2 * I);
    float *act = malloc(sizeof(float) * R * I);

    ps_rms_norm(x, R, H, L->ln1, L->eps, h);
    ps_int8_linear(h, R, H, L->qkv, L->qkv_s, NQKV, qkv, threads);
    for (int64_t r = 0; r < R; r++) {
        float *row = qkv + r * NQKV;
        const float *c = L->cos + pos[r] * D, *s = L->sin + pos[r] * D;
        for (int64_t n = 0; n < NH + KV; n++) rope(row + n * D, c, s, D);
        for (int64_t g = 0; g < KV; g++) {
            const int64_t at = ((slot[r] * KV + g) * C + pos[r]) * D;
            memcpy(keys + at, row + Q + g * D, sizeof(float) * D);
            memcpy(values + at, row + Q + KV * D + g * D, sizeof(float) * D);
        }
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t group = NH / KV;
#pragma omp parallel for num_threads(threads) schedule(dynamic) collapse(2)
    for (int64_t r = 0; r < R; r++) {
        for (int64_t n = 0; n < NH; n++) {
            const int64_t g = n / group, len = pos[r] + 1;
            const float *q = qkv + r * NQKV + n * D;
            const float *kb = keys + (slot[r] * KV + g) * C * D;
            const float *vb = values + (slot[r] * KV + g) * C * D;
            float *score = malloc(sizeof(float) * len);
            float top = -INFINITY;
            for (int64_t j = 0; j < len; j++) {
                __m512 acc = _mm512_setzero_ps();
                for (int64_t d = 0; d < D; d += 16)
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(kb + j * D + d),
                                          acc);
                score[j] = sum16(acc) * scale;
                if (score[j] > top) top = score[j];
            }
            float total = 0.0f;
            for (int64_t j = 0; j < len; j++) {
                score[j] = expf(score[j] - top);
                total += score[j];
            }
            float *out = att + r * Q + n * D;
            for (int64_t d = 0; d < D; d += 16) {
                __m512 acc = _mm512_setzero_ps();
                for (int64_t j = 0; j < len; j++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(score[j]),
                                          _mm512_loadu_ps(vb + j * D + d), acc);
                _mm512_storeu_ps(out + d, _mm512_div_ps(acc, _mm512_set1_ps(total)));
            }
            free(score);
        }
    }
    ps_int8_linear(att, R, Q, L->o, L->o_s, H, proj, threads);
    for (int64_t i = 0; i < R * H; i++) x[i] += proj[i];
    ps_rms_norm(x, R, H, L->ln2, L->eps, h);
    ps_int8_linear(h, R, H, L->gate_up, L->gate_up_s, 2 * I, gu, threads);
    for (int64_t r = 0; r < R; r++)
        for (int64_t i = 0; i < I; i++) {
            const float g = gu[r * 2 * I + i], u = gu[r * 2 * I + I + i];
            act[r * I + i] = g / (1.0f + expf(-g)) * u;
        }
    ps_int8_linear(act, R, I, L->down, L->down_s, H, proj, threads);
    for (int64_t i = 0; i < R * H; i++) x[i] += proj[i];
    free(h);
    free(qkv);
    free(att);
    free(proj);
    free(gu);
    free(act);
}
