#ifndef WEIR_ALLOCATION_COUNTER_H
#define WEIR_ALLOCATION_COUNTER_H

/* Counts malloc calls made by the calling thread while counting is on: the test binary defines
 * malloc (forwarding to glibc's), so the count covers Swift's allocations too. Tests use it to
 * check that a warm decoder allocates nothing per event. */
void weir_allocation_counting(int on);
long weir_allocations(void);
/* The function at `index` of the first counted allocation's call stack (0: malloc itself), or "". */
const char *weir_first_allocation_frame(int index);

#endif
