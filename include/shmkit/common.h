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

/* Status codes.  The numbers are stable; -6 and -16 are unassigned.
 * The Python extension raises the exception named after a code below
 * (shmkit.Error where none is named), unless the binding answers that code
 * otherwise (a dict's get() of an absent key returns its default). */
enum shk_status {
    SHK_OK = 0, /* success                                          */
    /* A bad argument: a name, size, index, flag or type the call does not
     * accept.  Nothing was changed.                          ValueError */
    SHK_EINVAL = -1,
    /* No room: the segment cannot grow (max_size reached, or /dev/shm is
     * full), or a fixed-capacity allocator or structure is out of space.
     *                                                   OutOfMemoryError */
    SHK_ENOMEM = -2,
    /* What was read cannot be what shmkit wrote: not a shmkit segment, a
     * truncated file, another layout version, or an offset, length or lock
     * word in shared memory that fails its check.   CorruptSegmentError */
    SHK_ECORRUPT = -3,
    /* A segment of that name exists (exclusive create).  FileExistsError */
    SHK_EEXIST = -4,
    /* A *named* thing is absent: no segment of that name in /dev/shm, or no
     * object of that name in a segment's directory (attach without
     * create).                                         FileNotFoundError */
    SHK_ENOENT = -5,
    /* A non-blocking put found the queue or stack full, or the segment's
     * object directory holds SHK_DIR_CAPACITY objects already. */
    SHK_EFULL = -7,
    /* A non-blocking get found the queue or stack empty. */
    SHK_EEMPTY = -8,
    /* A blocking call's timeout passed first.              TimeoutError */
    SHK_ETIMEDOUT = -9,
    /* A system call failed; errno tells which and why.           OSError */
    SHK_ESYS = -10,
    /* The offset is not a live block of this allocator (never allocated,
     * already freed, or inside a block).                      ValueError */
    SHK_EBADOFF = -11,
    /* The segment holds an object of that name with another type. TypeError */
    SHK_ETYPE = -12,
    /* A blocking wait was interrupted by a signal.     InterruptedError */
    SHK_EINTR = -13,
    /* Another process changed what the call depends on (a CAS lost, a
     * version moved, a list moved under every check): nothing was changed;
     * retry. */
    SHK_EAGAIN = -14,
    /* A *key* is absent from a dict, or an iteration has passed its last
     * entry: an ordinary answer of a lookup, not a missing resource (unlike
     * SHK_ENOENT).                                              KeyError */
    SHK_ENOTFOUND = -15,
    /* The segment file belongs to another user or is writable by others,
     * and the attach's trust level refuses it (segment.h: enum shk_trust).
     *                                                ForeignSegmentError */
    SHK_EFOREIGN = -17
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
