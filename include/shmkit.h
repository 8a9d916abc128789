/*
 * shmkit.h -- the public C API of libshmkit: lock-free shared-memory data
 * structures for processes on one machine.
 *
 * One header per concept lives in include/shmkit/; this umbrella includes
 * them all.  Link with -lshmkit (and -lpthread -lrt on older glibc).
 *
 *   shmkit/common.h   status codes (each with its meaning), object types
 *   shmkit/segment.h  named segments, the object directory, growth
 *   shmkit/alloc.h    free-list (the segment heap), bump and slab allocators
 *   shmkit/dict.h     hash map with variable-size keys and values
 *   shmkit/queue.h    multi-producer multi-consumer queue
 *   shmkit/stack.h    lock-free stack
 *   shmkit/bitset.h   atomic bitset
 *   shmkit/array.h    typed arrays with atomic operations
 *   shmkit/counter.h  sharded counter (increments that scale with cores)
 */
#ifndef SHMKIT_H
#define SHMKIT_H

#define SHMKIT_VERSION_MAJOR 0
#define SHMKIT_VERSION_MINOR 1
#define SHMKIT_VERSION_PATCH 0
#define SHMKIT_VERSION "0.1.0"

#include "shmkit/common.h"
#include "shmkit/segment.h"
#include "shmkit/alloc.h"
#include "shmkit/dict.h"
#include "shmkit/queue.h"
#include "shmkit/stack.h"
#include "shmkit/bitset.h"
#include "shmkit/array.h"
#include "shmkit/counter.h"

#endif
