/*
 * Benchmark peer for Weir's event decoder: the jansson way. Reads events (one per line) from a file,
 * parses each into jansson's DOM and pulls the named features out as floats, as a worker without
 * Weir's decoder would. Prints one JSON line with ns/event (best of repeated passes).
 *
 * usage: jansson-peer EVENTS_FILE SECONDS FEATURE...
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: jansson-peer EVENTS_FILE SECONDS FEATURE...\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(size);
    if (fread(data, 1, size, f) != (size_t)size) { perror("read"); return 2; }
    fclose(f);
    size_t count = 0;
    for (long i = 0; i < size; i++) if (data[i] == '\n') count++;
    size_t *starts = malloc(sizeof(size_t) * count), *lengths = malloc(sizeof(size_t) * count);
    size_t line = 0, start = 0;
    for (long i = 0; i < size; i++) if (data[i] == '\n') { starts[line] = start; lengths[line] = i - start; line++; start = i + 1; }
    double seconds = atof(argv[2]);
    int features = argc - 3;
    float *row = malloc(sizeof(float) * features);
    double best = 1e30, checksum = 0, deadline = now_ns() + seconds * 1e9;
    while (now_ns() < deadline) {
        double begin = now_ns();
        for (size_t e = 0; e < count; e++) {
            json_error_t error;
            json_t *root = json_loadb(data + starts[e], lengths[e], JSON_DECODE_INT_AS_REAL, &error);
            if (!root) { fprintf(stderr, "jansson-peer: %s\n", error.text); return 1; }
            for (int i = 0; i < features; i++) {
                json_t *v = json_object_get(root, argv[3 + i]);
                row[i] = v && json_is_real(v) ? (float)json_real_value(v) : 0;
            }
            checksum += row[0];
            json_decref(root);
        }
        double per = (now_ns() - begin) / count;
        if (per < best) best = per;
    }
    printf("{\"peer\":\"jansson\",\"ns_per_event\":%.1f,\"events\":%zu,\"checksum\":%g}\n", best, count, checksum);
    return 0;
}
