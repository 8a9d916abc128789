/*
 * shmkit/common.h -- status codes and conventions shared by every part of
 * libshmkit.
 *
 * Conventions of the whole C API:
 *   - Every fallible function returns an int status: SHK_OK (0) or a negative
 *     SHK_E* code below.  Out-parameters are written only on success.
 *   - Objects in shared memory are addressed by *offsets* from the start of
 *     their segment (uint64_t), never by pointers: each process maps the
 *     segment at its own address.
 *   - A failed call leaves the shared structure exactly as it was.
 */
#ifndef SHMKIT_COMMON_H
#define SHMKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum shk_status {
    SHK_OK = 0,
    SHK_EINVAL = -1,      /* bad argument (name, size, index, type...)      */
    SHK_ENOMEM = -2,      /* the segment / allocator has no room             */
    SHK_ECORRUPT = -3,    /* not a shmkit segment, wrong version, truncated  */
    SHK_EEXIST = -4,      /* a segment or object of that name exists         */
    SHK_ENOENT = -5,      /* no segment or object of that name               */
    SHK_ECLOSED = -6,     /* handle already closed                           */
    SHK_EFULL = -7,       /* queue/stack full (non-blocking); segment object
                           * directory full (SHK_DIR_CAPACITY objects)      */
    SHK_EEMPTY = -8,      /* queue/stack empty (non-blocking)                */
    SHK_ETIMEDOUT = -9,   /* blocking call timed out                         */
    SHK_ESYS = -10,       /* a system call failed; errno tells which         */
    SHK_EBADOFF = -11,    /* offset is not a live block of this allocator    */
    SHK_ETYPE = -12,      /* object exists with another type                 */
    SHK_EINTR = -13,      /* a blocking wait was interrupted by a signal     */
    SHK_EAGAIN = -14,     /* value changed concurrently (CAS lost); retry    */
    SHK_ENOTFOUND = -15,  /* key not present (dict)                          */
    SHK_ECLOSEDQ = -16,   /* queue closed for putting                        */
    SHK_EFOREIGN = -17    /* segment owned by another user or writable by    */
                          /* others: refused by the attach's trust level     */
};

/* A short, static, English description of a status code. */
const char *shk_strerror(int status);

/* Object types stored in a segment's directory. */
enum shk_type {
    SHK_TYPE_NONE = 0,
    SHK_TYPE_BUMP = 1,
    SHK_TYPE_FREELIST = 2,
    SHK_TYPE_SLAB = 3,
    SHK_TYPE_DICT = 4,
    SHK_TYPE_QUEUE = 5,
    SHK_TYPE_STACK = 6,
    SHK_TYPE_BITSET = 7,
    SHK_TYPE_ARRAY = 8,
    SHK_TYPE_COUNTER = 9,
    SHK_TYPE_MAX_ = 10
};

const char *shk_type_name(uint32_t type);

#ifdef __cplusplus
}
#endif
#endif
