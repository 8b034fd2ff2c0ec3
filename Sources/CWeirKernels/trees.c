// Tree ensemble traversal: every tree over every row of a batch, the tree's nodes staying in cache
// while the rows stream past. A node is 16 bytes. With one branch test for the whole ensemble
// (scikit-learn, LightGBM: <=; XGBoost: <) the descent is branchless and eight rows go down a tree
// together (leaves point at themselves, so every row takes the tree's depth in steps), which keeps
// eight independent load chains in flight instead of one.
#include "weir_kernels.h"
#include <math.h>

static inline int goes_true(uint8_t mode, float x, float t) {
    switch (mode) {
    case WEIR_TREE_LEQ: return x <= t;
    case WEIR_TREE_LT: return x < t;
    case WEIR_TREE_GTE: return x >= t;
    case WEIR_TREE_GT: return x > t;
    case WEIR_TREE_EQ: return x == t;
    default: return x != t;
    }
}

#define LANES 8

// Deep trees (LightGBM grows them leaf-wise, unevenly) stop once all eight rows are at leaves.
#define WEIR_DESCEND_LANES(TEST)                                                                   \
    for (int32_t step = 0; step < depth; step++) {                                                 \
        for (size_t l = 0; l < lanes; l++) {                                                       \
            const weir_tree_node *node = nodes + n[l];                                             \
            uint32_t word = node->feature;                                                         \
            float x = block[l * row_stride + (word & WEIR_TREE_FEATURE_MASK)], t = node->threshold; \
            int yes = (TEST) | ((x != x) & (int)(word >> 31));                                     \
            n[l] = node->children[1 - yes];                                                        \
        }                                                                                          \
        if (depth > 6 && step >= 3) {                                                              \
            int all_leaves = 1;                                                                    \
            for (size_t l = 0; l < lanes; l++) all_leaves &= leaf_count[n[l]] >= 0;                \
            if (all_leaves) break;                                                                 \
        }                                                                                          \
    }

void weir_trees_accumulate(const weir_tree_node *nodes, const uint8_t *modes, int uniform_mode, const int32_t *roots,
                           const int32_t *depths, size_t tree_count, const float *rows, size_t row_count,
                           size_t row_stride, const int32_t *leaf_start, const int32_t *leaf_count,
                           const int32_t *leaf_targets, const float *leaf_weights, float *scores, size_t targets) {
    for (size_t tree = 0; tree < tree_count; tree++) {
        int32_t root = roots[tree], depth = depths[tree];
        for (size_t r = 0; r < row_count; r += LANES) {
            size_t lanes = row_count - r < LANES ? row_count - r : LANES;
            const float *block = rows + r * row_stride;
            int32_t n[LANES];
            for (size_t l = 0; l < lanes; l++) n[l] = root;
            if (lanes <= 2) {
                // Too few rows to overlap: each stops at its leaf (bounded by the depth all the same).
                for (size_t l = 0; l < lanes; l++) {
                    const float *row = block + l * row_stride;
                    int32_t at = root;
                    for (int32_t step = 0; step < depth && leaf_count[at] < 0; step++) {
                        const weir_tree_node *node = nodes + at;
                        uint32_t word = node->feature;
                        float x = row[word & WEIR_TREE_FEATURE_MASK];
                        int yes = isnan(x) ? (int)(word >> 31) : goes_true(modes[at], x, node->threshold);
                        at = node->children[1 - yes];
                    }
                    n[l] = at;
                }
            } else if (uniform_mode == WEIR_TREE_LEQ) {
                WEIR_DESCEND_LANES(x <= t)
            } else if (uniform_mode == WEIR_TREE_LT) {
                WEIR_DESCEND_LANES(x < t)
            } else {
                for (int32_t step = 0; step < depth; step++) {
                    for (size_t l = 0; l < lanes; l++) {
                        const weir_tree_node *node = nodes + n[l];
                        uint32_t word = node->feature;
                        float x = block[l * row_stride + (word & WEIR_TREE_FEATURE_MASK)];
                        int yes = isnan(x) ? (int)(word >> 31) : goes_true(modes[n[l]], x, node->threshold);
                        n[l] = node->children[1 - yes];
                    }
                }
            }
            for (size_t l = 0; l < lanes; l++) {
                int32_t start = leaf_start[n[l]], count = leaf_count[n[l]];
                float *out = scores + (r + l) * targets;
                for (int32_t i = start; i < start + count; i++) out[leaf_targets[i]] += leaf_weights[i];
            }
        }
    }
}
