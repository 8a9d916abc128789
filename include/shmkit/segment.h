/*
 * shmkit/segment.h -- named POSIX shared-memory segments holding many named
 * objects.
 *
 * A segment is one shm object (/dev/shm/NAME).  Every process maps the whole
 * reservation (max_size bytes, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_NORESERVE)
 * once; the file behind it grows by posix_fallocate as the segment's heap
 * needs room.  Nothing ever moves, so offsets and zero-copy views stay valid
 * for the life of a mapping.  See src/segment.c for the layout.
 */
#ifndef SHMKIT_SEGMENT_H
#define SHMKIT_SEGMENT_H

#include <sys/types.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHK_SEGMENT_NAME_MAX 200           /* bytes, without the leading '/'   */
#define SHK_OBJECT_NAME_MAX 63             /* bytes, without the NUL           */
#define SHK_DIR_CAPACITY 64                /* named objects per segment        */
#define SHK_DEFAULT_SIZE (1u << 20)        /* initial backed bytes             */
#define SHK_DEFAULT_MAX_SIZE (64ull << 30) /* reservation; offsets < 2^36 */
#define SHK_MAX_MAX_SIZE (64ull << 30)

typedef struct shk_segment shk_segment; /* process-local handle */
struct shk_freelist;                    /* the segment's own heap */

/* Create a new segment.  size: bytes backed at once (>= header), max_size:
 * the most it may ever grow to (0 = default: 64 GiB of address space, or the
 * SHMKIT_MAX_SIZE environment variable, e.g. "4G"; halved as needed when
 * the process cannot map that much).  Fails with SHK_EEXIST if the
 * name exists (O_CREAT | O_EXCL: never reuses a file someone else made).
 * mode: permission bits (0600 recommended); the file gets exactly
 * `mode & 0777` (set with fchmod after creation, so the umask neither
 * widens nor narrows it), owned by the effective uid and gid. */
int shk_segment_create(const char *name, uint64_t size, uint64_t max_size, mode_t mode,
                       shk_segment **out);

/* Whose segment an attach accepts.  Checked with fstat on the opened
 * descriptor before anything in the file is read, so the file checked is
 * the file used.  Let euid/egid be this process's effective ids and
 * "our groups" egid plus the supplementary groups (getgroups):
 *
 *   SHK_TRUST_OWNER  the file is owned by euid and only its owner may
 *                    write it (mode & 0022 == 0).  The default: a segment
 *                    another user made, or one others can write, is
 *                    refused, since whoever can write a segment controls
 *                    what its readers see (and runs code in any reader
 *                    that unpickles).  Root gets no exception: euid 0
 *                    refuses a file owned by uid 65534.
 *   SHK_TRUST_GROUP  also accepts a file whose group is one of our
 *                    groups, whatever its owner and group-write bit, as
 *                    long as it is not world-writable (mode & 0002 == 0).
 *                    For sharing between users on purpose: create with
 *                    mode 0660 by a member of the shared group, attach
 *                    with SHK_TRUST_GROUP everywhere (the creator's own
 *                    later attaches too: 0660 is group-writable).
 *   SHK_TRUST_ANY    no ownership or mode check.
 *
 * Whatever the trust, a file that is not a regular file is SHK_ECORRUPT. */
enum shk_trust { SHK_TRUST_OWNER = 0, SHK_TRUST_GROUP = 1, SHK_TRUST_ANY = 2 };

/* The owner, group and permission bits (mode & 07777) of a segment's file,
 * as fstat saw them. */
typedef struct shk_segment_owner {
    uint32_t uid, gid, mode;
} shk_segment_owner;

/* Attach to an existing segment, trusting only our own (SHK_TRUST_OWNER):
 * SHK_ENOENT if missing, SHK_EFOREIGN if refused by the trust check,
 * SHK_ECORRUPT if the file is not a valid shmkit segment of this layout
 * version. */
int shk_segment_attach(const char *name, shk_segment **out);

/* Attach with an explicit trust (enum shk_trust).  owner (may be NULL)
 * receives the file's owner facts whenever the file was opened: on success
 * and with SHK_EFOREIGN (for the error message), SHK_EINVAL for an unknown
 * trust. */
int shk_segment_attach_ex(const char *name, int trust, shk_segment_owner *owner,
                          shk_segment **out);

/* Open-or-create: attach if it exists, create otherwise (race-free).  An
 * existing segment goes through the same trust check as an attach:
 * shk_segment_open trusts SHK_TRUST_OWNER only, shk_segment_open_ex the
 * given trust (owner as in shk_segment_attach_ex). */
int shk_segment_open(const char *name, uint64_t size, uint64_t max_size, mode_t mode,
                     shk_segment **out, int *created);
int shk_segment_open_ex(const char *name, uint64_t size, uint64_t max_size, mode_t mode,
                        int trust, shk_segment_owner *owner, shk_segment **out, int *created);

/* SHK_OK if a file with these facts passes `trust` for this process,
 * SHK_EFOREIGN if not, SHK_EINVAL for an unknown trust. */
int shk_segment_trust_check(const shk_segment_owner *owner, int trust);

/* Drop this handle's reference; the mapping goes away with the last one.
 * Never removes the segment from the system. */
void shk_segment_close(shk_segment *seg);
/* Take another reference (for views and object handles). */
void shk_segment_retain(shk_segment *seg);

/* Remove the name from the system (existing mappings stay valid). */
int shk_segment_unlink(const char *name);

/* Validate a segment name: 1..SHK_SEGMENT_NAME_MAX bytes, no '/', no NUL.
 * A single leading '/' is accepted and ignored. */
int shk_segment_name_valid(const char *name);

char *shk_segment_base(const shk_segment *seg);
const char *shk_segment_name(const shk_segment *seg);
uint64_t shk_segment_max_size(const shk_segment *seg);
uint64_t shk_segment_file_size(const shk_segment *seg); /* backed now  */
uint64_t shk_segment_hash_seed(const shk_segment *seg);
struct shk_freelist *shk_segment_heap(shk_segment *seg); /* growable */
/* Check the segment's own locks and its heap: SHK_OK or SHK_ECORRUPT. */
int shk_segment_check(shk_segment *seg);

/* Make sure at least `min_size` bytes of the segment are backed by memory,
 * growing the file if needed.  SHK_ENOMEM if max_size or /dev/shm is
 * exhausted (never a later SIGBUS). */
int shk_segment_reserve(shk_segment *seg, uint64_t min_size);

/* True if [off, off+len) lies inside the backed part of the segment. */
int shk_segment_contains(const shk_segment *seg, uint64_t off, uint64_t len);

/* ---- the directory of named objects ---- */

typedef struct shk_object_info {
    char name[SHK_OBJECT_NAME_MAX + 1];
    uint32_t type;   /* enum shk_type */
    uint64_t offset; /* of the object's shared header */
    uint64_t size;   /* bytes of that header region as recorded */
} shk_object_info;

/* Called, with the directory lock held, to build a new object.  Writes the
 * object's offset and size.  Must leave nothing visible on failure. */
typedef int (*shk_object_init_fn)(shk_segment *seg, void *arg, uint64_t *offset,
                                  uint64_t *size);

/* Find `name`; if absent and init != NULL, build it with init and record
 * it.  SHK_ETYPE if it exists with another type, SHK_ENOENT if absent and
 * init is NULL, SHK_EFULL if absent and the directory already holds
 * SHK_DIR_CAPACITY objects.  *created tells which happened (may be NULL). */
int shk_segment_object(shk_segment *seg, const char *name, uint32_t type,
                       shk_object_init_fn init, void *arg, uint64_t *offset, int *created);

/* Look an object up without creating it. */
int shk_segment_lookup(const shk_segment *seg, const char *name, shk_object_info *info);

/* Number of objects and the i-th one (0 <= i < count). */
uint32_t shk_segment_object_count(const shk_segment *seg);
int shk_segment_object_at(const shk_segment *seg, uint32_t i, shk_object_info *info);

/* Creator and timing facts, for `shmkit ls`. */
typedef struct shk_segment_info {
    uint64_t file_size, max_size, heap_used, heap_free;
    int64_t creator_pid;
    uint64_t creator_start_ticks; /* /proc/PID/stat field 22 */
    uint64_t created_unix_ns;
    uint32_t version, object_count;
    shk_segment_owner owner; /* of the file now (fstat) */
} shk_segment_info;
int shk_segment_info_get(shk_segment *seg, shk_segment_info *info);

/* Validate a whole header held in `buf` of `len` bytes (the first bytes of
 * a file that claims to be a segment).  SHK_OK or SHK_ECORRUPT, never reads
 * outside buf.  Used by attach and by the fuzzers. */
int shk_segment_validate_header(const void *buf, size_t len, uint64_t file_bytes);

#ifdef __cplusplus
}
#endif
#endif
