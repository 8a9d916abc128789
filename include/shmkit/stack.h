/*
 * shmkit/stack.h -- lock-free stack (issue 4).
 */
#ifndef SHMKIT_STACK_H
#define SHMKIT_STACK_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
