#ifndef WEIR_KERNELS_H
#define WEIR_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Integer GEMM for Weir's int8 layers: C[n][m] = sum_k A[n][k] * B[m][k], exact in int32.
 * A holds 8-bit activations, as 0...255 or centered on their zero point (q - zp, -255...255), and
 * B int8 weights (-127...127), both widened to int16 so the products are summed with vpmaddwd into
 * int32: every step is exact (a pair sum is at most 2 * 255 * 127 = 64770), unlike vpmaddubsw's
 * saturating int16 pair-add.
 * B is packed by weir_qgemm_pack_b into blocks of 8 output channels x 2 inputs. */

/* int16 elements needed for packed B with m outputs and k inputs. */
size_t weir_qgemm_packed_count(size_t m, size_t k);
/* Packs row-major b[m][k] (output-major). Padding is zero. */
void weir_qgemm_pack_b(const int8_t *b, size_t m, size_t k, int16_t *packed);
/* a: n rows of a_stride int16 (k used; k rounded up to even must be readable and zero there).
 * c: n rows of c_stride int32 (m used). */
void weir_qgemm_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c, size_t c_stride,
                     size_t n, size_t m, size_t k);
/* The same with the portable kernel, for tests and machines without AVX2. */
void weir_qgemm_u8s8_portable(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c,
                              size_t c_stride, size_t n, size_t m, size_t k);
/* 1 when the AVX2 kernels are in use. */
int weir_kernels_have_avx2(void);

/* Quantizes n rows of k floats to uint8 per row, exactly as Weir's reference:
 * lo = min(0, min x), hi = max(0, max x), s = (hi - lo) / 255 (1 when 0), inv = 1 / s,
 * zp = clamp(rint(-lo * inv), 0, 255), q = clamp(rint(x * inv) + zp, 0, 255); rint rounds half to even.
 * Writes q - zp as int16 (centered: sum (q - zp) * w needs no zero-point correction afterwards) and
 * reports zp. Pads each row with zeros up to q_stride. */
void weir_quantize_rows_u8(const float *x, size_t x_stride, size_t n, size_t k, int16_t *q, size_t q_stride,
                           float *scales, int32_t *zero_points);
/* y[r][j] = (float)(acc[r][j] - zp[r] * colsum[j]) * (scale[r] * weight_scale[j]) (+ bias[j]), in that
 * order and without fused multiply-add, so it matches the reference bit for bit; then max(y, 0) when
 * relu is 1. bias may be NULL; zero_points NULL: the sums came from centered activations and need no
 * correction. */
void weir_dequantize_rows(const int32_t *acc, size_t n, size_t m, const float *row_scales, const int32_t *zero_points,
                          const int32_t *column_sums, const float *weight_scales, const float *bias, int relu, float *y,
                          size_t y_stride);

/* The int8 layer in one pass: integer product, then the dequantization epilogue of
 * weir_dequantize_rows applied in registers (bit-identical to calling the two separately).
 * scratch (n * m int32) is used only by the portable path. */
void weir_qdense_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch);

/* fp32 dense: y[n][m] = sum_k x[n][k] * w[k][m] (+ bias[m]), then max(y, 0) when relu is 1.
 * w is input-major; bias may be NULL. */
void weir_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                size_t n, size_t k, const float *bias, int relu);
/* fp32 dense for layers with few outputs (fewer than 8, where weir_sgemm would leave most vector
 * lanes idle): each output is a dot product along k. w is output-major (w[j][k]); bias may be NULL. */
void weir_sgemm_dot(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                    size_t n, size_t k, const float *bias, int relu);
/* Softmax of each row of `width` floats (y may equal x): exp(x - max) / sum, with a vectorized exp
 * (relative error about 1e-7) on AVX2. A NaN in a row makes that row NaN. */
void weir_softmax_rows(const float *x, float *y, size_t rows, size_t width);

/* The 7-bit kernel for large layers: activations 0...127 (uint8) and weights -63...63 (int8) with
 * vpmaddubsw, two results added in int16 before widening. Four products sum to at most
 * 4 * 127 * 63 = 32004 < 32767, so every step is exact and the int32 sums equal the plain
 * product's; the narrower operands are the price (docs/model.md gives the accuracy cost).
 * B is packed by weir_qgemm7_pack_b into blocks of 8 outputs x 4 inputs (bytes); k padded to 8. */

/* int8 elements needed for packed B with m outputs and k inputs. */
size_t weir_qgemm7_packed_count(size_t m, size_t k);
/* Packs row-major b[m][k] (output-major, values -63...63). Padding is zero. */
void weir_qgemm7_pack_b(const int8_t *b, size_t m, size_t k, int8_t *packed);
/* a: n rows of a_stride bytes (k used; k rounded up to 8 must be readable and zero there). */
void weir_qgemm7(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                 size_t n, size_t m, size_t k);
/* The same with the portable kernel. */
void weir_qgemm7_portable(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                          size_t n, size_t m, size_t k);
/* weir_quantize_rows_u8's rule with 127 levels: s = (hi - lo) / 127, zp and q clamped to 0...127. */
void weir_quantize_rows_u7(const float *x, size_t x_stride, size_t n, size_t k, uint8_t *q, size_t q_stride,
                           float *scales, int32_t *zero_points);
/* The 7-bit layer in one pass, with weir_dequantize_rows's epilogue in registers. */
void weir_qdense_u7s7(const uint8_t *a, size_t a_stride, const int8_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch);

#endif
