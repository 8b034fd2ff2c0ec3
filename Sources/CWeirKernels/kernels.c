#include "weir_kernels.h"
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WEIR_X86 1
#endif

static size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

size_t weir_qgemm_packed_count(size_t m, size_t k) { return round_up(m, 8) * round_up(k, 2); }

void weir_qgemm_pack_b(const int8_t *b, size_t m, size_t k, int16_t *packed) {
    size_t kp = round_up(k, 2), mp = round_up(m, 8);
    memset(packed, 0, mp * kp * sizeof(int16_t));
    /* Block layout: for each group of 8 outputs, for each pair of inputs, 8 x 2 int16. */
    for (size_t group = 0; group < mp / 8; group++)
        for (size_t kb = 0; kb < kp / 2; kb++)
            for (size_t j = 0; j < 8; j++)
                for (size_t t = 0; t < 2; t++) {
                    size_t row = group * 8 + j, col = kb * 2 + t;
                    if (row < m && col < k)
                        packed[((group * (kp / 2) + kb) * 8 + j) * 2 + t] = b[row * k + col];
                }
}

void weir_qgemm_u8s8_portable(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c,
                              size_t c_stride, size_t n, size_t m, size_t k) {
    size_t kp = round_up(k, 2), groups = round_up(m, 8) / 8;
    for (size_t r = 0; r < n; r++) {
        const int16_t *row = a + r * a_stride;
        for (size_t group = 0; group < groups; group++) {
            int32_t acc[8] = {0};
            const int16_t *block = packed_b + group * (kp / 2) * 16;
            for (size_t kb = 0; kb < kp / 2; kb++, block += 16)
                for (size_t j = 0; j < 8; j++)
                    acc[j] += (int32_t)row[kb * 2] * block[j * 2] + (int32_t)row[kb * 2 + 1] * block[j * 2 + 1];
            for (size_t j = 0; j < 8 && group * 8 + j < m; j++) c[r * c_stride + group * 8 + j] = acc[j];
        }
    }
}

#ifdef WEIR_X86
/* Up to four rows of A against two groups of 8 outputs per pass. */
__attribute__((target("avx2"))) static void qgemm_avx2(const int16_t *a, size_t a_stride, const int16_t *packed_b,
                                                      int32_t *c, size_t c_stride, size_t n, size_t m, size_t k) {
    size_t kp = round_up(k, 2), kblocks = kp / 2, groups = round_up(m, 8) / 8;
    for (size_t r = 0; r < n; r += 4) {
        size_t rows = n - r < 4 ? n - r : 4;
        const int16_t *a0 = a + r * a_stride;
        const int16_t *a1 = rows > 1 ? a0 + a_stride : a0;
        const int16_t *a2 = rows > 2 ? a0 + 2 * a_stride : a0;
        const int16_t *a3 = rows > 3 ? a0 + 3 * a_stride : a0;
        for (size_t group = 0; group < groups; group += 2) {
            int two = group + 1 < groups;
            const int16_t *b0 = packed_b + group * kblocks * 16;
            const int16_t *b1 = two ? b0 + kblocks * 16 : b0;
            __m256i acc00 = _mm256_setzero_si256(), acc10 = acc00, acc20 = acc00, acc30 = acc00;
            __m256i acc01 = acc00, acc11 = acc00, acc21 = acc00, acc31 = acc00;
            for (size_t kb = 0; kb < kblocks; kb++) {
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + kb * 16));
                __m256i w1 = _mm256_loadu_si256((const __m256i *)(b1 + kb * 16));
                int32_t x0, x1, x2, x3;
                memcpy(&x0, a0 + kb * 2, 4); memcpy(&x1, a1 + kb * 2, 4);
                memcpy(&x2, a2 + kb * 2, 4); memcpy(&x3, a3 + kb * 2, 4);
                __m256i v0 = _mm256_set1_epi32(x0), v1 = _mm256_set1_epi32(x1);
                __m256i v2 = _mm256_set1_epi32(x2), v3 = _mm256_set1_epi32(x3);
                acc00 = _mm256_add_epi32(acc00, _mm256_madd_epi16(v0, w0));
                acc10 = _mm256_add_epi32(acc10, _mm256_madd_epi16(v1, w0));
                acc20 = _mm256_add_epi32(acc20, _mm256_madd_epi16(v2, w0));
                acc30 = _mm256_add_epi32(acc30, _mm256_madd_epi16(v3, w0));
                acc01 = _mm256_add_epi32(acc01, _mm256_madd_epi16(v0, w1));
                acc11 = _mm256_add_epi32(acc11, _mm256_madd_epi16(v1, w1));
                acc21 = _mm256_add_epi32(acc21, _mm256_madd_epi16(v2, w1));
                acc31 = _mm256_add_epi32(acc31, _mm256_madd_epi16(v3, w1));
            }
            __m256i results[8] = {acc00, acc10, acc20, acc30, acc01, acc11, acc21, acc31};
            for (int half = 0; half < (two ? 2 : 1); half++)
                for (size_t row = 0; row < rows; row++) {
                    int32_t lanes[8];
                    _mm256_storeu_si256((__m256i *)lanes, results[half * 4 + row]);
                    size_t base = (group + half) * 8;
                    for (size_t j = 0; j < 8 && base + j < m; j++) c[(r + row) * c_stride + base + j] = lanes[j];
                }
        }
    }
}
#endif

int weir_kernels_have_avx2(void) {
#ifdef WEIR_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
#else
    return 0;
#endif
}

void weir_qgemm_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c, size_t c_stride,
                     size_t n, size_t m, size_t k) {
#ifdef WEIR_X86
    if (weir_kernels_have_avx2()) { qgemm_avx2(a, a_stride, packed_b, c, c_stride, n, m, k); return; }
#endif
    weir_qgemm_u8s8_portable(a, a_stride, packed_b, c, c_stride, n, m, k);
}

#ifdef WEIR_X86
__attribute__((target("avx2,fma"))) static void sgemm_avx2(const float *x, size_t x_stride, const float *w, size_t m,
                                                          float *y, size_t y_stride, size_t n, size_t k) {
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * x_stride;
        float *yr = y + r * y_stride;
        size_t j = 0;
        for (; j + 16 <= m; j += 16) {
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            for (size_t kk = 0; kk < k; kk++) {
                __m256 xv = _mm256_set1_ps(xr[kk]);
                acc0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + kk * m + j), acc0);
                acc1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + kk * m + j + 8), acc1);
            }
            _mm256_storeu_ps(yr + j, acc0);
            _mm256_storeu_ps(yr + j + 8, acc1);
        }
        for (; j + 8 <= m; j += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (size_t kk = 0; kk < k; kk++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(xr[kk]), _mm256_loadu_ps(w + kk * m + j), acc);
            _mm256_storeu_ps(yr + j, acc);
        }
        for (; j < m; j++) {
            float acc = 0;
            for (size_t kk = 0; kk < k; kk++) acc += xr[kk] * w[kk * m + j];
            yr[j] = acc;
        }
    }
}
#endif

void weir_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                size_t n, size_t k) {
#ifdef WEIR_X86
    if (weir_kernels_have_avx2()) { sgemm_avx2(x, x_stride, w, m, y, y_stride, n, k); return; }
#endif
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < m; j++) {
            float acc = 0;
            for (size_t kk = 0; kk < k; kk++) acc += x[r * x_stride + kk] * w[kk * m + j];
            y[r * y_stride + j] = acc;
        }
}
