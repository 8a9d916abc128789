/*
 * shmkit/queue.h -- MPMC queue (issue 4).
 */
#ifndef SHMKIT_QUEUE_H
#define SHMKIT_QUEUE_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
