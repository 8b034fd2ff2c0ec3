#ifndef WEIR_KERNELS_H
#define WEIR_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Integer GEMM for Weir's int8 layers: C[n][m] = sum_k A[n][k] * B[m][k], exact in int32.
 * A holds 8-bit activations (0...255) and B int8 weights (-127...127), both widened to int16 so
 * the products are summed with vpmaddwd into int32: every step is exact (a pair sum is at most
 * 2 * 255 * 127 = 64770), unlike vpmaddubsw's saturating int16 pair-add.
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

/* fp32 dense: y[n][m] = sum_k x[n][k] * w[k][m]. w is input-major. */
void weir_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                size_t n, size_t k);

#endif
