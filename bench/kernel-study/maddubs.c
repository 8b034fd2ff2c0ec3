/* A study for the int8 core's next kernel (issue 3), not part of the build: Weir's exact kernel
 * (int16 operands, vpmaddwd) against two vpmaddubsw kernels on one 256 x 512 x 512 layer, in the
 * same run, checking that all three give the same int32 sums.
 *
 *   maddubs:         activations 0..127 (7-bit), weights -127..127. A pair sum is at most
 *                    2 * 127 * 127 = 32258, so vpmaddubsw never saturates; vpmaddwd by ones widens.
 *   maddubs+preadd:  activations 0..127, weights -63..63 (7-bit). Two vpmaddubsw results are added
 *                    in int16 before widening (4 products: at most 4 * 127 * 63 = 32004).
 *
 * The pre-added 7-bit kernel is now Weir's `int7` (weir_qgemm7 in Sources/CWeirKernels/kernels.c,
 * docs/model.md), measured here through the library, as is the AVX-512 VNNI kernel (weir_qgemm_vnni,
 * kernels_avx512.c) on machines that have it.
 *
 * Build and run from the repository root:
 *   clang -O2 -o /tmp/kernel-study bench/kernel-study/maddubs.c Sources/CWeirKernels/kernels.c \
 *       Sources/CWeirKernels/kernels_avx512.c -I Sources/CWeirKernels/include -lm && /tmp/kernel-study
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "weir_kernels.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

/* u7 x s8 without pre-add. */
__attribute__((target("avx2"))) static void gemm_plain(const uint8_t *a, size_t as, const int8_t *pb, int32_t *c, size_t n, size_t m, size_t k) {
    size_t kp = (k + 7) / 8 * 8, quads = kp / 4, groups = (m + 7) / 8;
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t g = 0; g < groups; g += 2) {
        const int8_t *b0 = pb + g * quads * 32, *b1 = b0 + quads * 32;
        for (size_t r = 0; r + 4 <= n; r += 4) {
            __m256i acc[4][2];
            for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
            const uint8_t *rows[4] = {a + r * as, a + (r + 1) * as, a + (r + 2) * as, a + (r + 3) * as};
            for (size_t q = 0; q < quads; q++) {
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + q * 32));
                __m256i w1 = _mm256_loadu_si256((const __m256i *)(b1 + q * 32));
                for (int i = 0; i < 4; i++) {
                    int32_t x0; memcpy(&x0, rows[i] + q * 4, 4);
                    __m256i v0 = _mm256_set1_epi32(x0);
                    acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(v0, w0), ones));
                    acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(v0, w1), ones));
                }
            }
            for (int i = 0; i < 4; i++) {
                _mm256_storeu_si256((__m256i *)(c + (r + i) * m + g * 8), acc[i][0]);
                _mm256_storeu_si256((__m256i *)(c + (r + i) * m + g * 8 + 8), acc[i][1]);
            }
        }
    }
}


int main(void) {
    size_t n = 256, k = 512, m = 512;
    int8_t *b = malloc(m * k); uint8_t *a8 = malloc(n * k); int16_t *a16 = malloc(n * k * 2);
    for (size_t i = 0; i < m * k; i++) b[i] = (int8_t)(rand() % 127 - 63);
    for (size_t i = 0; i < n * k; i++) { a8[i] = rand() % 128; a16[i] = a8[i]; }
    int16_t *p16 = malloc(weir_qgemm_packed_count(m, k) * 2); weir_qgemm_pack_b(b, m, k, p16);
    /* Both maddubs kernels read weir_qgemm7_pack_b's layout: 8 outputs x 4 inputs per 32 bytes. */
    int8_t *p8 = malloc(weir_qgemm7_packed_count(m, k)); weir_qgemm7_pack_b(b, m, k, p8);
    int8_t *pv = malloc(weir_qgemm_vnni_packed_count(m, k)); weir_qgemm_vnni_pack_b(b, m, k, pv);
    int32_t *c1 = malloc(n * m * 4), *c2 = malloc(n * m * 4), *c3 = malloc(n * m * 4), *c4 = malloc(n * m * 4);
    double macs = (double)n * m * k;
    int vnni = weir_kernels_best() == WEIR_KERNELS_AVX512;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now(); for (int i = 0; i < 50; i++) weir_qgemm_u8s8(a16, k, p16, c1, m, n, m, k, WEIR_KERNELS_AVX2); double t1 = now();
        for (int i = 0; i < 50; i++) gemm_plain(a8, k, p8, c2, n, m, k); double t2 = now();
        for (int i = 0; i < 50; i++) weir_qgemm7(a8, k, p8, c3, m, n, m, k, WEIR_KERNELS_AVX2); double t3 = now();
        for (int i = 0; vnni && i < 50; i++) weir_qgemm_vnni(a8, k, pv, c4, m, n, m, k, WEIR_KERNELS_AVX512); double t4 = now();
        printf("exact AVX2 %.1f GMAC/s  maddubs %.1f  maddubs+preadd %.1f", macs * 50 / (t1 - t0) / 1e9, macs * 50 / (t2 - t1) / 1e9, macs * 50 / (t3 - t2) / 1e9);
        if (vnni) printf("  VNNI %.1f", macs * 50 / (t4 - t3) / 1e9);
        printf("\n");
    }
    printf("equal: %d %d %d\n", memcmp(c1, c2, n * m * 4) == 0, memcmp(c1, c3, n * m * 4) == 0, !vnni || memcmp(c1, c4, n * m * 4) == 0);
    return 0;
}
