/*
 * shmkit/array.h -- typed atomic arrays (issue 4).
 */
#ifndef SHMKIT_ARRAY_H
#define SHMKIT_ARRAY_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
