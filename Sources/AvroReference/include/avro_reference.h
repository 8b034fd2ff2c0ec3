// The Avro semantics of Weir's AvroDecoder written over libavro-c's generic values: the
// independent reference the differential tests and the Avro fuzz target compare with. C, because
// avro-c's value API is made of function-like macros Swift cannot call.
#ifndef WEIR_AVRO_REFERENCE_H
#define WEIR_AVRO_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

enum weir_avro_outcome {
    WEIR_AVRO_ACCEPTED = 0,
    WEIR_AVRO_MALFORMED = 1,       // avro-c cannot read the value, or bytes are left after it
    WEIR_AVRO_MISSING = 2,         // a feature is absent or null and has no default
    WEIR_AVRO_NOT_A_NUMBER = 3,    // a feature's value is not a number
    WEIR_AVRO_BAD_SCHEMA = 4,      // avro-c cannot parse the schema
};

/// What a feature's writer type is, for the caller's defaults: the state of each feature.
enum weir_avro_feature_state { WEIR_AVRO_VALUE = 0, WEIR_AVRO_NULL = 1, WEIR_AVRO_OTHER = 2 };

/// An avro-c schema parsed once and the generic value class to read it.
typedef struct weir_avro_reference weir_avro_reference;

weir_avro_reference *weir_avro_reference_new(const char *schema_json, size_t length);
void weir_avro_reference_free(weir_avro_reference *reference);

/// Reads `value` (the Avro body, without Confluent's frame) and the features named `names`
/// (`count` of them) from the record at `path` (`path_count` names; an array there is read by
/// position). `decimal_scales[i]` is feature i's decimal scale or -1 (avro-c 1.11 keeps no
/// logical types). Writes `row` and `states`; returns a `weir_avro_outcome` before defaults:
/// ACCEPTED means every feature is a number or absent/null (states say which).
int weir_avro_reference_decode(weir_avro_reference *reference, const uint8_t *value, size_t length,
                               const char *const *path, int path_count, const char *const *names, int count,
                               const int *decimal_scales, float *row, uint8_t *states);

/// Decodes `value` into avro-c's generic value and drops it (the benchmark's peer: libavro-c's
/// generic decode of the same bytes). Returns 0 on success.
int weir_avro_reference_read_only(weir_avro_reference *reference, const uint8_t *value, size_t length);

/// The value as JSON (the Avro specification's JSON encoding: a non-null union branch is an
/// object keyed by its type) into `out`: 0, -1 when avro-c cannot read it, -2 when `capacity` is short.
int weir_avro_reference_to_json(weir_avro_reference *reference, const uint8_t *value, size_t length, char *out, size_t capacity);

/// Frees every block avro-c still holds, leaked ones included. Only when no avro-c object is
/// alive on any thread (the fuzz target calls it after each input).
void weir_avro_reference_sweep(void);

#endif
