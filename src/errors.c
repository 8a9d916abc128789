/*
 * errors.c -- the names of things for messages: shk_strerror (a status
 * code's description; the codes and their meanings are in
 * include/shmkit/common.h) and shk_type_name (an object type's name, as
 * `shmkit ls` prints it).  Each returns a static string, never NULL.
 */
#include "internal.h"

const char *shk_strerror(int status)
{
    switch (status) {
    case SHK_OK: return "success";
    case SHK_EINVAL: return "invalid argument";
    case SHK_ENOMEM: return "out of shared memory";
    case SHK_ECORRUPT:
        return "not a valid shmkit segment (corrupt, foreign, truncated or another layout "
               "version)";
    case SHK_EEXIST: return "already exists";
    case SHK_ENOENT: return "no such segment or object";
    case SHK_EFULL: return "full";
    case SHK_EEMPTY: return "empty";
    case SHK_ETIMEDOUT: return "timed out";
    case SHK_ESYS: return "system call failed";
    case SHK_EBADOFF: return "offset is not a live block of this allocator";
    case SHK_ETYPE: return "object exists with another type";
    case SHK_EINTR: return "interrupted by a signal";
    case SHK_EAGAIN: return "changed concurrently";
    case SHK_ENOTFOUND: return "key not found";
    case SHK_EFOREIGN:
        return "segment is owned by another user or writable by others (not trusted)";
    default: return "unknown error";
    }
}


const char *shk_type_name(uint32_t type)
{
    static const char *const names[SHK_TYPE_MAX_] = {"none",  "bump",   "freelist", "slab",
                                                     "dict",  "queue",  "stack",    "bitset",
                                                     "array", "counter"};
    return type < SHK_TYPE_MAX_ ? names[type] : "unknown";
}
