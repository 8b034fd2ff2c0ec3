#ifndef WEIR_KERNELS_H
#define WEIR_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Kernel sets, chosen at run time: every call names the set it wants and gets the best one this CPU
 * runs that is no wider than that (asking for AVX-512 on an AVX2 machine gets AVX2). Every set gives
 * bit-identical integer layers; fp32 sums may differ in their last bits (another summation order). */
typedef enum {
    WEIR_KERNELS_PORTABLE = 0,
    /* AVX2 and FMA. */
    WEIR_KERNELS_AVX2 = 1,
    /* AVX-512 (F, BW, VL, DQ) with VNNI: vpdpbusd multiplies u8 by s8 and sums four products into
     * int32 exactly (no int16 stage), 64 multiply-adds an instruction. */
    WEIR_KERNELS_AVX512 = 2,
} weir_kernels_t;

/* The widest set this CPU (and its OS) runs. */
weir_kernels_t weir_kernels_best(void);
/* The set a request gets here: the request, or the best set when that is narrower. */
weir_kernels_t weir_kernels_usable(weir_kernels_t requested);

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
 * c: n rows of c_stride int32 (m used). AVX2 or portable (an AVX-512 request runs AVX2). */
void weir_qgemm_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, int32_t *c, size_t c_stride,
                     size_t n, size_t m, size_t k, weir_kernels_t kernels);

/* Quantizes n rows of k floats to uint8 per row, exactly as Weir's reference:
 * lo = min(0, min x), hi = max(0, max x), s = (hi - lo) / 255 (1 when 0), inv = 1 / s,
 * zp = clamp(rint(-lo * inv), 0, 255), q = clamp(rint(x * inv) + zp, 0, 255); rint rounds half to even.
 * Writes q - zp as int16 (centered: sum (q - zp) * w needs no zero-point correction afterwards) and
 * reports zp. Pads each row with zeros up to q_stride. */
void weir_quantize_rows_u8(const float *x, size_t x_stride, size_t n, size_t k, int16_t *q, size_t q_stride,
                           float *scales, int32_t *zero_points, weir_kernels_t kernels);
/* y[r][j] = (float)(acc[r][j] - zp[r] * colsum[j]) * (scale[r] * weight_scale[j]) (+ bias[j]), in that
 * order and without fused multiply-add, so it matches the reference bit for bit on every set; then
 * max(y, 0) when relu is 1. bias may be NULL; zero_points NULL: the sums came from centered
 * activations and need no correction. AVX2 or portable (an AVX-512 request runs AVX2). */
void weir_dequantize_rows(const int32_t *acc, size_t n, size_t m, const float *row_scales, const int32_t *zero_points,
                          const int32_t *column_sums, const float *weight_scales, const float *bias, int relu, float *y,
                          size_t y_stride, weir_kernels_t kernels);

/* The int8 layer in one pass: integer product, then the dequantization epilogue of
 * weir_dequantize_rows applied in registers (bit-identical to calling the two separately).
 * scratch (n * m int32) is used only by the portable path. */
void weir_qdense_u8s8(const int16_t *a, size_t a_stride, const int16_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch, weir_kernels_t kernels);

/* fp32 dense: y[n][m] = sum_k x[n][k] * w[k][m] (+ bias[m]), then max(y, 0) when relu is 1.
 * w is input-major; bias may be NULL. */
void weir_sgemm(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                size_t n, size_t k, const float *bias, int relu, weir_kernels_t kernels);
/* fp32 dense for layers with few outputs (fewer than 8, where weir_sgemm would leave most vector
 * lanes idle): each output is a dot product along k. w is output-major (w[j][k]); bias may be NULL. */
void weir_sgemm_dot(const float *x, size_t x_stride, const float *w, size_t m, float *y, size_t y_stride,
                    size_t n, size_t k, const float *bias, int relu, weir_kernels_t kernels);
/* Softmax of each row of `width` floats (y may equal x): exp(x - max) / sum, with a vectorized exp
 * (relative error about 1e-7) on AVX2 and AVX-512. A NaN in a row makes that row NaN. */
void weir_softmax_rows(const float *x, float *y, size_t rows, size_t width, weir_kernels_t kernels);

/* The 7-bit kernel for large layers: activations 0...127 (uint8) and weights -63...63 (int8) with
 * vpmaddubsw, two results added in int16 before widening. Four products sum to at most
 * 4 * 127 * 63 = 32004 < 32767, so every step is exact and the int32 sums equal the plain
 * product's; the narrower operands are the price (docs/model.md gives the accuracy cost).
 * B is packed by weir_qgemm7_pack_b into blocks of 8 outputs x 4 inputs (bytes); k padded to 8. */

/* int8 elements needed for packed B with m outputs and k inputs. */
size_t weir_qgemm7_packed_count(size_t m, size_t k);
/* Packs row-major b[m][k] (output-major, values -63...63). Padding is zero. */
void weir_qgemm7_pack_b(const int8_t *b, size_t m, size_t k, int8_t *packed);
/* a: n rows of a_stride bytes (k used; k rounded up to 8 must be readable and zero there).
 * AVX2 or portable (an AVX-512 request runs AVX2). */
void weir_qgemm7(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                 size_t n, size_t m, size_t k, weir_kernels_t kernels);
/* The 7-bit layer in one pass, with weir_dequantize_rows's epilogue in registers. */
void weir_qdense_u7s7(const uint8_t *a, size_t a_stride, const int8_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch, weir_kernels_t kernels);

/* weir_quantize_rows_u8's rule with `levels` levels (255: int8, 127: int7): s = (hi - lo) / levels,
 * zp and q clamped to 0...levels, written as they are (not centered), as bytes. */
void weir_quantize_rows_bytes(const float *x, size_t x_stride, size_t n, size_t k, int32_t levels, uint8_t *q,
                              size_t q_stride, float *scales, int32_t *zero_points, weir_kernels_t kernels);

/* The VNNI kernel (AVX-512): activations as bytes (0...255, or 0...127 for int7 layers) times int8
 * weights with vpdpbusd, four products summed straight into int32, so the sums are exact for any
 * operands (k up to 65,000) and both schemes run on it with the same results as their AVX2 kernels.
 * The activations are not centered: the epilogue subtracts zp * colsum.
 * B is packed by weir_qgemm_vnni_pack_b into blocks of 16 outputs x 4 inputs (bytes); k padded to 4. */

/* int8 elements needed for packed B with m outputs and k inputs. */
size_t weir_qgemm_vnni_packed_count(size_t m, size_t k);
/* Packs row-major b[m][k] (output-major). Padding is zero. */
void weir_qgemm_vnni_pack_b(const int8_t *b, size_t m, size_t k, int8_t *packed);
/* a: n rows of a_stride bytes (k used; k rounded up to 4 must be readable and zero there). The raw sums
 * (without zero-point correction); portable when AVX-512 is not requested or not here. */
void weir_qgemm_vnni(const uint8_t *a, size_t a_stride, const int8_t *packed_b, int32_t *c, size_t c_stride,
                     size_t n, size_t m, size_t k, weir_kernels_t kernels);
/* The integer layer in one pass on the VNNI layout, with weir_dequantize_rows's epilogue (zero points
 * required) in registers. scratch (n * m int32) is used only without AVX-512. */
void weir_qdense_vnni(const uint8_t *a, size_t a_stride, const int8_t *packed_b, size_t n, size_t m, size_t k,
                      const float *row_scales, const int32_t *zero_points, const int32_t *column_sums,
                      const float *weight_scales, const float *bias, int relu, float *y, size_t y_stride,
                      int32_t *scratch, weir_kernels_t kernels);

/// A tree node: its threshold, its feature (low 30 bits; bit 31 set when a missing value goes the true
/// way), and its children (true, false); a leaf's children are itself.
typedef struct {
    float threshold;
    uint32_t feature;
    int32_t children[2];
} weir_tree_node;

enum { WEIR_TREE_LEQ = 0, WEIR_TREE_LT = 1, WEIR_TREE_GTE = 2, WEIR_TREE_GT = 3, WEIR_TREE_EQ = 4, WEIR_TREE_NEQ = 5, WEIR_TREE_MIXED = 255 };
#define WEIR_TREE_FEATURE_MASK 0x3fffffffu

/// Adds every tree's leaf weights for each row into `scores` (row_count x targets, row-major).
/// `uniform_mode` is the branch test every node uses, or WEIR_TREE_MIXED to read `modes` per node.
/// `depths` holds each tree's depth (steps from the root to its deepest leaf); `leaf_start` and
/// `leaf_count` each node's (target, weight) entries, a count of -1 marking a branch.
void weir_trees_accumulate(const weir_tree_node *nodes, const uint8_t *modes, int uniform_mode, const int32_t *roots,
                           const int32_t *depths, size_t tree_count, const float *rows, size_t row_count,
                           size_t row_stride, const int32_t *leaf_start, const int32_t *leaf_count,
                           const int32_t *leaf_targets, const float *leaf_weights, float *scores, size_t targets);

#endif
