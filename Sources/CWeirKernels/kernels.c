/* The portable and AVX2 kernel sets, and the choice between sets (the AVX-512 set is in kernels_avx512.c). */
#include "kernels_internal.h"


/* ---- kernel sets --------------------------------------------------------------------------------- */

weir_kernels_t weir_kernels_best(void) {
#ifdef WEIR_X86
    /* Computed once; concurrent first calls compute the same value. */
    static int cached = -1;
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        /* __builtin_cpu_supports also checks that the OS saves the wider registers. */
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                     __builtin_cpu_supports("avx512vnni");
        known = avx512 ? WEIR_KERNELS_AVX512 : avx2 ? WEIR_KERNELS_AVX2 : WEIR_KERNELS_PORTABLE;
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return (weir_kernels_t)known;
#else
    return WEIR_KERNELS_PORTABLE;
#endif
}

weir_kernels_t weir_kernels_usable(weir_kernels_t requested) {
    weir_kernels_t best = weir_kernels_best();
    return requested < best ? requested : best;
}

static inline int use_avx2(weir_kernels_t requested) { return weir_kernels_usable(requested) >= WEIR_KERNELS_AVX2; }
static inline int use_avx512(weir_kernels_t requested) { return weir_kernels_usable(requested) >= WEIR_KERNELS_AVX512; }

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

static void qgemm_u8s8_portable(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c,
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
/* Dequantization parameters for the fused epilogue (NULL scales: store raw int32 instead). */
typedef struct {
    const float *row_scales;
    const int32_t *zero_points;
    const int32_t *column_sums;
    const float *weight_scales;
    const float *bias;
    int relu;
    float *y;
    size_t y_stride;
} epilogue_t;

/* Writes 8 results of one row: int32 as they are, or dequantized floats with exactly the
 * reference's operations (no FMA: this function's target has none). */
__attribute__((target("avx2"))) static inline void finish8(__m256i acc, size_t row, size_t base, size_t m, int32_t *c,
                                                          size_t c_stride, const epilogue_t *e) {
    int full = base + 8 <= m;
    int32_t lanes[8];
    if (!e) {
        if (full) { _mm256_storeu_si256((__m256i *)(c + row * c_stride + base), acc); return; }
        _mm256_storeu_si256((__m256i *)lanes, acc);
        for (size_t j = 0; base + j < m; j++) c[row * c_stride + base + j] = lanes[j];
        return;
    }
    if (!full) {
        /* Column data past m is padding: compute the tail lane by lane. */
        _mm256_storeu_si256((__m256i *)lanes, acc);
        for (size_t j = 0; base + j < m; j++) {
            size_t col = base + j;
            int32_t correction = e->zero_points ? e->zero_points[row] * e->column_sums[col] : 0;
            float product = (float)(lanes[j] - correction) * (e->row_scales[row] * e->weight_scales[col]);
            if (e->bias) product = product + e->bias[col];
            if (e->relu && !(product > 0)) product = 0;
            e->y[row * e->y_stride + col] = product;
        }
        return;
    }
    /* Without zero points the activations came centered (q - zp): the sums need no correction. */
    __m256i corrected = e->zero_points
        ? _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(e->zero_points[row]),
                                                   _mm256_loadu_si256((const __m256i *)(e->column_sums + base))))
        : acc;
    __m256 combined = _mm256_mul_ps(_mm256_set1_ps(e->row_scales[row]), _mm256_loadu_ps(e->weight_scales + base));
    __m256 product = _mm256_mul_ps(_mm256_cvtepi32_ps(corrected), combined);
    if (e->bias) product = _mm256_add_ps(product, _mm256_loadu_ps(e->bias + base));
    if (e->relu) product = _mm256_max_ps(product, _mm256_setzero_ps());
    _mm256_storeu_ps(e->y + row * e->y_stride + base, product);
}

/* The out-of-line epilogue for blocks that reach past m or store raw sums (rare). */
__attribute__((target("avx2"), noinline)) static void finish_block_slow(const __m256i acc[4][2], int rows, size_t r,
        size_t group, int two, size_t m, int32_t *c, size_t c_stride, const epilogue_t *e) {
    for (int i = 0; i < rows; i++) {
        finish8(acc[i][0], r + i, group * 8, m, c, c_stride, e);
        if (two) finish8(acc[i][1], r + i, (group + 1) * 8, m, c, c_stride, e);
    }
}

/* Dequantizes a block of `rows` rows x 16 outputs in registers: finish8's arithmetic for the common
 * case (all 16 columns inside m), written straight so the product loop around it keeps its
 * registers (through finish8 the loop spilled and ran about 10% slower); anything else goes to
 * finish_block_slow. */
__attribute__((target("avx2"), always_inline)) static inline void finish_block(const __m256i acc[4][2], const int rows,
        size_t r, size_t group, int two, size_t m, int32_t *c, size_t c_stride, const epilogue_t *e) {
    size_t base = group * 8;
    if (!e || !two || base + 16 > m) {
        finish_block_slow(acc, rows, r, group, two, m, c, c_stride, e);
        return;
    }
    __m256 scale0 = _mm256_loadu_ps(e->weight_scales + base), scale1 = _mm256_loadu_ps(e->weight_scales + base + 8);
    __m256i sums0 = _mm256_loadu_si256((const __m256i *)(e->column_sums + base));
    __m256i sums1 = _mm256_loadu_si256((const __m256i *)(e->column_sums + base + 8));
    for (int i = 0; i < rows; i++) {
        size_t row = r + i;
        __m256i a0 = acc[i][0], a1 = acc[i][1];
        if (e->zero_points) {
            __m256i zp = _mm256_set1_epi32(e->zero_points[row]);
            a0 = _mm256_sub_epi32(a0, _mm256_mullo_epi32(zp, sums0));
            a1 = _mm256_sub_epi32(a1, _mm256_mullo_epi32(zp, sums1));
        }
        __m256 row_scale = _mm256_set1_ps(e->row_scales[row]);
        __m256 p0 = _mm256_mul_ps(_mm256_cvtepi32_ps(a0), _mm256_mul_ps(row_scale, scale0));
        __m256 p1 = _mm256_mul_ps(_mm256_cvtepi32_ps(a1), _mm256_mul_ps(row_scale, scale1));
        if (e->bias) {
            p0 = _mm256_add_ps(p0, _mm256_loadu_ps(e->bias + base));
            p1 = _mm256_add_ps(p1, _mm256_loadu_ps(e->bias + base + 8));
        }
        if (e->relu) {
            p0 = _mm256_max_ps(p0, _mm256_setzero_ps());
            p1 = _mm256_max_ps(p1, _mm256_setzero_ps());
        }
        _mm256_storeu_ps(e->y + row * e->y_stride + base, p0);
        _mm256_storeu_ps(e->y + row * e->y_stride + base + 8, p1);
    }
}

/* ROWS (1...4) rows of A against the two groups of 8 outputs starting at `group`; ROWS is a
 * constant at each call site, so unused accumulators vanish. */
__attribute__((target("avx2"), always_inline)) static inline void qgemm_block(const int16_t *a, size_t a_stride,
        const int16_t *packed_b, int32_t *c, size_t c_stride, size_t r, size_t group, size_t m, size_t k,
        const int ROWS, const epilogue_t *e) {
    size_t kblocks = round_up(k, 2) / 2, groups = round_up(m, 8) / 8;
    const int16_t *a0 = a + r * a_stride, *a1 = a0 + a_stride, *a2 = a1 + a_stride, *a3 = a2 + a_stride;
    int two = group + 1 < groups;
    const int16_t *b0 = packed_b + group * kblocks * 16;
    const int16_t *b1 = two ? b0 + kblocks * 16 : b0;
    __m256i acc[4][2];
    for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (size_t kb = 0; kb < kblocks; kb++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + kb * 16));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(b1 + kb * 16));
        const int16_t *rows_[4] = {a0, a1, a2, a3};
        for (int i = 0; i < ROWS; i++) {
            int32_t pair;
            memcpy(&pair, rows_[i] + kb * 2, 4);
            __m256i v = _mm256_set1_epi32(pair);
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(v, w0));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(v, w1));
        }
    }
    finish_block(acc, ROWS, r, group, two, m, c, c_stride, e);
}

/* Calls BLOCK(r, group, ROWS) for each pair of 8-output groups (outside) and each block of up to
 * four rows (inside): a 16-output slice of the weights is read from memory once and reused by every
 * row of the tile. ROWS is a constant at each call, so a block's unused accumulators vanish. */
#define WEIR_FOR_EACH_BLOCK(n, m, BLOCK)                                       \
    for (size_t group_ = 0; group_ < round_up((m), 8) / 8; group_ += 2) {      \
        size_t r_ = 0;                                                         \
        for (; r_ + 4 <= (n); r_ += 4) BLOCK(r_, group_, 4);                   \
        switch ((n) - r_) {                                                    \
        case 3: BLOCK(r_, group_, 3); break;                                   \
        case 2: BLOCK(r_, group_, 2); break;                                   \
        case 1: BLOCK(r_, group_, 1); break;                                   \
        default: break;                                                        \
        }                                                                      \
    }

__attribute__((target("avx2"))) static void qgemm_avx2(const int16_t *a, size_t a_stride, const int16_t *packed_b,
                                                      int32_t *c, size_t c_stride, size_t n, size_t m, size_t k,
                                                      const epilogue_t *e) {
#define QGEMM_BLOCK(r, group, ROWS) qgemm_block(a, a_stride, packed_b, c, c_stride, r, group, m, k, ROWS, e)
    WEIR_FOR_EACH_BLOCK(n, m, QGEMM_BLOCK)
#undef QGEMM_BLOCK
}
#endif

void weir_qgemm_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c, size_t c_stride,
                     size_t n, size_t m, size_t k, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx2(kernels)) { qgemm_avx2(a, a_stride, packed_b, c, c_stride, n, m, k, NULL); return; }
#endif
    qgemm_u8s8_portable(a, a_stride, packed_b, c, c_stride, n, m, k);
}

#ifdef WEIR_X86
/* Up to 4 rows x 16 outputs per pass: each weight load serves four rows. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 sgemm_finish(__m256 v, const float *bias, size_t j,
                                                                                  __m256i mask, int masked, int relu) {
    if (bias) v = _mm256_add_ps(v, masked ? _mm256_maskload_ps(bias + j, mask) : _mm256_loadu_ps(bias + j));
    if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
    return v;
}

/* Four rows x eight outputs from column j (masked: only mask's lanes exist, and no load touches the
 * others) with two accumulators per row, for even and odd inputs: eight independent FMA chains keep
 * both FMA ports busy instead of waiting on one chain per row. */
__attribute__((target("avx2,fma"), always_inline)) static inline void sgemm_columns8(const float *x0, const float *x1,
        const float *x2, const float *x3, const float *w, size_t m, size_t j, size_t k, __m256i mask, const int masked,
        __m256 results[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    size_t kk = 0;
    for (; kk + 2 <= k; kk += 2) {
        const float *row0 = w + kk * m + j, *row1 = row0 + m;
        __m256 w0 = masked ? _mm256_maskload_ps(row0, mask) : _mm256_loadu_ps(row0);
        __m256 w1 = masked ? _mm256_maskload_ps(row1, mask) : _mm256_loadu_ps(row1);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[kk]), w0, a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(x1[kk]), w0, a1);
        a2 = _mm256_fmadd_ps(_mm256_set1_ps(x2[kk]), w0, a2);
        a3 = _mm256_fmadd_ps(_mm256_set1_ps(x3[kk]), w0, a3);
        b0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[kk + 1]), w1, b0);
        b1 = _mm256_fmadd_ps(_mm256_set1_ps(x1[kk + 1]), w1, b1);
        b2 = _mm256_fmadd_ps(_mm256_set1_ps(x2[kk + 1]), w1, b2);
        b3 = _mm256_fmadd_ps(_mm256_set1_ps(x3[kk + 1]), w1, b3);
    }
    if (kk < k) {
        const float *row0 = w + kk * m + j;
        __m256 w0 = masked ? _mm256_maskload_ps(row0, mask) : _mm256_loadu_ps(row0);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[kk]), w0, a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(x1[kk]), w0, a1);
        a2 = _mm256_fmadd_ps(_mm256_set1_ps(x2[kk]), w0, a2);
        a3 = _mm256_fmadd_ps(_mm256_set1_ps(x3[kk]), w0, a3);
    }
    results[0] = _mm256_add_ps(a0, b0);
    results[1] = _mm256_add_ps(a1, b1);
    results[2] = _mm256_add_ps(a2, b2);
    results[3] = _mm256_add_ps(a3, b3);
}

__attribute__((target("avx2,fma"), always_inline)) static inline void sgemm_block(const float *x, size_t x_stride,
        const float *w, size_t m, float *y, size_t y_stride, size_t r, size_t k, const size_t rows, const float *bias,
        int relu) {
    const __m256i none = _mm256_setzero_si256();
    {
        const float *x0 = x + r * x_stride;
        const float *x1 = rows > 1 ? x0 + x_stride : x0;
        const float *x2 = rows > 2 ? x0 + 2 * x_stride : x0;
        const float *x3 = rows > 3 ? x0 + 3 * x_stride : x0;
        size_t j = 0;
        for (; j + 16 <= m; j += 16) {
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (size_t kk = 0; kk < k; kk++) {
                __m256 w0 = _mm256_loadu_ps(w + kk * m + j), w1 = _mm256_loadu_ps(w + kk * m + j + 8);
                __m256 v0 = _mm256_set1_ps(x0[kk]), v1 = _mm256_set1_ps(x1[kk]);
                __m256 v2 = _mm256_set1_ps(x2[kk]), v3 = _mm256_set1_ps(x3[kk]);
                a00 = _mm256_fmadd_ps(v0, w0, a00); a01 = _mm256_fmadd_ps(v0, w1, a01);
                a10 = _mm256_fmadd_ps(v1, w0, a10); a11 = _mm256_fmadd_ps(v1, w1, a11);
                a20 = _mm256_fmadd_ps(v2, w0, a20); a21 = _mm256_fmadd_ps(v2, w1, a21);
                a30 = _mm256_fmadd_ps(v3, w0, a30); a31 = _mm256_fmadd_ps(v3, w1, a31);
            }
            __m256 results[8] = {a00, a01, a10, a11, a20, a21, a30, a31};
            for (size_t row = 0; row < rows; row++) {
                _mm256_storeu_ps(y + (r + row) * y_stride + j, sgemm_finish(results[row * 2], bias, j, none, 0, relu));
                _mm256_storeu_ps(y + (r + row) * y_stride + j + 8, sgemm_finish(results[row * 2 + 1], bias, j + 8, none, 0, relu));
            }
        }
        for (; j + 8 <= m; j += 8) {
            __m256 results[4];
            sgemm_columns8(x0, x1, x2, x3, w, m, j, k, none, 0, results);
            for (size_t row = 0; row < rows; row++)
                _mm256_storeu_ps(y + (r + row) * y_stride + j, sgemm_finish(results[row], bias, j, none, 0, relu));
        }
        if (j < m) {
            /* The last 1...7 outputs: masked loads never touch memory past the row. */
            int32_t lanes[8];
            for (int t = 0; t < 8; t++) lanes[t] = j + (size_t)t < m ? -1 : 0;
            __m256i mask = _mm256_loadu_si256((const __m256i *)lanes);
            __m256 results[4];
            sgemm_columns8(x0, x1, x2, x3, w, m, j, k, mask, 1, results);
            for (size_t row = 0; row < rows; row++)
                _mm256_maskstore_ps(y + (r + row) * y_stride + j, mask, sgemm_finish(results[row], bias, j, mask, 1, relu));
        }
    }
}

__attribute__((target("avx2,fma"))) static void sgemm_avx2(const float *x, size_t x_stride, const float *w, size_t m,
                                                          float *y, size_t y_stride, size_t n, size_t k,
                                                          const float *bias, int relu) {
    size_t r = 0;
    for (; r + 4 <= n; r += 4) sgemm_block(x, x_stride, w, m, y, y_stride, r, k, 4, bias, relu);
    switch (n - r) {
    case 3: sgemm_block(x, x_stride, w, m, y, y_stride, r, k, 3, bias, relu); break;
    case 2: sgemm_block(x, x_stride, w, m, y, y_stride, r, k, 2, bias, relu); break;
    case 1: sgemm_block(x, x_stride, w, m, y, y_stride, r, k, 1, bias, relu); break;
    default: break;
    }
}
#endif

/* The portable fp32 dense, for either weight layout: w[kk][j] is w[kk * k_step + j * j_step]. */
static void sgemm_portable(const float *x, size_t x_stride, const float *w, size_t k_step, size_t j_step, size_t m,
                           float *y, size_t y_stride, size_t n, size_t k, const float *bias, int relu) {
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < m; j++) {
            float acc = 0;
            for (size_t kk = 0; kk < k; kk++) acc += x[r * x_stride + kk] * w[kk * k_step + j * j_step];
            if (bias) acc += bias[j];
            if (relu && !(acc > 0)) acc = 0;
            y[r * y_stride + j] = acc;
        }
}

void weir_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                size_t n, size_t k, const float *bias, int relu, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx512(kernels)) { weir_avx512_sgemm(x, x_stride, w, m, y, y_stride, n, k, bias, relu); return; }
    if (use_avx2(kernels)) { sgemm_avx2(x, x_stride, w, m, y, y_stride, n, k, bias, relu); return; }
#endif
    sgemm_portable(x, x_stride, w, m, 1, m, y, y_stride, n, k, bias, relu);  /* input-major */
}

/* ---- row quantization and dequantization ----------------------------------------------------- */

static row_quantization_t row_quantization_portable(const float *x, size_t k, int32_t levels) {
    float lo = 0, hi = 0;
    for (size_t i = 0; i < k; i++) { lo = x[i] < lo ? x[i] : lo; hi = x[i] > hi ? x[i] : hi; }
    return row_quantization(lo, hi, levels);
}

/* 8-bit rows are written centered on their zero point (q - zp) as int16. */
static void quantize_row_portable(const float *x, size_t k, int16_t *q, size_t q_stride, float *scale_out, int32_t *zp_out) {
    row_quantization_t rq = row_quantization_portable(x, k, 255);
    for (size_t i = 0; i < k; i++) q[i] = (int16_t)(quantize_value(x[i], rq) - rq.zp);
    for (size_t i = k; i < q_stride; i++) q[i] = 0;
    *scale_out = rq.scale;
    *zp_out = rq.zp;
}

/* Byte rows (0...levels) are written as they are. */
static void quantize_row_bytes_portable(const float *x, size_t k, int32_t levels, uint8_t *q, size_t q_stride, float *scale_out,
                                        int32_t *zp_out) {
    row_quantization_t rq = row_quantization_portable(x, k, levels);
    for (size_t i = 0; i < k; i++) q[i] = (uint8_t)quantize_value(x[i], rq);
    for (size_t i = k; i < q_stride; i++) q[i] = 0;
    *scale_out = rq.scale;
    *zp_out = rq.zp;
}

#ifdef WEIR_X86
/* min(0, min x) and max(0, max x) of one row, eight lanes at a time. NaN elements are skipped, as
 * in row_quantization_portable: min_ps/max_ps return their second operand when one is NaN, and the
 * running bound (never NaN) is that operand. */
__attribute__((target("avx2"))) static inline void row_range_avx2(const float *x, size_t k, float *lo_out, float *hi_out) {
    __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps(), vlo2 = vlo, vhi2 = vhi;
    size_t i = 0;
    /* Two bounds per side, so consecutive vectors do not wait on each other. */
    for (; i + 16 <= k; i += 16) {
        __m256 v = _mm256_loadu_ps(x + i), w = _mm256_loadu_ps(x + i + 8);
        vlo = _mm256_min_ps(v, vlo);
        vhi = _mm256_max_ps(v, vhi);
        vlo2 = _mm256_min_ps(w, vlo2);
        vhi2 = _mm256_max_ps(w, vhi2);
    }
    for (; i + 8 <= k; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        vlo = _mm256_min_ps(v, vlo);
        vhi = _mm256_max_ps(v, vhi);
    }
    vlo = _mm256_min_ps(vlo2, vlo);
    vhi = _mm256_max_ps(vhi2, vhi);
    __m128 lo4 = _mm_min_ps(_mm256_castps256_ps128(vlo), _mm256_extractf128_ps(vlo, 1));
    __m128 hi4 = _mm_max_ps(_mm256_castps256_ps128(vhi), _mm256_extractf128_ps(vhi, 1));
    lo4 = _mm_min_ps(lo4, _mm_movehl_ps(lo4, lo4));
    hi4 = _mm_max_ps(hi4, _mm_movehl_ps(hi4, hi4));
    float lo = _mm_cvtss_f32(_mm_min_ss(lo4, _mm_shuffle_ps(lo4, lo4, 1)));
    float hi = _mm_cvtss_f32(_mm_max_ss(hi4, _mm_shuffle_ps(hi4, hi4, 1)));
    for (; i < k; i++) { lo = x[i] < lo ? x[i] : lo; hi = x[i] > hi ? x[i] : hi; }
    *lo_out = lo;
    *hi_out = hi;
}

/* row_quantization for up to eight rows at once (lanes past `rows` are ignored): the same IEEE
 * operations lane by lane, so the same scales and zero points, without a division chain per row. */
__attribute__((target("avx2"))) static inline void row_quantizations_avx2(const float *lo, const float *hi, int32_t levels,
                                                                         row_quantization_t *out, size_t rows) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    __m256 l = _mm256_loadu_ps(lo), h = _mm256_loadu_ps(hi);
    __m256 s = _mm256_div_ps(_mm256_sub_ps(h, l), _mm256_set1_ps((float)levels));
    s = _mm256_blendv_ps(s, one, _mm256_cmp_ps(s, zero, _CMP_EQ_OQ));
    __m256 inverse = _mm256_div_ps(one, s);
    __m256 negated = _mm256_xor_ps(l, _mm256_set1_ps(-0.0f));
    __m256i zp = _mm256_cvtps_epi32(_mm256_mul_ps(negated, inverse));
    zp = _mm256_min_epi32(_mm256_max_epi32(zp, _mm256_setzero_si256()), _mm256_set1_epi32(levels));
    float scales[8], inverses[8];
    int32_t zps[8];
    _mm256_storeu_ps(scales, s);
    _mm256_storeu_ps(inverses, inverse);
    _mm256_storeu_si256((__m256i *)zps, zp);
    for (size_t r = 0; r < rows; r++) out[r] = (row_quantization_t){scales[r], inverses[r], zps[r], levels};
}

/* quantize_value for eight floats at x, before the clamp: rint(v * inv) + zp. cvtps rounds with the
 * current mode: to nearest, ties to even, like rint. */
__attribute__((target("avx2"))) static inline __m256i quantize8_unclamped_avx2(const float *x, __m256 inverse, __m256i zp) {
    return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), inverse)), zp);
}

/* 8-bit rows, centered (q - zp) as int16. Sixteen at a time: packs saturates to int16 before the
 * clamp to 0...255, which gives the clamp's result. */
__attribute__((target("avx2"))) static void quantize_row_avx2(const float *x, size_t k, int16_t *q, size_t q_stride,
                                                             row_quantization_t rq) {
    const __m256 inverse = _mm256_set1_ps(rq.inverse);
    const __m256i zp = _mm256_set1_epi32(rq.zp), zp16 = _mm256_set1_epi16((int16_t)rq.zp);
    const __m256i top = _mm256_set1_epi16((int16_t)rq.levels);
    size_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m256i words = _mm256_packs_epi32(quantize8_unclamped_avx2(x + i, inverse, zp), quantize8_unclamped_avx2(x + i + 8, inverse, zp));
        words = _mm256_sub_epi16(_mm256_min_epi16(_mm256_max_epi16(words, _mm256_setzero_si256()), top), zp16);
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permute4x64_epi64(words, 0xD8));
    }
    for (; i < k; i++) q[i] = (int16_t)(quantize_value(x[i], rq) - rq.zp);
    for (; i < q_stride; i++) q[i] = 0;
}

/* Byte rows (0...levels, levels <= 255). Thirty-two at a time: packs then packus saturate to 0...255
 * before the clamp to levels, which gives the clamp's result. */
__attribute__((target("avx2"))) static void quantize_row_bytes_avx2(const float *x, size_t k, uint8_t *q, size_t q_stride,
                                                              row_quantization_t rq) {
    const __m256 inverse = _mm256_set1_ps(rq.inverse);
    const __m256i zp = _mm256_set1_epi32(rq.zp), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i top = _mm256_set1_epi8((char)rq.levels);
    size_t i = 0;
    for (; i + 32 <= k; i += 32) {
        __m256i ab = _mm256_packs_epi32(quantize8_unclamped_avx2(x + i, inverse, zp), quantize8_unclamped_avx2(x + i + 8, inverse, zp));
        __m256i cd = _mm256_packs_epi32(quantize8_unclamped_avx2(x + i + 16, inverse, zp), quantize8_unclamped_avx2(x + i + 24, inverse, zp));
        __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_min_epu8(bytes, top));
    }
    for (; i < k; i++) q[i] = (uint8_t)quantize_value(x[i], rq);
    for (; i < q_stride; i++) q[i] = 0;
}

/* Rows in groups of eight: each row's range, the group's scales and zero points at once, then each
 * row's values. */
#define WEIR_QUANTIZE_ROWS_AVX2(levels, quantize_row)                                                  \
    for (size_t first = 0; first < n; first += 8) {                                                   \
        size_t rows = n - first < 8 ? n - first : 8;                                                   \
        float lo[8] = {0}, hi[8] = {0};                                                                \
        row_quantization_t rq[8];                                                                      \
        for (size_t r = 0; r < rows; r++) row_range_avx2(x + (first + r) * x_stride, k, lo + r, hi + r); \
        row_quantizations_avx2(lo, hi, levels, rq, rows);                                              \
        for (size_t r = 0; r < rows; r++) {                                                            \
            quantize_row(x + (first + r) * x_stride, k, q + (first + r) * q_stride, q_stride, rq[r]);  \
            scales[first + r] = rq[r].scale;                                                           \
            zero_points[first + r] = rq[r].zp;                                                         \
        }                                                                                              \
    }
#endif

void weir_quantize_rows_u8(const float *x, size_t x_stride, size_t n, size_t k, int16_t *q, size_t q_stride,
                           float *scales, int32_t *zero_points, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx2(kernels)) {
        WEIR_QUANTIZE_ROWS_AVX2(255, quantize_row_avx2)
        return;
    }
#endif
    for (size_t r = 0; r < n; r++) quantize_row_portable(x + r * x_stride, k, q + r * q_stride, q_stride, scales + r, zero_points + r);
}

void weir_quantize_rows_bytes(const float *x, size_t x_stride, size_t n, size_t k, int32_t levels, uint8_t *q,
                              size_t q_stride, float *scales, int32_t *zero_points, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx512(kernels)) {
        weir_avx512_quantize_rows_bytes(x, x_stride, n, k, levels, q, q_stride, scales, zero_points);
        return;
    }
    if (use_avx2(kernels)) {
        WEIR_QUANTIZE_ROWS_AVX2(levels, quantize_row_bytes_avx2)
        return;
    }
#endif
    for (size_t r = 0; r < n; r++)
        quantize_row_bytes_portable(x + r * x_stride, k, levels, q + r * q_stride, q_stride, scales + r, zero_points + r);
}

#ifdef WEIR_X86
/* The same arithmetic as the portable loop, eight lanes at a time; no FMA in this function. */
__attribute__((target("avx2"))) static void dequantize_rows_avx2(const int32_t *acc, size_t n, size_t m, const float *row_scales,
        const int32_t *zero_points, const int32_t *column_sums, const float *weight_scales, const float *bias, int relu, float *y,
        size_t y_stride) {
    for (size_t r = 0; r < n; r++) {
        const int32_t *a = acc + r * m;
        float *out = y + r * y_stride;
        __m256i zp = _mm256_set1_epi32(zero_points ? zero_points[r] : 0);
        __m256 scale = _mm256_set1_ps(row_scales[r]);
        size_t j = 0;
        for (; j + 8 <= m; j += 8) {
            __m256i corrected = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(a + j)),
                                                 _mm256_mullo_epi32(zp, _mm256_loadu_si256((const __m256i *)(column_sums + j))));
            __m256 combined = _mm256_mul_ps(scale, _mm256_loadu_ps(weight_scales + j));
            __m256 product = _mm256_mul_ps(_mm256_cvtepi32_ps(corrected), combined);
            if (bias) product = _mm256_add_ps(product, _mm256_loadu_ps(bias + j));
            if (relu) product = _mm256_max_ps(product, _mm256_setzero_ps());
            _mm256_storeu_ps(out + j, product);
        }
        for (; j < m; j++) {
            float product = (float)(a[j] - (zero_points ? zero_points[r] : 0) * column_sums[j]) * (row_scales[r] * weight_scales[j]);
            out[j] = bias ? product + bias[j] : product;
            if (relu && !(out[j] > 0)) out[j] = 0;
        }
    }
}
#endif

void weir_dequantize_rows(const int32_t *acc, size_t n, size_t m, const float *row_scales, const int32_t *zero_points,
                          const int32_t *column_sums, const float *weight_scales, const float *bias, int relu, float *y,
                          size_t y_stride, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx2(kernels)) {
        dequantize_rows_avx2(acc, n, m, row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride);
        return;
    }
#endif
    for (size_t r = 0; r < n; r++) {
        const int32_t *a = acc + r * m;
        float *out = y + r * y_stride;
        int32_t zp = zero_points ? zero_points[r] : 0;
        float scale = row_scales[r];
        for (size_t j = 0; j < m; j++) {
            float corrected = (float)(a[j] - zp * column_sums[j]);
            float combined = scale * weight_scales[j];
            float product = corrected * combined;
            out[j] = product;
        }
        if (bias)
            for (size_t j = 0; j < m; j++) out[j] = out[j] + bias[j];
        if (relu)
            for (size_t j = 0; j < m; j++) out[j] = out[j] > 0 ? out[j] : 0;
    }
}

void weir_qdense_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx2(kernels)) {
        epilogue_t e = {row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride};
        qgemm_avx2(a, a_stride, packed_b, NULL, 0, n, m, k, &e);
        return;
    }
#endif
    qgemm_u8s8_portable(a, a_stride, packed_b, scratch, m, n, m, k);
    weir_dequantize_rows(scratch, n, m, row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride, kernels);
}

/* ---- the 7-bit kernel for large layers: u7 activations x s7 weights with vpmaddubsw ----------- */

size_t weir_qgemm7_packed_count(size_t m, size_t k) { return round_up(m, 8) * round_up(k, 8); }

void weir_pack_quad_blocks(const int8_t *b, size_t m, size_t k, size_t width, size_t k_align, int8_t *packed) {
    size_t quads = round_up(k, k_align) / 4, groups = round_up(m, width) / width;
    memset(packed, 0, groups * quads * width * 4);
    for (size_t group = 0; group < groups; group++)
        for (size_t quad = 0; quad < quads; quad++)
            for (size_t j = 0; j < width; j++)
                for (size_t t = 0; t < 4; t++) {
                    size_t row = group * width + j, col = quad * 4 + t;
                    if (row < m && col < k) packed[((group * quads + quad) * width + j) * 4 + t] = b[row * k + col];
                }
}

void weir_qgemm_quad_blocks_portable(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c,
                                     size_t c_stride, size_t n, size_t m, size_t k, size_t width, size_t k_align) {
    size_t quads = round_up(k, k_align) / 4, groups = round_up(m, width) / width;
    for (size_t r = 0; r < n; r++) {
        const uint8_t *row = a + r * a_stride;
        for (size_t group = 0; group < groups; group++) {
            int32_t acc[16] = {0};
            const int8_t *block = packed_b + group * quads * width * 4;
            for (size_t quad = 0; quad < quads; quad++, block += width * 4)
                for (size_t j = 0; j < width; j++)
                    for (size_t t = 0; t < 4; t++) acc[j] += (int32_t)row[quad * 4 + t] * block[j * 4 + t];
            for (size_t j = 0; j < width && group * width + j < m; j++) c[r * c_stride + group * width + j] = acc[j];
        }
    }
}

/* Blocks of 8 outputs x 4 inputs, k padded to 8. */
void weir_qgemm7_pack_b(const int8_t *b, size_t m, size_t k, int8_t *packed) { weir_pack_quad_blocks(b, m, k, 8, 8, packed); }

static void qgemm7_portable(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                            size_t n, size_t m, size_t k) {
    weir_qgemm_quad_blocks_portable(a, a_stride, packed_b, c, c_stride, n, m, k, 8, 8);
}

#ifdef WEIR_X86
/* ROWS (1...4) rows against 16 outputs, eight inputs per step: for each output, vpmaddubsw makes
 * two int16 pair sums per four inputs; the two steps' results are added in int16 (four products,
 * at most 4 * 127 * 63 = 32004 < 32767, so nothing saturates) and widened by vpmaddwd with ones. */
__attribute__((target("avx2"), always_inline)) static inline void qgemm7_block(const uint8_t *a, size_t a_stride,
        const int8_t *packed_b, int32_t *c, size_t c_stride, size_t r, size_t group, size_t m, size_t k, const int ROWS,
        const epilogue_t *e) {
    size_t octets = round_up(k, 8) / 8, groups = round_up(m, 8) / 8;
    const uint8_t *rows_[4] = {a + r * a_stride, a + (r + 1) * a_stride, a + (r + 2) * a_stride, a + (r + 3) * a_stride};
    int two = group + 1 < groups;
    const int8_t *b0 = packed_b + group * octets * 64;
    const int8_t *b1 = two ? b0 + octets * 64 : b0;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4][2];
    for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (size_t o = 0; o < octets; o++) {
        __m256i w00 = _mm256_loadu_si256((const __m256i *)(b0 + o * 64));
        __m256i w01 = _mm256_loadu_si256((const __m256i *)(b0 + o * 64 + 32));
        __m256i w10 = _mm256_loadu_si256((const __m256i *)(b1 + o * 64));
        __m256i w11 = _mm256_loadu_si256((const __m256i *)(b1 + o * 64 + 32));
        for (int i = 0; i < ROWS; i++) {
            int32_t x0, x1;
            memcpy(&x0, rows_[i] + o * 8, 4);
            memcpy(&x1, rows_[i] + o * 8 + 4, 4);
            __m256i v0 = _mm256_set1_epi32(x0), v1 = _mm256_set1_epi32(x1);
            __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(v0, w00), _mm256_maddubs_epi16(v1, w01));
            __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(v0, w10), _mm256_maddubs_epi16(v1, w11));
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(s0, ones));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(s1, ones));
        }
    }
    finish_block(acc, ROWS, r, group, two, m, c, c_stride, e);
}

__attribute__((target("avx2"))) static void qgemm7_avx2(const uint8_t *a, size_t a_stride, const int8_t *packed_b,
                                                       int32_t *c, size_t c_stride, size_t n, size_t m, size_t k,
                                                       const epilogue_t *e) {
#define QGEMM7_BLOCK(r, group, ROWS) qgemm7_block(a, a_stride, packed_b, c, c_stride, r, group, m, k, ROWS, e)
    WEIR_FOR_EACH_BLOCK(n, m, QGEMM7_BLOCK)
#undef QGEMM7_BLOCK
}
#endif

void weir_qgemm7(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                 size_t n, size_t m, size_t k, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx2(kernels)) { qgemm7_avx2(a, a_stride, packed_b, c, c_stride, n, m, k, NULL); return; }
#endif
    qgemm7_portable(a, a_stride, packed_b, c, c_stride, n, m, k);
}

void weir_qdense_u7s7(const uint8_t *a, size_t a_stride, const int8_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx2(kernels)) {
        epilogue_t e = {row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride};
        qgemm7_avx2(a, a_stride, packed_b, NULL, 0, n, m, k, &e);
        return;
    }
#endif
    qgemm7_portable(a, a_stride, packed_b, scratch, m, n, m, k);
    weir_dequantize_rows(scratch, n, m, row_scales, zero_points, column_sums, weight_scales, bias, relu, y, y_stride, kernels);
}

/* ---- fp32 dense with few outputs: one dot product per output ----------------------------------- */

#ifdef WEIR_X86
__attribute__((target("avx2,fma"))) static void sgemm_dot_avx2(const float *x, size_t x_stride, const float *w, size_t m,
                                                              float *y, size_t y_stride, size_t n, size_t k,
                                                              const float *bias, int relu) {
    for (size_t r = 0; r < n; r++) {
        const float *row = x + r * x_stride;
        for (size_t j = 0; j < m; j++) {
            const float *column = w + j * k;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            size_t kk = 0;
            for (; kk + 16 <= k; kk += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + kk), _mm256_loadu_ps(column + kk), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + kk + 8), _mm256_loadu_ps(column + kk + 8), a1);
            }
            for (; kk + 8 <= k; kk += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + kk), _mm256_loadu_ps(column + kk), a0);
            __m256 sum8 = _mm256_add_ps(a0, a1);
            __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
            sum4 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
            sum4 = _mm_add_ss(sum4, _mm_movehdup_ps(sum4));
            float acc = _mm_cvtss_f32(sum4);
            for (; kk < k; kk++) acc += row[kk] * column[kk];
            if (bias) acc += bias[j];
            if (relu && !(acc > 0)) acc = 0;
            y[r * y_stride + j] = acc;
        }
    }
}
#endif

void weir_sgemm_dot(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                    size_t n, size_t k, const float *bias, int relu, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx512(kernels)) { weir_avx512_sgemm_dot(x, x_stride, w, m, y, y_stride, n, k, bias, relu); return; }
    if (use_avx2(kernels)) { sgemm_dot_avx2(x, x_stride, w, m, y, y_stride, n, k, bias, relu); return; }
#endif
    sgemm_portable(x, x_stride, w, 1, k, m, y, y_stride, n, k, bias, relu);  /* output-major */
}

/* ---- softmax over rows ------------------------------------------------------------------------- */

static void softmax_row_portable(const float *x, float *y, size_t width) {
    float highest = -INFINITY;
    for (size_t j = 0; j < width; j++) highest = x[j] > highest ? x[j] : highest;
    float sum = 0;
    for (size_t j = 0; j < width; j++) { y[j] = expf(x[j] - highest); sum += y[j]; }
    for (size_t j = 0; j < width; j++) y[j] /= sum;
}

#ifdef WEIR_X86
/* e^x for x <= 0 (softmax shifts by the row maximum), eight lanes: x = n ln2 + r with |r| <= ln2/2,
 * e^r by a degree-6 polynomial (relative error about 1e-7), times 2^n built in the exponent bits.
 * Lanes below -87.3 give 0, as expf does in float. */
__attribute__((target("avx2,fma"))) static inline __m256 exp_nonpositive(__m256 x) {
    const __m256 low = _mm256_set1_ps(WEIR_EXP_LOW);
    __m256 underflow = _mm256_cmp_ps(x, low, _CMP_LT_OQ);
    x = _mm256_max_ps(low, x);  /* a NaN lane stays NaN (maxps returns its second operand) */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(WEIR_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n ln2, with ln2 split in two for precision. */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(WEIR_EXP_LN2_HIGH), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(WEIR_EXP_LN2_LOW), r);
    __m256 p = _mm256_set1_ps(WEIR_EXP_C6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(WEIR_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(WEIR_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(WEIR_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(WEIR_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(WEIR_EXP_C1));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
    return _mm256_andnot_ps(underflow, result);
}

__attribute__((target("avx2,fma"))) static void softmax_row_avx2(const float *x, float *y, size_t width) {
    int32_t lanes[8];
    size_t full = width / 8 * 8, tail = width - full;
    for (size_t t = 0; t < 8; t++) lanes[t] = t < tail ? -1 : 0;
    __m256i mask = _mm256_loadu_si256((const __m256i *)lanes);
    const __m256 negative = _mm256_set1_ps(-INFINITY);
    __m256 vmax = negative;
    /* maxps returns its second operand when either is NaN: a NaN value is skipped here and then
     * turns its exp, the sum and so the whole row into NaN. */
    for (size_t j = 0; j < full; j += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(x + j), vmax);
    if (tail) vmax = _mm256_max_ps(_mm256_blendv_ps(negative, _mm256_maskload_ps(x + full, mask), _mm256_castsi256_ps(mask)), vmax);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    __m256 highest = _mm256_set1_ps(_mm_cvtss_f32(m4));
    __m256 vsum = _mm256_setzero_ps();
    for (size_t j = 0; j < full; j += 8) {
        __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + j), highest));
        _mm256_storeu_ps(y + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (tail) {
        __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(x + full, mask), highest));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
        _mm256_maskstore_ps(y + full, mask, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    __m256 sum = _mm256_set1_ps(_mm_cvtss_f32(s4));
    for (size_t j = 0; j < full; j += 8) _mm256_storeu_ps(y + j, _mm256_div_ps(_mm256_loadu_ps(y + j), sum));
    if (tail) _mm256_maskstore_ps(y + full, mask, _mm256_div_ps(_mm256_maskload_ps(y + full, mask), sum));
}
#endif

#ifdef WEIR_X86
/* A row of 8 to 16 values (a classifier's scores) in two registers, without masked loads and
 * stores (slow on some x86 cores): the second register holds the row's last eight values, and the
 * lanes it shares with the first are set to -inf, whose exp is 0. */
__attribute__((target("avx2,fma"))) static inline void softmax_short_row_avx2(const float *x, float *y, size_t width) {
    static const int32_t shared[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    const __m256 overlap = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(shared + (width - 8))));
    __m256 v0 = _mm256_loadu_ps(x);
    __m256 v1 = _mm256_blendv_ps(_mm256_loadu_ps(x + width - 8), _mm256_set1_ps(-INFINITY), overlap);
    /* maxps returns its second operand when either is NaN: a NaN value may or may not win here;
     * either way its exp, the sum and so the whole row are NaN. */
    __m256 vmax = _mm256_max_ps(v1, v0);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    __m256 highest = _mm256_set1_ps(_mm_cvtss_f32(m4));
    __m256 e0 = exp_nonpositive(_mm256_sub_ps(v0, highest));
    __m256 e1 = _mm256_andnot_ps(overlap, exp_nonpositive(_mm256_sub_ps(v1, highest)));
    __m256 vsum = _mm256_add_ps(e0, e1);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    __m256 sum = _mm256_set1_ps(_mm_cvtss_f32(s4));
    /* The shared lanes of the second store are rewritten by the first. */
    _mm256_storeu_ps(y + width - 8, _mm256_div_ps(e1, sum));
    _mm256_storeu_ps(y, _mm256_div_ps(e0, sum));
}
#endif

void weir_softmax_rows(const float *x, float *y, size_t rows, size_t width, weir_kernels_t kernels) {
#ifdef WEIR_X86
    if (use_avx512(kernels)) { weir_avx512_softmax_rows(x, y, rows, width); return; }
    if (use_avx2(kernels)) {
        if (width >= 8 && width <= 16) {
            for (size_t r = 0; r < rows; r++) softmax_short_row_avx2(x + r * width, y + r * width, width);
            return;
        }
        for (size_t r = 0; r < rows; r++) softmax_row_avx2(x + r * width, y + r * width, width);
        return;
    }
#endif
    for (size_t r = 0; r < rows; r++) softmax_row_portable(x + r * width, y + r * width, width);
}
