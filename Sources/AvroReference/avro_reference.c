#include "avro_reference.h"

#include <avro.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/// Every block avro-c allocates, in a list, so `weir_avro_reference_sweep` can free what it leaks.
typedef union block {
    struct { union block *previous, *next; } links;
    max_align_t alignment;
} block;

static block blocks = {{&blocks, &blocks}};
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

static void link_block(block *b) {
    b->links.previous = &blocks;
    b->links.next = blocks.links.next;
    blocks.links.next->links.previous = b;
    blocks.links.next = b;
}

static void unlink_block(block *b) {
    b->links.previous->links.next = b->links.next;
    b->links.next->links.previous = b->links.previous;
}

/// avro-c sizes some buffers from lengths it has not checked against the input (a forged
/// negative length asks for ~2^64 bytes): this allocator refuses anything over 16 MiB, which
/// avro-c reports as an error, so the oracle never aborts on what Weir calls malformed. It keeps
/// every block in a list: avro-c leaks array storage on some error paths.
static void *bounded_allocator(void *user_data, void *pointer, size_t old_size, size_t new_size) {
    (void)user_data; (void)old_size;
    block *existing = pointer ? (block *)pointer - 1 : NULL;
    if (new_size > ((size_t)16 << 20)) return NULL;
    pthread_mutex_lock(&blocks_lock);
    if (existing) unlink_block(existing);
    void *result = NULL;
    if (new_size == 0) {
        free(existing);
    } else {
        block *grown = realloc(existing, sizeof(block) + new_size);
        if (grown) { link_block(grown); result = grown + 1; }
        else if (existing) link_block(existing);
    }
    pthread_mutex_unlock(&blocks_lock);
    return result;
}

void weir_avro_reference_sweep(void) {
    pthread_mutex_lock(&blocks_lock);
    while (blocks.links.next != &blocks) {
        block *b = blocks.links.next;
        unlink_block(b);
        free(b);
    }
    pthread_mutex_unlock(&blocks_lock);
}

static pthread_once_t allocator_once = PTHREAD_ONCE_INIT;
static void install_allocator(void) { avro_set_allocator(bounded_allocator, NULL); }

struct weir_avro_reference {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    avro_reader_t reader;
};

weir_avro_reference *weir_avro_reference_new(const char *schema_json, size_t length) {
    pthread_once(&allocator_once, install_allocator);
    weir_avro_reference *reference = calloc(1, sizeof *reference);
    if (!reference) return NULL;
    if (avro_schema_from_json_length(schema_json, length, &reference->schema) != 0) {
        free(reference);
        return NULL;
    }
    reference->iface = avro_generic_class_from_schema(reference->schema);
    avro_generic_value_new(reference->iface, &reference->value);
    reference->reader = avro_reader_memory("", 0);
    return reference;
}

void weir_avro_reference_free(weir_avro_reference *reference) {
    if (!reference) return;
    avro_reader_free(reference->reader);
    avro_value_decref(&reference->value);
    avro_value_iface_decref(reference->iface);
    avro_schema_decref(reference->schema);
    free(reference);
}

/// Whether every enum index inside `value` names a symbol. avro-c reads any index; the Avro
/// specification (and Weir) refuse one out of range.
static int enums_in_range(avro_value_t *value) {
    switch (avro_value_get_type(value)) {
    case AVRO_ENUM: {
        int index;
        avro_value_get_enum(value, &index);
        return index >= 0 && index < avro_schema_enum_number_of_symbols(avro_value_get_schema(value));
    }
    case AVRO_UNION: {
        avro_value_t branch;
        return avro_value_get_current_branch(value, &branch) == 0 && enums_in_range(&branch);
    }
    case AVRO_RECORD: case AVRO_ARRAY: case AVRO_MAP: {
        size_t size = 0;
        avro_value_get_size(value, &size);
        for (size_t i = 0; i < size; i++) {
            avro_value_t child;
            if (avro_value_get_by_index(value, i, &child, NULL) != 0 || !enums_in_range(&child)) return 0;
        }
        return 1;
    }
    default: return 1;
    }
}

/// Reads the whole value; -1 when avro-c refuses it or bytes are left after it.
static int read_all(weir_avro_reference *reference, const uint8_t *value, size_t length) {
    avro_reader_memory_set_source(reference->reader, (const char *)value, (int64_t)length);
    avro_value_reset(&reference->value);
    if (avro_value_read(reference->reader, &reference->value) != 0) return -1;
    char extra;
    if (avro_read(reference->reader, &extra, 1) == 0) return -1;
    return enums_in_range(&reference->value) ? 0 : -1;
}

int weir_avro_reference_read_only(weir_avro_reference *reference, const uint8_t *value, size_t length) {
    return read_all(reference, value, length);
}

/// Through unions to the branch's value.
static void unwrap(avro_value_t *value) {
    while (avro_value_get_type(value) == AVRO_UNION) {
        avro_value_t branch;
        if (avro_value_get_current_branch(value, &branch) != 0) return;
        *value = branch;
    }
}

static double decimal_of(const uint8_t *bytes, size_t size, int scale) {
    double value = 0;
    if (size > 0) {
        value = (double)(int8_t)bytes[0];
        for (size_t i = 1; i < size; i++) value = value * 256 + bytes[i];
    }
    for (int i = 0; i < scale; i++) value /= 10;
    return value;
}

/// One feature's value: a number into `out` (WEIR_AVRO_VALUE), null, or something else.
static int number_of(avro_value_t *value, int scale, float *out) {
    unwrap(value);
    switch (avro_value_get_type(value)) {
    case AVRO_NULL: return WEIR_AVRO_NULL;
    case AVRO_INT32: { int32_t v; avro_value_get_int(value, &v); *out = (float)v; return WEIR_AVRO_VALUE; }
    case AVRO_INT64: { int64_t v; avro_value_get_long(value, &v); *out = (float)v; return WEIR_AVRO_VALUE; }
    case AVRO_BOOLEAN: { int v; avro_value_get_boolean(value, &v); *out = v ? 1.0f : 0.0f; return WEIR_AVRO_VALUE; }
    case AVRO_FLOAT: {
        float v; avro_value_get_float(value, &v);
        if (isnan(v)) return WEIR_AVRO_NULL;
        if (isinf(v)) return WEIR_AVRO_OTHER;
        *out = v; return WEIR_AVRO_VALUE;
    }
    case AVRO_DOUBLE: {
        double v; avro_value_get_double(value, &v);
        if (isnan(v)) return WEIR_AVRO_NULL;
        float f = (float)v;
        if (isinf(f)) return WEIR_AVRO_OTHER;
        *out = f; return WEIR_AVRO_VALUE;
    }
    case AVRO_BYTES: {
        if (scale < 0) return WEIR_AVRO_OTHER;
        const void *bytes; size_t size; avro_value_get_bytes(value, &bytes, &size);
        *out = (float)decimal_of(bytes, size, scale); return isinf(*out) ? WEIR_AVRO_OTHER : WEIR_AVRO_VALUE;
    }
    case AVRO_FIXED: {
        if (scale < 0) return WEIR_AVRO_OTHER;
        const void *bytes; size_t size; avro_value_get_fixed(value, &bytes, &size);
        *out = (float)decimal_of(bytes, size, scale); return isinf(*out) ? WEIR_AVRO_OTHER : WEIR_AVRO_VALUE;
    }
    default: return WEIR_AVRO_OTHER;
    }
}

int weir_avro_reference_decode(weir_avro_reference *reference, const uint8_t *value, size_t length,
                               const char *const *path, int path_count, const char *const *names, int count,
                               const int *decimal_scales, float *row, uint8_t *states) {
    if (read_all(reference, value, length) != 0) return WEIR_AVRO_MALFORMED;
    avro_value_t holder = reference->value;
    int found = 1;
    for (int level = 0; level < path_count && found; level++) {
        unwrap(&holder);
        avro_value_t child;
        if (avro_value_get_type(&holder) != AVRO_RECORD || avro_value_get_by_name(&holder, path[level], &child, NULL) != 0) {
            found = 0;
        } else {
            holder = child;
        }
    }
    if (found) unwrap(&holder);
    avro_type_t kind = found ? avro_value_get_type(&holder) : AVRO_NULL;
    if (kind != AVRO_RECORD && !(kind == AVRO_ARRAY && path_count > 0)) found = 0;
    int result = WEIR_AVRO_ACCEPTED;
    for (int i = 0; i < count; i++) {
        avro_value_t feature;
        int have = 0;
        if (found && kind == AVRO_RECORD) {
            have = avro_value_get_by_name(&holder, names[i], &feature, NULL) == 0;
        } else if (found) {
            size_t size = 0;
            avro_value_get_size(&holder, &size);
            have = (size_t)i < size && avro_value_get_by_index(&holder, (size_t)i, &feature, NULL) == 0;
        }
        if (!have) { states[i] = WEIR_AVRO_NULL; continue; }
        states[i] = (uint8_t)number_of(&feature, decimal_scales[i], &row[i]);
        if (states[i] == WEIR_AVRO_OTHER) result = WEIR_AVRO_NOT_A_NUMBER;
    }
    return result;
}

/// Whether `pointer` is a block of this allocator's (avro-c allocated it).
static int is_tracked(void *pointer) {
    int found = 0;
    pthread_mutex_lock(&blocks_lock);
    for (block *b = blocks.links.next; b != &blocks && !found; b = b->links.next) found = (void *)(b + 1) == pointer;
    pthread_mutex_unlock(&blocks_lock);
    return found;
}

int weir_avro_reference_to_json(weir_avro_reference *reference, const uint8_t *value, size_t length, char *out, size_t capacity) {
    if (read_all(reference, value, length) != 0) return -1;
    char *json = NULL;
    if (avro_value_to_json(&reference->value, 1, &json) != 0 || !json) return -1;
    size_t size = strlen(json);
    int result = size < capacity ? 0 : -2;
    if (result == 0) memcpy(out, json, size + 1);
    // avro-c's bundled jansson may allocate through avro-c's allocator or plain malloc.
    if (is_tracked(json)) bounded_allocator(NULL, json, 0, 0); else free(json);
    return result;
}
