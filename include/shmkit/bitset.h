/*
 * shmkit/bitset.h -- atomic bitset (issue 4).
 */
#ifndef SHMKIT_BITSET_H
#define SHMKIT_BITSET_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
