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
