// A malloc that counts, per thread, while asked to, and otherwise is glibc's. Defined in the test
// binary, it stands in for libc's malloc process-wide (the executable's symbols come first);
// free, calloc, realloc and the aligned allocators stay glibc's, which accept its blocks.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <stddef.h>
#include <string.h>
#include "allocation_counter.h"

extern void *__libc_malloc(size_t size);

static _Thread_local int counting = 0;
static _Thread_local long count = 0;
static _Thread_local void *first_site[8];
static _Thread_local int first_depth = 0;

void *malloc(size_t size) {
    if (counting) {
        if (count == 0) {
            counting = 0;  // backtrace may allocate
            first_depth = backtrace(first_site, 8);
            counting = 1;
        }
        count++;
    }
    return __libc_malloc(size);
}

void weir_allocation_counting(int on) {
    counting = on;
    if (on) { count = 0; first_depth = 0; }
}

long weir_allocations(void) { return count; }

const char *weir_first_allocation_frame(int index) {
    if (index >= first_depth) return "";
    Dl_info info;
    if (dladdr(first_site[index], &info) && info.dli_sname) return info.dli_sname;
    return "?";
}
