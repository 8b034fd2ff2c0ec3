#ifndef WEIR_CJANSSON_SHIM_H
#define WEIR_CJANSSON_SHIM_H
#include <jansson.h>
#endif
