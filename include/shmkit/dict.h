/*
 * shmkit/dict.h -- SharedDict: process-shared hash map (issue 3).
 */
#ifndef SHMKIT_DICT_H
#define SHMKIT_DICT_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
