/* The AVX-512 kernel set (F, BW, VL, DQ and VNNI), and the VNNI weight layout with its portable loop. */
#include "kernels_internal.h"

/* ---- the VNNI layout: 16 outputs x 4 inputs per 64-byte block ------------------------------------ */

size_t weir_qgemm_vnni_packed_count(size_t m, size_t k) { return round_up(m, 16) * round_up(k, 4); }

/* Blocks of 16 outputs x 4 inputs, k padded to 4: output j's four bytes at j * 4, the int32 lane
 * vpdpbusd sums them into. */
void weir_qgemm_vnni_pack_b(const int8_t *b, size_t m, size_t k, int8_t *packed) { weir_pack_quad_blocks(b, m, k, 16, 4, packed); }

static void qgemm_vnni_portable(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                                size_t n, size_t m, size_t k) {
    weir_qgemm_quad_blocks_portable(a, a_stride, packed_b, c, c_stride, n, m, k, 16, 4);
}

void weir_qgemm_vnni(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                     size_t n, size_t m, size_t k, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (weir_kernels_usable(kernels) == WEIR_KERNELS_AVX512) {
        weir_avx512_qgemm_vnni(a, a_stride, packed_b, c, c_stride, n, m, k, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0);
        return;
    }
#endif
    qgemm_vnni_portable(a, a_stride, packed_b, c, c_stride, n, m, k);
}

void weir_qdense_vnni(const uint8_t *a, size_t a_stride, const int8_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (weir_kernels_usable(kernels) == WEIR_KERNELS_AVX512) {
        weir_avx512_qgemm_vnni(a, a_stride, packed_b, NULL, 0, n, m, k, row_scales, zero_points, column_sums, weight_scales,
                               bias, relu, y, y_stride);
        return;
    }
#endif
    qgemm_vnni_portable(a, a_stride, packed_b, scratch, m, n, m, k);
    weir_dequantize_rows(scratch, n, m, row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride, kernels);
}

#ifdef WEIR_X86
#define WEIR_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#define WEIR_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma"), always_inline)) static inline

/* Loops over a block's rows and groups (constant bounds) unroll fully, so the accumulators stay in
 * registers. */
#define UNROLLED _Pragma("clang loop unroll(full)")

/* The lanes of a 16-wide group that exist when `count` values remain. */
WEIR_AVX512_INLINE __mmask16 lanes_for(size_t count) { return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1); }

/* ---- int8 / int7 layers with vpdpbusd ------------------------------------------------------------ */

typedef struct {
    const float *row_scales;
    const int32_t *zero_points;
    const int32_t *column_sums;
    const float *weight_scales;
    const float *bias;
    int relu;
    float *y;
    size_t y_stride;
} vnni_epilogue_t;

/* y = f32(acc - zp * colsum) * (s_x * s_w) + b for a block, in the reference's order, no FMA
 * (CORRECT 0: every zero point of the block is 0, so acc is already the corrected sum). */
WEIR_AVX512_INLINE void vnni_epilogue(__m512i acc[12][4], const int ROWS, const int G, size_t r, size_t group, size_t m,
                                      const vnni_epilogue_t *e, const int CORRECT) {
    const int32_t *const column_sums = e->column_sums, *const zero_points = e->zero_points;
    const float *const weight_scales = e->weight_scales, *const bias_values = e->bias, *const row_scales = e->row_scales;
    const int relu = e->relu;
    float *const y = e->y;
    const size_t y_stride = e->y_stride;
    UNROLLED
    for (int g = 0; g < G; g++) {
        size_t base = (group + g) * 16;
        __mmask16 mask = lanes_for(m - base);
        __m512i sums = CORRECT ? _mm512_maskz_loadu_epi32(mask, column_sums + base) : _mm512_setzero_si512();
        __m512 scales = _mm512_maskz_loadu_ps(mask, weight_scales + base);
        __m512 bias = bias_values ? _mm512_maskz_loadu_ps(mask, bias_values + base) : _mm512_setzero_ps();
        UNROLLED
        for (int i = 0; i < ROWS; i++) {
            size_t row = r + i;
            __m512i corrected = CORRECT ? _mm512_sub_epi32(acc[i][g], _mm512_mullo_epi32(_mm512_set1_epi32(zero_points[row]), sums))
                                        : acc[i][g];
            __m512 product = _mm512_mul_ps(_mm512_cvtepi32_ps(corrected), _mm512_mul_ps(_mm512_set1_ps(row_scales[row]), scales));
            if (bias_values) product = _mm512_add_ps(product, bias);
            if (relu) product = _mm512_max_ps(product, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(y + row * y_stride + base, mask, product);
        }
    }
}

/* ROWS (1...12) rows against G (1...4) groups of 16 outputs starting at `group`; both are constants at
 * each call site, so the loops unroll and the ROWS x G accumulators stay in registers. Each step
 * broadcasts four activation bytes of a row and multiplies them with four inputs of 16 outputs. */
WEIR_AVX512_INLINE void vnni_block(const uint8_t *a, size_t a_stride, const int8_t *packed_b, size_t quads, size_t r,
                                   size_t group, size_t m, const int ROWS, const int G, int32_t *c, size_t c_stride,
                                   const vnni_epilogue_t *e) {
    const int8_t *b = packed_b + group * quads * 64;
    const size_t group_step = quads * 64;
    const uint8_t *rows[12];
    UNROLLED
    for (int i = 0; i < ROWS; i++) rows[i] = a + (r + i) * a_stride;
    __m512i acc[12][4];
    UNROLLED
    for (int i = 0; i < ROWS; i++)
        UNROLLED
        for (int g = 0; g < G; g++) acc[i][g] = _mm512_setzero_si512();
    for (size_t q = 0; q < quads; q++) {
        __m512i w[4];
        UNROLLED
        for (int g = 0; g < G; g++) w[g] = _mm512_loadu_si512((const void *)(b + g * group_step + q * 64));
        UNROLLED
        for (int i = 0; i < ROWS; i++) {
            int32_t quad;
            memcpy(&quad, rows[i] + q * 4, 4);
            __m512i v = _mm512_set1_epi32(quad);
            UNROLLED
            for (int g = 0; g < G; g++) acc[i][g] = _mm512_dpbusd_epi32(acc[i][g], v, w[g]);
        }
    }
    if (!e) {
        UNROLLED
        for (int g = 0; g < G; g++) {
            size_t base = (group + g) * 16;
            UNROLLED
            for (int i = 0; i < ROWS; i++) _mm512_mask_storeu_epi32(c + (r + i) * c_stride + base, lanes_for(m - base), acc[i][g]);
        }
        return;
    }
    /* Rows whose zero point is 0 (every row after a ReLU: its range starts at 0) need no correction;
     * when the whole block has them, the epilogue skips the multiply and subtract. */
    int32_t any_zero_point = 0;
    UNROLLED
    for (int i = 0; i < ROWS; i++) any_zero_point |= e->zero_points[r + i];
    if (any_zero_point) vnni_epilogue(acc, ROWS, G, r, group, m, e, 1);
    else vnni_epilogue(acc, ROWS, G, r, group, m, e, 0);
}

/* Every block of up to 4 groups (64 outputs; outside) and 6 rows (inside): a 64-output slice of the
 * weights is read once per block of rows and stays in L1 across the rows of the tile. The rows are
 * split into blocks as even as possible (32 rows: 6, 6, 5, 5, 5, 5), since a small last block has too
 * few accumulators to keep the multiply pipes busy. */
#define WEIR_VNNI_ROWS(G, ROWS_MAX)                                                                        \
    do {                                                                                                 \
        size_t blocks = (n + (ROWS_MAX) - 1) / (ROWS_MAX), r = 0;                                        \
        for (size_t left = blocks; left > 0; left--) {                                                   \
            size_t rows = (n - r + left - 1) / left;                                                     \
            switch (rows) {                                                                              \
            case 12: vnni_block(a, a_stride, packed_b, quads, r, group, m, 12, G, c, c_stride, e); break; \
            case 11: vnni_block(a, a_stride, packed_b, quads, r, group, m, 11, G, c, c_stride, e); break; \
            case 10: vnni_block(a, a_stride, packed_b, quads, r, group, m, 10, G, c, c_stride, e); break; \
            case 9: vnni_block(a, a_stride, packed_b, quads, r, group, m, 9, G, c, c_stride, e); break; \
            case 8: vnni_block(a, a_stride, packed_b, quads, r, group, m, 8, G, c, c_stride, e); break; \
            case 7: vnni_block(a, a_stride, packed_b, quads, r, group, m, 7, G, c, c_stride, e); break; \
            case 6: vnni_block(a, a_stride, packed_b, quads, r, group, m, 6, G, c, c_stride, e); break; \
            case 5: vnni_block(a, a_stride, packed_b, quads, r, group, m, 5, G, c, c_stride, e); break; \
            case 4: vnni_block(a, a_stride, packed_b, quads, r, group, m, 4, G, c, c_stride, e); break; \
            case 3: vnni_block(a, a_stride, packed_b, quads, r, group, m, 3, G, c, c_stride, e); break; \
            case 2: vnni_block(a, a_stride, packed_b, quads, r, group, m, 2, G, c, c_stride, e); break; \
            default: vnni_block(a, a_stride, packed_b, quads, r, group, m, 1, G, c, c_stride, e); break;  \
            }                                                                                            \
            r += rows;                                                                                   \
        }                                                                                                \
    } while (0)

WEIR_AVX512 void weir_avx512_qgemm_vnni(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                                        size_t n, size_t m, size_t k, const float *row_scales, const int32_t *zero_points,
                                        const int32_t *column_sums, const float *weight_scales, const float *bias, int relu,
                                        float *y, size_t y_stride) {
    vnni_epilogue_t epilogue = {row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride};
    const vnni_epilogue_t *e = row_scales ? &epilogue : NULL;
    size_t quads = round_up(k, 4) / 4, groups = round_up(m, 16) / 16;
    for (size_t group = 0; group < groups; group += 4) {
        switch (groups - group >= 4 ? 4 : groups - group) {
        case 4: WEIR_VNNI_ROWS(4, 6); break;
        case 3: WEIR_VNNI_ROWS(3, 8); break;
        case 2: WEIR_VNNI_ROWS(2, 12); break;
        default: WEIR_VNNI_ROWS(1, 12); break;
        }
    }
}

/* ---- row quantization to bytes -------------------------------------------------------------------- */

/* The running bounds of one row, sixteen lanes each: lanes' min(0, x...) and max(0, x...). NaN
 * elements are skipped, as in the rule: min_ps/max_ps return their second operand when one is NaN,
 * and the running bound (never NaN) is that operand. The tail's missing lanes load as 0, which the
 * range holds anyway. */
WEIR_AVX512_INLINE void row_bounds_avx512(const float *x, size_t k, __m512 *lo_out, __m512 *hi_out) {
    __m512 lo0 = _mm512_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0;
    size_t i = 0;
    for (; i + 32 <= k; i += 32) {
        __m512 v = _mm512_loadu_ps(x + i), w = _mm512_loadu_ps(x + i + 16);
        lo0 = _mm512_min_ps(v, lo0);
        hi0 = _mm512_max_ps(v, hi0);
        lo1 = _mm512_min_ps(w, lo1);
        hi1 = _mm512_max_ps(w, hi1);
    }
    for (; i < k; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(lanes_for(k - i), x + i);
        lo0 = _mm512_min_ps(v, lo0);
        hi0 = _mm512_max_ps(v, hi0);
    }
    *lo_out = _mm512_min_ps(lo1, lo0);
    *hi_out = _mm512_max_ps(hi1, hi0);
}

/* Sixteen rows' bounds (v[r], sixteen lanes each) folded into one vector, without a horizontal
 * reduction per row: each level halves the lanes per row and doubles the rows per vector. MIN is
 * _mm512_min_ps or _mm512_max_ps. Lane 4t + u of the result holds row 4u + t (`row_of_lane`). None
 * of the lanes is NaN, so the order of the folds does not matter. */
#define WEIR_FOLD_ROWS(v, MIN, out)                                                                              \
    do {                                                                                                       \
        __m512 a_[8], b_[4], c_[2];                                                                            \
        for (int i_ = 0; i_ < 8; i_++) /* 16 lanes -> 8: rows 2i, 2i+1 side by side */                         \
            a_[i_] = MIN(_mm512_shuffle_f32x4(v[2 * i_], v[2 * i_ + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i_], v[2 * i_ + 1], 0xEE)); \
        for (int i_ = 0; i_ < 4; i_++) /* 8 -> 4: quarter t holds row 4i + t */                                \
            b_[i_] = MIN(_mm512_shuffle_f32x4(a_[2 * i_], a_[2 * i_ + 1], 0x88), _mm512_shuffle_f32x4(a_[2 * i_], a_[2 * i_ + 1], 0xDD)); \
        for (int i_ = 0; i_ < 2; i_++) /* 4 -> 2 within each quarter */                                        \
            c_[i_] = MIN(_mm512_shuffle_ps(b_[2 * i_], b_[2 * i_ + 1], 0x44), _mm512_shuffle_ps(b_[2 * i_], b_[2 * i_ + 1], 0xEE)); \
        out = MIN(_mm512_shuffle_ps(c_[0], c_[1], 0x88), _mm512_shuffle_ps(c_[0], c_[1], 0xDD));              \
    } while (0)

/* rint(x * inv) + zp for sixteen floats, before the clamp (cvtps rounds to nearest, ties to even,
 * like rint). */
WEIR_AVX512_INLINE __m512i quantize16_unclamped(const float *x, __m512 inverse, __m512i zp) {
    return _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), inverse)), zp);
}

/* q = clamp(rint(x * inv) + zp, 0, levels) for a row; the padding up to q_stride is zero. Sixty-four
 * (then thirty-two) values at a time: packs (to int16) then packus (to 0...255) saturate before the
 * clamp to levels, which gives the clamp's result; a dword permutation undoes the packs' lane
 * interleaving. The last 1...31 values go sixteen at a time, masked. */
WEIR_AVX512_INLINE void quantize_row_bytes_avx512(const float *x, size_t k, uint8_t *q, size_t q_stride, row_quantization_t rq) {
    const __m512 inverse = _mm512_set1_ps(rq.inverse);
    const __m512i zp = _mm512_set1_epi32(rq.zp), top = _mm512_set1_epi32(rq.levels), zero = _mm512_setzero_si512();
    const __m512i top8 = _mm512_set1_epi8((char)rq.levels);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    size_t i = 0;
    for (; i + 64 <= k; i += 64) {
        __m512i words0 = _mm512_packs_epi32(quantize16_unclamped(x + i, inverse, zp), quantize16_unclamped(x + i + 16, inverse, zp));
        __m512i words1 = _mm512_packs_epi32(quantize16_unclamped(x + i + 32, inverse, zp), quantize16_unclamped(x + i + 48, inverse, zp));
        __m512i bytes = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(words0, words1));
        _mm512_storeu_si512((void *)(q + i), _mm512_min_epu8(bytes, top8));
    }
    if (i + 32 <= k) {
        __m512i words = _mm512_packs_epi32(quantize16_unclamped(x + i, inverse, zp), quantize16_unclamped(x + i + 16, inverse, zp));
        __m512i bytes = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(words, words));
        _mm256_storeu_si256((__m256i *)(q + i), _mm512_castsi512_si256(_mm512_min_epu8(bytes, top8)));
        i += 32;
    }
    for (; i < k; i += 16) {
        __mmask16 mask = lanes_for(k - i);
        __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inverse)), zp);
        v = _mm512_min_epi32(_mm512_max_epi32(v, zero), top);
        _mm_mask_storeu_epi8(q + i, mask, _mm512_cvtepi32_epi8(v));
    }
    if (q_stride > k) memset(q + k, 0, q_stride - k);
}

/* The lanes of a 64-byte store that exist when `count` bytes remain. */
WEIR_AVX512_INLINE __mmask64 byte_lanes_for(size_t count) { return count >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << count) - 1); }

/* One group of up to sixteen rows' scales and zero points from their folded bounds: the rule's IEEE
 * operations lane by lane. Writes `rows` scales and zero points, returns the inverses. */
WEIR_AVX512_INLINE __m512 group_quantizations(__m512 lows[16], __m512 highs[16], int32_t levels, size_t rows, float *scales,
                                              int32_t *zero_points, __m512i *zps) {
    /* Lane 4t + u of a fold holds row 4u + t: this puts row r in lane r. */
    const __m512i row_of_lane = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 l, h;
    WEIR_FOLD_ROWS(lows, _mm512_min_ps, l);
    WEIR_FOLD_ROWS(highs, _mm512_max_ps, h);
    l = _mm512_permutexvar_ps(row_of_lane, l);
    h = _mm512_permutexvar_ps(row_of_lane, h);
    __m512 s = _mm512_div_ps(_mm512_sub_ps(h, l), _mm512_set1_ps((float)levels));
    s = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_EQ_OQ), s, one);
    __m512 inverse = _mm512_div_ps(one, s);
    __m512i zp = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_xor_ps(l, _mm512_set1_ps(-0.0f)), inverse));
    zp = _mm512_min_epi32(_mm512_max_epi32(zp, _mm512_setzero_si512()), _mm512_set1_epi32(levels));
    __mmask16 mask = lanes_for(rows);
    _mm512_mask_storeu_ps(scales, mask, s);
    _mm512_mask_storeu_epi32(zero_points, mask, zp);
    *zps = zp;
    return inverse;
}

/* Rows of at most 64 values (VECTORS = 1...4 vectors of sixteen, a constant at each call): loads,
 * bounds and packing unrolled, no loops over the row, and one masked store that writes the row and
 * its zero padding up to q_stride (<= 64). */
WEIR_AVX512_INLINE void quantize_short_rows_avx512(const float *x, size_t x_stride, size_t n, size_t k, int32_t levels, uint8_t *q,
                                                   size_t q_stride, float *scales, int32_t *zero_points, const int VECTORS) {
    __mmask16 masks[4];
    UNROLLED
    for (int j = 0; j < VECTORS; j++) masks[j] = lanes_for(k - 16 * (size_t)j);
    const __mmask64 values = byte_lanes_for(k), stored = byte_lanes_for(q_stride);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i top8 = _mm512_set1_epi8((char)levels);
    for (size_t first = 0; first < n; first += 16) {
        size_t rows = n - first < 16 ? n - first : 16;
        __m512 lows[16], highs[16];
        for (size_t r = 0; r < 16; r++) {
            __m512 lo = _mm512_setzero_ps(), hi = lo;
            if (r < rows) {
                const float *row = x + (first + r) * x_stride;
                UNROLLED
                for (int j = 0; j < VECTORS; j++) {
                    __m512 v = _mm512_maskz_loadu_ps(masks[j], row + 16 * j);
                    lo = _mm512_min_ps(v, lo);  /* a NaN element keeps the bound: see row_bounds_avx512 */
                    hi = _mm512_max_ps(v, hi);
                }
            }
            lows[r] = lo;
            highs[r] = hi;
        }
        __m512i zps;
        __m512 inverses = group_quantizations(lows, highs, levels, rows, scales + first, zero_points + first, &zps);
        for (size_t r = 0; r < rows; r++) {
            const float *row = x + (first + r) * x_stride;
            /* Row r's lanes, broadcast in registers (a load right after the masked stores would wait
             * for them: masked stores do not forward). */
            const __m512i lane = _mm512_set1_epi32((int)r);
            const __m512 inverse = _mm512_permutexvar_ps(lane, inverses);
            const __m512i zp = _mm512_permutexvar_epi32(lane, zps);
            __m512i w[4];
            UNROLLED
            for (int j = 0; j < VECTORS; j++) w[j] = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(masks[j], row + 16 * j), inverse)), zp);
            UNROLLED
            for (int j = VECTORS; j < 4; j++) w[j] = _mm512_setzero_si512();
            __m512i words0 = _mm512_packs_epi32(w[0], w[1]), words1 = VECTORS > 2 ? _mm512_packs_epi32(w[2], w[3]) : words0;
            __m512i bytes = _mm512_min_epu8(_mm512_permutexvar_epi32(order, _mm512_packus_epi16(words0, words1)), top8);
            /* Values past k (the zero-loaded lanes) become 0, and so does the padding. */
            _mm512_mask_storeu_epi8(q + (first + r) * q_stride, stored, _mm512_maskz_mov_epi8(values, bytes));
        }
    }
}

/* Rows in groups of sixteen: each row's bounds, folded into the group's ranges at once, the
 * group's scales and zero points with one vector division (the rule's IEEE operations lane by
 * lane), then each row's values. Rows of up to 64 values (with padding to at most 64) take the
 * unrolled path. */
WEIR_AVX512 void weir_avx512_quantize_rows_bytes(const float *x, size_t x_stride, size_t n, size_t k, int32_t levels, uint8_t *q,
                                                 size_t q_stride, float *scales, int32_t *zero_points) {
    if (k <= 64 && q_stride <= 64 && k > 0) {
        switch ((k + 15) / 16) {
        case 1: quantize_short_rows_avx512(x, x_stride, n, k, levels, q, q_stride, scales, zero_points, 1); return;
        case 2: quantize_short_rows_avx512(x, x_stride, n, k, levels, q, q_stride, scales, zero_points, 2); return;
        case 3: quantize_short_rows_avx512(x, x_stride, n, k, levels, q, q_stride, scales, zero_points, 3); return;
        default: quantize_short_rows_avx512(x, x_stride, n, k, levels, q, q_stride, scales, zero_points, 4); return;
        }
    }
    for (size_t first = 0; first < n; first += 16) {
        size_t rows = n - first < 16 ? n - first : 16;
        __m512 lows[16], highs[16];
        for (size_t r = 0; r < 16; r++) {
            if (r < rows) row_bounds_avx512(x + (first + r) * x_stride, k, lows + r, highs + r);
            else lows[r] = highs[r] = _mm512_setzero_ps();
        }
        float inverses[16];
        int32_t row_zps[16];
        __m512i zps;
        _mm512_storeu_ps(inverses, group_quantizations(lows, highs, levels, rows, scales + first, zero_points + first, &zps));
        _mm512_storeu_si512((void *)row_zps, zps);
        for (size_t r = 0; r < rows; r++) {
            row_quantization_t rq = {scales[first + r], inverses[r], row_zps[r], levels};
            quantize_row_bytes_avx512(x + (first + r) * x_stride, k, q + (first + r) * q_stride, q_stride, rq);
        }
    }
}

/* ---- fp32 dense ------------------------------------------------------------------------------------ */

/* ROWS rows x G groups of 16 outputs from column j (the last group may be partial: masked loads and
 * stores touch only its outputs); w is input-major. */
WEIR_AVX512_INLINE void sgemm_block_avx512(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                                           size_t r, size_t j, size_t k, const int ROWS, const int G, const float *bias,
                                           int relu) {
    __mmask16 masks[4];
    UNROLLED
    for (int g = 0; g < G; g++) masks[g] = lanes_for(m - (j + 16 * (size_t)g));
    const float *rows[8];
    UNROLLED
    for (int i = 0; i < ROWS; i++) rows[i] = x + (r + i) * x_stride;
    __m512 acc[8][4];
    UNROLLED
    for (int i = 0; i < ROWS; i++)
        UNROLLED
        for (int g = 0; g < G; g++) acc[i][g] = _mm512_setzero_ps();
    for (size_t kk = 0; kk < k; kk++) {
        __m512 wv[4];
        UNROLLED
        for (int g = 0; g < G; g++) wv[g] = _mm512_maskz_loadu_ps(masks[g], w + kk * m + j + 16 * g);
        UNROLLED
        for (int i = 0; i < ROWS; i++) {
            __m512 v = _mm512_set1_ps(rows[i][kk]);
            UNROLLED
            for (int g = 0; g < G; g++) acc[i][g] = _mm512_fmadd_ps(v, wv[g], acc[i][g]);
        }
    }
    UNROLLED
    for (int g = 0; g < G; g++) {
        __m512 b = bias ? _mm512_maskz_loadu_ps(masks[g], bias + j + 16 * g) : _mm512_setzero_ps();
        UNROLLED
        for (int i = 0; i < ROWS; i++) {
            __m512 v = acc[i][g];
            if (bias) v = _mm512_add_ps(v, b);
            if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(y + (r + i) * y_stride + j + 16 * g, masks[g], v);
        }
    }
}

/* Rows in blocks of ROWS for G groups: enough independent FMA chains (ROWS x G >= 8) to keep both FMA
 * pipes busy through their latency. */
#define WEIR_SGEMM_ROWS(ROWS_MAX, G)                                                                      \
    do {                                                                                                \
        size_t r = 0;                                                                                   \
        for (; r + ROWS_MAX <= n; r += ROWS_MAX)                                                        \
            sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, ROWS_MAX, G, bias, relu);       \
        switch (n - r) {                                                                                \
        case 7: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 7, G, bias, relu); break;   \
        case 6: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 6, G, bias, relu); break;   \
        case 5: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 5, G, bias, relu); break;   \
        case 4: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 4, G, bias, relu); break;   \
        case 3: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 3, G, bias, relu); break;   \
        case 2: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 2, G, bias, relu); break;   \
        case 1: sgemm_block_avx512(x, x_stride, w, m, y, y_stride, r, j, k, 1, G, bias, relu); break;   \
        default: break;                                                                                 \
        }                                                                                               \
    } while (0)

WEIR_AVX512 void weir_avx512_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride, size_t n,
                                   size_t k, const float *bias, int relu) {
    for (size_t j = 0; j < m; j += 64) {
        size_t groups = (m - j + 15) / 16;
        switch (groups >= 4 ? 4 : groups) {
        case 4: WEIR_SGEMM_ROWS(6, 4); break;
        case 3: WEIR_SGEMM_ROWS(8, 3); break;
        case 2: WEIR_SGEMM_ROWS(8, 2); break;
        default: WEIR_SGEMM_ROWS(8, 1); break;
        }
    }
}

/* ROWS rows' dot products with one output's weights, sixteen inputs at a time: each weight load
 * serves every row, and the ROWS x 2 accumulators are independent FMA chains. */
WEIR_AVX512_INLINE void sgemm_dot_block_avx512(const float *x, size_t x_stride, const float *column, size_t k, const int ROWS,
                                               float sums[4]) {
    __m512 a[4][2];
    UNROLLED
    for (int i = 0; i < ROWS; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
    size_t kk = 0;
    for (; kk + 32 <= k; kk += 32) {
        __m512 w0 = _mm512_loadu_ps(column + kk), w1 = _mm512_loadu_ps(column + kk + 16);
        UNROLLED
        for (int i = 0; i < ROWS; i++) {
            a[i][0] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * x_stride + kk), w0, a[i][0]);
            a[i][1] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * x_stride + kk + 16), w1, a[i][1]);
        }
    }
    for (; kk < k; kk += 16) {
        __mmask16 mask = lanes_for(k - kk);
        __m512 w0 = _mm512_maskz_loadu_ps(mask, column + kk);
        UNROLLED
        for (int i = 0; i < ROWS; i++) a[i][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + i * x_stride + kk), w0, a[i][0]);
    }
    UNROLLED
    for (int i = 0; i < ROWS; i++) sums[i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i][0], a[i][1]));
}

/* Layers with few outputs: one dot product along k per output, four rows at a time. */
WEIR_AVX512 void weir_avx512_sgemm_dot(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                                       size_t n, size_t k, const float *bias, int relu) {
    for (size_t r = 0; r < n; r += 4) {
        size_t rows = n - r < 4 ? n - r : 4;
        for (size_t j = 0; j < m; j++) {
            float sums[4];
            const float *row = x + r * x_stride, *column = w + j * k;
            switch (rows) {
            case 4: sgemm_dot_block_avx512(row, x_stride, column, k, 4, sums); break;
            case 3: sgemm_dot_block_avx512(row, x_stride, column, k, 3, sums); break;
            case 2: sgemm_dot_block_avx512(row, x_stride, column, k, 2, sums); break;
            default: sgemm_dot_block_avx512(row, x_stride, column, k, 1, sums); break;
            }
            for (size_t i = 0; i < rows; i++) {
                float acc = sums[i];
                if (bias) acc += bias[j];
                if (relu && !(acc > 0)) acc = 0;
                y[(r + i) * y_stride + j] = acc;
            }
        }
    }
}
/* ---- softmax ------------------------------------------------------------------------------------ */

/* e^x for x <= 0 (softmax shifts by the row maximum), sixteen lanes: x = n ln2 + r with |r| <= ln2/2,
 * e^r by the degree-6 polynomial of the AVX2 set (relative error about 1e-7), times 2^n by vscalefps.
 * Lanes below -87.3 give 0, as expf does in float; a NaN lane stays NaN. */
WEIR_AVX512_INLINE __m512 exp_nonpositive_avx512(__m512 x) {
    const __m512 low = _mm512_set1_ps(WEIR_EXP_LOW);
    __mmask16 kept = _mm512_cmp_ps_mask(x, low, _CMP_NLT_UQ);  /* not below -87.3, or NaN */
    x = _mm512_max_ps(low, x);  /* a NaN lane stays NaN (maxps returns its second operand) */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(WEIR_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(WEIR_EXP_LN2_HIGH), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(WEIR_EXP_LN2_LOW), r);
    __m512 p = _mm512_set1_ps(WEIR_EXP_C6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(WEIR_EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(WEIR_EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(WEIR_EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(WEIR_EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(WEIR_EXP_C1));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(kept, p, n);
}

/* Softmax of each row: one masked vector per sixteen values (lanes past the row load as -inf, whose
 * exp is 0), the maximum and the sum reduced in registers, one division per row. A NaN in a row
 * turns its exps, its sum and so the whole row into NaN. */
WEIR_AVX512 void weir_avx512_softmax_rows(const float *x, float *y, size_t rows, size_t width) {
    const __m512 negative = _mm512_set1_ps(-INFINITY);
    if (width <= 16) {
        /* Sixteen rows at a time, all in registers: their maxima and sums folded across rows (no
         * horizontal reduction per row), one vector division for the sixteen reciprocals. Rows past
         * the end repeat the last row and are not stored. */
        const __mmask16 mask = lanes_for(width);
        /* Row i's lane in a fold (lane 4t + u holds row 4u + t). */
#define WEIR_LANE_OF_ROW(i) _mm512_set1_epi32(4 * ((i) % 4) + (i) / 4)
        for (size_t first = 0; first < rows; first += 16) {
            size_t count = rows - first < 16 ? rows - first : 16;
            __m512 v[16], e[16];
            UNROLLED
            for (int i = 0; i < 16; i++) v[i] = _mm512_mask_loadu_ps(negative, mask, x + (first + ((size_t)i < count ? (size_t)i : count - 1)) * width);
            __m512 maxima;
            WEIR_FOLD_ROWS(v, _mm512_max_ps, maxima);
            UNROLLED
            for (int i = 0; i < 16; i++) {
                __m512 highest = _mm512_permutexvar_ps(WEIR_LANE_OF_ROW(i), maxima);
                e[i] = exp_nonpositive_avx512(_mm512_sub_ps(v[i], highest));
            }
            __m512 sums;
            WEIR_FOLD_ROWS(e, _mm512_add_ps, sums);
            const __m512 inverses = _mm512_div_ps(_mm512_set1_ps(1.0f), sums);
            UNROLLED
            for (int i = 0; i < 16; i++) {
                if ((size_t)i >= count) break;
                __m512 scale = _mm512_permutexvar_ps(WEIR_LANE_OF_ROW(i), inverses);
                _mm512_mask_storeu_ps(y + (first + i) * width, mask, _mm512_mul_ps(e[i], scale));
            }
        }
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * width;
        float *out = y + r * width;
        __m512 vmax = negative;
        for (size_t j = 0; j < width; j += 16) vmax = _mm512_max_ps(_mm512_mask_loadu_ps(negative, lanes_for(width - j), row + j), vmax);
        const __m512 highest = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        __m512 vsum = _mm512_setzero_ps();
        for (size_t j = 0; j < width; j += 16) {
            __mmask16 mask = lanes_for(width - j);
            __m512 e = _mm512_maskz_mov_ps(mask, exp_nonpositive_avx512(_mm512_sub_ps(_mm512_mask_loadu_ps(negative, mask, row + j), highest)));
            _mm512_mask_storeu_ps(out + j, mask, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        const __m512 scale = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
        for (size_t j = 0; j < width; j += 16) {
            __mmask16 mask = lanes_for(width - j);
            _mm512_mask_storeu_ps(out + j, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, out + j), scale));
        }
    }
}
#endif
