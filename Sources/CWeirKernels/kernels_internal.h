#ifndef WEIR_KERNELS_INTERNAL_H
#define WEIR_KERNELS_INTERNAL_H
/* What the kernel files share; not part of the module's interface. */
#include "weir_kernels.h"
#include <math.h>
/* Dequantization must round exactly like the numpy reference: never fuse a multiply into an add. */
#pragma STDC FP_CONTRACT OFF
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WEIR_X86 1
#endif

static inline size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* How one row is quantized to 0...levels (255: 8-bit, 127: 7-bit), from its range; every
 * quantizer uses this one rule: s = (hi - lo) / levels (1 when 0), inv = 1 / s,
 * zp = clamp(rint(-lo * inv), 0, levels). */
typedef struct {
    float scale, inverse;
    int32_t zp, levels;
} row_quantization_t;

static inline row_quantization_t row_quantization(float lo, float hi, int32_t levels) {
    float s = (hi - lo) / (float)levels;
    if (s == 0) s = 1;
    row_quantization_t rq = {s, 1.0f / s, 0, levels};
    rq.zp = clamp_i32((int32_t)nearbyintf(-lo * rq.inverse), 0, levels);
    return rq;
}

/* q = clamp(rint(v * inv) + zp, 0, levels); rint rounds half to even. */
static inline int32_t quantize_value(float v, row_quantization_t rq) {
    return clamp_i32((int32_t)nearbyintf(v * rq.inverse) + rq.zp, 0, rq.levels);
}

/* e^x for the vector softmaxes (AVX2 and AVX-512 share them, so both sets give the same exps):
 * x = n ln2 + r, ln2 split in a short high part and a low part for precision; e^r by a degree-6
 * polynomial with these coefficients (r^6 ... r^2 terms). Below WEIR_EXP_LOW the result is 0. */
#define WEIR_EXP_LOW (-87.33654f)
#define WEIR_EXP_LOG2E 1.44269504088896341f
#define WEIR_EXP_LN2_HIGH 0.693359375f
#define WEIR_EXP_LN2_LOW (-2.12194440e-4f)
#define WEIR_EXP_C6 1.9875691500e-4f
#define WEIR_EXP_C5 1.3981999507e-3f
#define WEIR_EXP_C4 8.3334519073e-3f
#define WEIR_EXP_C3 4.1665795894e-2f
#define WEIR_EXP_C2 1.6666665459e-1f
#define WEIR_EXP_C1 5.0000001201e-1f

/* The layout the 7-bit kernel (width 8, inputs padded to 8) and the VNNI kernel (width 16, inputs
 * padded to 4) read: for each group of `width` outputs, for each quad of inputs, output j's four
 * bytes at j * 4. `width` is at most 16. */
void weir_pack_quad_blocks(const int8_t *b, size_t m, size_t k, size_t width, size_t k_align, int8_t *packed);
/* The exact int32 sums of rows of `a` against weights packed by weir_pack_quad_blocks, in plain C. */
void weir_qgemm_quad_blocks_portable(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c,
                                     size_t c_stride, size_t n, size_t m, size_t k, size_t width, size_t k_align);

#ifdef WEIR_X86
/* The AVX-512 set (kernels_avx512.c); callers check weir_kernels_usable first. */
void weir_avx512_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride, size_t n,
                       size_t k, const float *bias, int relu);
void weir_avx512_sgemm_dot(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride, size_t n,
                           size_t k, const float *bias, int relu);
void weir_avx512_quantize_rows_bytes(const float *x, size_t x_stride, size_t n, size_t k, int32_t levels, uint8_t *q,
                                     size_t q_stride, float *scales, int32_t *zero_points);
void weir_avx512_softmax_rows(const float *x, float *y, size_t rows, size_t width);
/* row_scales NULL: c receives the raw sums; otherwise y the dequantized layer (zero points required). */
void weir_avx512_qgemm_vnni(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                            size_t n, size_t m, size_t k, const float *row_scales, const int32_t *zero_points,
                            const int32_t *column_sums, const float *weight_scales, const float *bias, int relu,
                            float *y, size_t y_stride);
#endif

#endif
