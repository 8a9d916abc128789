/*
 * segment.c -- named shared-memory segments that grow without moving.
 *
 * DESIGN
 *   A segment is one POSIX shm object, mapped once per process at its
 *   largest size and grown in place, never moved (mapping.c: the mapping
 *   and the file's growth).  segment.c puts the header and the object
 *   directory at its start and embeds the segment heap (alloc_freelist.c)
 *   after them.  The layers, bottom up: mapping.c, alloc_freelist.c (grows
 *   the file through the mapping), segment.c; none calls a layer above it.
 *
 *   We chose one growing file over chained extents (name, name.1, ...) because it needs
 *   no per-access extent lookup and keeps one name per segment for
 *   `shmkit ls` and `rm`.  The cost is virtual address space: max_size per
 *   mapping (64 GiB by default, 2^47 available), and a 64 GiB ceiling
 *   that comes from the 32-bit (16-byte unit) offsets in tagged words.
 *
 * LAYOUT (offsets in bytes)
 *
 *   0      +--------------------------------------------------+
 *          | seg_header: magic "SHMKIT\x1a\x01", layout version, |
 *          |   header size, state (INIT -> READY), max_size,     |
 *          |   file_size (atomic), hash seed, creator pid and     |
 *          |   start time, creation time, heap offset            |
 *   128    | grow_lock  (robust mutex: file growth)             |
 *   192    | dir_lock   (robust mutex: directory insertions)    |
 *   256    | dir[64]    name -> (type, offset, size), 96 B each  |
 *   8192   +--------------------------------------------------+
 *          | the segment heap's header (alloc_freelist.c)       |
 *   data   +--------------------------------------------------+
 *          | heap blocks: every object and value lives here     |
 *          |   ...                                              |
 *   file_size (backed) ............. max_size (mapped, unbacked)
 *
 * OWNERSHIP
 *   Names are predictable and /dev/shm is writable by every user, so a file
 *   under a segment's name may be someone else's.  Creation is O_CREAT |
 *   O_EXCL plus fchmod to exactly the mode asked; every attach fstat()s the
 *   opened descriptor and applies the caller's trust (enum shk_trust in
 *   segment.h: by default only a file of our euid that no one else may
 *   write) before reading a byte of it.
 *
 * INVARIANTS
 *   - file_size and grow_lock are the mapping's (mapping.c: INVARIANTS).
 *   - A directory entry becomes visible by the release store of its `type`
 *     after every other field is written; dir_count is bumped after that.
 *     Readers need no lock.  Entries are never removed.
 *   - state is stored READY (release) last of all at creation.
 */
#include "internal.h"
#include "heap_internal.h"
#include "mapping.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_MAGIC 0x011a54494b4d4853ull /* "SHMKIT\x1a\x01" little-endian */
#define SEG_LAYOUT_VERSION 1u
#define SEG_HEADER_SIZE 8192u
#define SEG_STATE_INIT 0u
#define SEG_STATE_READY 0x52454459u /* "READY" */

typedef struct dir_entry {
    char name[SHK_OBJECT_NAME_MAX + 1];
    _Atomic uint32_t type; /* 0 = unused; stored last (release) */
    uint32_t reserved;
    uint64_t offset;
    uint64_t size;
    uint64_t reserved2;
} dir_entry;
SHK_STATIC_ASSERT(sizeof(dir_entry) == 96, "dir entry is 96 bytes");

typedef struct seg_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    _Atomic uint32_t state;
    uint32_t dir_capacity;
    uint64_t max_size;
    _Atomic uint64_t file_size;
    uint64_t hash_seed;
    int64_t creator_pid;
    uint64_t creator_start;
    uint64_t created_ns;
    uint64_t heap_off;
    uint64_t data_start;
    _Atomic uint32_t dir_count;
    uint32_t reserved[9];
    shk_mutex grow_lock;             /* offset 128 */
    shk_mutex dir_lock;              /* offset 192 */
    dir_entry dir[SHK_DIR_CAPACITY]; /* offset 256 */
} seg_header;
SHK_STATIC_ASSERT(offsetof(seg_header, grow_lock) == 128, "layout");
SHK_STATIC_ASSERT(sizeof(seg_header) <= SEG_HEADER_SIZE, "header fits");

struct shk_segment {
    shk_mapping map; /* base, fd, max_size, file size */
    _Atomic int refs;
    shk_freelist *heap;
    char name[SHK_SEGMENT_NAME_MAX + 2]; /* with the leading '/' */
};

static inline seg_header *hdr(const shk_segment *seg) { return (seg_header *)seg->map.base; }

static uint64_t data_start_offset(void)
{
    return shk_align_up(SEG_HEADER_SIZE + shk_freelist_header_size(), 4096);
}

/* ---------------------------------------------------------------- names */

int shk_segment_name_valid(const char *name)
{
    if (!name)
        return 0;
    if (name[0] == '/')
        name++;
    size_t n = strlen(name);
    if (n == 0 || n > SHK_SEGMENT_NAME_MAX)
        return 0;
    if (strchr(name, '/'))
        return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    return 1;
}

static void shm_path(char *out, const char *name)
{
    out[0] = '/';
    strcpy(out + 1, name[0] == '/' ? name + 1 : name);
}

/* ------------------------------------------------------------ validation */

static int entry_valid(const dir_entry *e, uint64_t data_start, uint64_t file_size)
{
    uint32_t t = SHK_A(atomic_load_explicit(&e->type, memory_order_relaxed));
    if (t == 0)
        return 1;
    if (t >= SHK_TYPE_MAX_)
        return 0;
    if (memchr(e->name, 0, sizeof e->name) == NULL || e->name[0] == 0)
        return 0;
    if (e->offset < data_start || shk_add_sat(e->offset, e->size) > file_size)
        return 0;
    return 1;
}

int shk_segment_validate_header(const void *buf, size_t len, uint64_t file_bytes)
{
    const seg_header *h = buf;
    uint64_t ds = data_start_offset();
    if (len < sizeof(seg_header))
        return SHK_ECORRUPT;
    if (h->magic != SEG_MAGIC || h->version != SEG_LAYOUT_VERSION ||
        h->header_size != SEG_HEADER_SIZE || h->dir_capacity != SHK_DIR_CAPACITY)
        return SHK_ECORRUPT;
    if (SHK_A(atomic_load_explicit(&h->state, memory_order_acquire)) != SEG_STATE_READY)
        return SHK_ECORRUPT;
    uint64_t fs = SHK_A(atomic_load_explicit(&h->file_size, memory_order_acquire));
    if (h->max_size < ds || h->max_size > SHK_MAX_MAX_SIZE || h->max_size % 4096 != 0)
        return SHK_ECORRUPT;
    if (fs < ds || fs > h->max_size || fs > file_bytes)
        return SHK_ECORRUPT;
    if (h->heap_off != SEG_HEADER_SIZE || h->data_start != ds)
        return SHK_ECORRUPT;
    uint32_t n = SHK_A(atomic_load_explicit(&h->dir_count, memory_order_acquire));
    if (n > SHK_DIR_CAPACITY)
        return SHK_ECORRUPT;
    for (uint32_t i = 0; i < SHK_DIR_CAPACITY; i++)
        if (!entry_valid(&h->dir[i], ds, fs))
            return SHK_ECORRUPT;
    if (len < ds)
        return SHK_ECORRUPT;
    return shk_freelist_validate_at((const char *)buf, h->heap_off, ds, fs, h->max_size, NULL);
}

/* ------------------------------------------------------------------ trust */

/* Is gid this process's effective gid or one of its supplementary groups? */
static int in_our_groups(gid_t gid)
{
    if (gid == getegid())
        return 1;
    gid_t small[64], *groups = small;
    int n = getgroups(64, small);
    if (n < 0 && errno == EINVAL) { /* more than 64: ask for the count */
        int want = getgroups(0, NULL);
        groups = want > 0 ? malloc((size_t)want * sizeof *groups) : NULL;
        n = groups ? getgroups(want, groups) : -1;
    }
    int found = 0;
    for (int i = 0; i < n && !found; i++)
        found = groups[i] == gid;
    if (groups != small)
        free(groups);
    return found;
}

static int trust_valid(int trust)
{
    return trust == SHK_TRUST_OWNER || trust == SHK_TRUST_GROUP || trust == SHK_TRUST_ANY;
}

int shk_segment_trust_check(const shk_segment_owner *o, int trust)
{
    if (!trust_valid(trust))
        return SHK_EINVAL;
    if (trust == SHK_TRUST_ANY)
        return SHK_OK;
    if (o->uid == (uint32_t)geteuid() && (o->mode & 0022) == 0)
        return SHK_OK;
    if (trust == SHK_TRUST_GROUP && (o->mode & 0002) == 0 && in_our_groups((gid_t)o->gid))
        return SHK_OK;
    return SHK_EFOREIGN;
}

static void owner_of(const struct stat *st, shk_segment_owner *o)
{
    o->uid = (uint32_t)st->st_uid;
    o->gid = (uint32_t)st->st_gid;
    o->mode = (uint32_t)(st->st_mode & 07777);
}

/* The check of an attach, on the descriptor it will map. */
static int check_opened(int fd, int trust, shk_segment_owner *owner)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return SHK_ESYS;
    if (!S_ISREG(st.st_mode))
        return SHK_ECORRUPT;
    shk_segment_owner o;
    owner_of(&st, &o);
    if (owner)
        *owner = o;
    return shk_segment_trust_check(&o, trust);
}

/* --------------------------------------------------------- create/attach */

/* The reservation of a segment created without an explicit max_size:
 * SHK_DEFAULT_MAX_SIZE, or the SHMKIT_MAX_SIZE environment variable (bytes,
 * with an optional K/M/G suffix), for hosts that limit address space. */
static uint64_t default_max_size(void)
{
    const char *v = getenv("SHMKIT_MAX_SIZE");
    if (!v || !*v)
        return SHK_DEFAULT_MAX_SIZE;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    int shift = *end == 'K' || *end == 'k'   ? 10
                : *end == 'M' || *end == 'm' ? 20
                : *end == 'G' || *end == 'g' ? 30
                                             : 0;
    if (n == 0 || n > (SHK_MAX_MAX_SIZE >> shift))
        return SHK_DEFAULT_MAX_SIZE;
    return (uint64_t)n << shift;
}

/* A handle on the shm file fd, mapped (shk_mapping_open: max_size, floor,
 * file_bytes) and owning fd; NULL with errno set, fd still the caller's. */
static shk_segment *handle_new(const char *path, int fd, uint64_t max_size, uint64_t floor,
                               uint64_t file_bytes)
{
    shk_segment *seg = calloc(1, sizeof *seg);
    if (!seg)
        return NULL;
    if (shk_mapping_open(&seg->map, fd, max_size, floor, file_bytes) != SHK_OK) {
        int saved = errno;
        free(seg);
        errno = saved;
        return NULL;
    }
    seg_header *h = hdr(seg);
    shk_mapping_bind(&seg->map, &h->file_size, &h->grow_lock);
    atomic_init(&seg->refs, 1);
    snprintf(seg->name, sizeof seg->name, "%s", path);
    return seg;
}

static void handle_free(shk_segment *seg)
{
    shk_mapping_close(&seg->map);
    free(seg);
}

static int open_heap(shk_segment *seg)
{
    return shk_freelist_open_at(&seg->map, hdr(seg)->heap_off, seg, &seg->heap);
}

int shk_segment_create(const char *name, uint64_t size, uint64_t max_size, mode_t mode,
                       shk_segment **out)
{
    shk_crash_init();
    if (!shk_segment_name_valid(name))
        return SHK_EINVAL;
    uint64_t ds = data_start_offset();
    int default_max = max_size == 0;
    if (default_max)
        max_size = default_max_size();
    if (size == 0)
        size = SHK_DEFAULT_SIZE;
    size = shk_align_up(size < ds + 4096 ? ds + 4096 : size, 4096);
    max_size = shk_align_up(max_size, 4096);
    if (max_size > SHK_MAX_MAX_SIZE || size > max_size)
        return SHK_EINVAL;

    char path[SHK_SEGMENT_NAME_MAX + 2];
    shm_path(path, name);
    int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode & 0777);
    if (fd < 0)
        return errno == EEXIST ? SHK_EEXIST : SHK_ESYS;
    int saved;
    /* shm_open applies the umask; set exactly the mode that was asked. */
    if (fchmod(fd, mode & 0777) != 0)
        goto fail_errno;
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0) {
        errno = rc;
        goto fail_errno;
    }
    /* With the default reservation, settle for less address space when the
     * process has a limit: down to `size`. */
    shk_segment *seg = handle_new(path, fd, max_size, default_max ? size : 0, size);
    if (!seg)
        goto fail_errno;
    char *base = seg->map.base;
    max_size = seg->map.max_size;

    seg_header *h = (seg_header *)base;
    h->magic = SEG_MAGIC;
    h->version = SEG_LAYOUT_VERSION;
    h->header_size = SEG_HEADER_SIZE;
    h->dir_capacity = SHK_DIR_CAPACITY;
    h->max_size = max_size;
    SHK_A(atomic_store_explicit(&h->file_size, size, memory_order_relaxed));
    if (getrandom(&h->hash_seed, sizeof h->hash_seed, 0) != sizeof h->hash_seed)
        h->hash_seed = (uint64_t)shk_now_ns() * 0x9E3779B97F4A7C15ull;
    h->creator_pid = (int64_t)getpid();
    /* with the creator's pid, names the creator even after pid reuse */
    uint64_t start = shk_proc_start(getpid());
    h->creator_start = start == SHK_START_UNKNOWN ? 0 : start;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    h->heap_off = SEG_HEADER_SIZE;
    h->data_start = ds;
    SHK_A(atomic_store_explicit(&h->dir_count, 0, memory_order_relaxed));
    if (shk_mutex_init(&h->grow_lock) != SHK_OK || shk_mutex_init(&h->dir_lock) != SHK_OK)
        goto fail_map;
    shk_freelist_init_at(base, h->heap_off, ds, max_size, 1);
    if (open_heap(seg) != SHK_OK)
        goto fail_map;
    /* release: an attacher that acquires READY sees the whole header. */
    SHK_A(atomic_store_explicit(&h->state, SEG_STATE_READY, memory_order_release));
    *out = seg;
    return SHK_OK;

fail_map:
    saved = errno;
    handle_free(seg); /* closes fd */
    shm_unlink(path);
    errno = saved;
    return errno == ENOSPC ? SHK_ENOMEM : SHK_ESYS;
fail_errno:
    saved = errno;
    close(fd);
    shm_unlink(path);
    errno = saved;
    return errno == ENOSPC ? SHK_ENOMEM : SHK_ESYS;
}

int shk_segment_attach(const char *name, shk_segment **out)
{
    return shk_segment_attach_ex(name, SHK_TRUST_OWNER, NULL, out);
}

int shk_segment_attach_ex(const char *name, int trust, shk_segment_owner *owner,
                          shk_segment **out)
{
    shk_crash_init();
    if (!shk_segment_name_valid(name) || !trust_valid(trust))
        return SHK_EINVAL;
    char path[SHK_SEGMENT_NAME_MAX + 2];
    shm_path(path, name);
    /* glibc's shm_open adds O_NOFOLLOW: a symlink planted under the name
     * is not followed. */
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? SHK_ENOENT : SHK_ESYS;
    /* Before reading a byte of it: whose file is this? */
    int trc = check_opened(fd, trust, owner);
    if (trc != SHK_OK) {
        close(fd);
        return trc;
    }

    uint64_t ds = data_start_offset();
    char *buf = malloc(ds), *prev = malloc(ds);
    if (!buf || !prev) {
        free(buf);
        free(prev);
        close(fd);
        return SHK_ESYS;
    }
    int rc = SHK_ECORRUPT;
    struct stat st;
    off_t prev_size = -1; /* -1: no failed copy in prev yet */
    /* A creator may still be initialising: its file can be empty or its
     * state INIT for a moment.  Give it up to 2 s, checking every 1 ms; a
     * futex cannot be used here because there may be no page to wait on
     * yet.  This path is taken only in that rare race.
     *
     * The copy of the header is also read while other processes change
     * it: one grows the file and then its recorded size, another carves
     * heap space below the new size, and pread copies neither at one
     * instant.  So a copy can fail validation without anything being
     * wrong (attaching while 4 processes wrote a dict failed 3 times in
     * 400).  A failure is believed only when two reads in a row saw the
     * same file size and the same bytes: corruption stays put, a writer
     * in mid-change does not. */
    for (int tries = 0; tries < 2000; tries++) {
        if (fstat(fd, &st) != 0) {
            rc = SHK_ESYS;
            break;
        }
        if ((uint64_t)st.st_size >= ds) {
            ssize_t got = pread(fd, buf, ds, 0);
            if (got != (ssize_t)ds) {
                rc = SHK_ECORRUPT;
                break;
            }
            const seg_header *h = (const seg_header *)buf;
            int initialising = h->magic == SEG_MAGIC &&
                               SHK_A(atomic_load_explicit(&h->state, memory_order_acquire)) ==
                                   SEG_STATE_INIT;
            rc = shk_segment_validate_header(buf, ds, (uint64_t)st.st_size);
            if (rc == SHK_OK)
                break;
            if (!initialising) {
                if (st.st_size == prev_size && memcmp(buf, prev, ds) == 0)
                    break; /* the same on two reads: really corrupt */
                memcpy(prev, buf, ds);
                prev_size = st.st_size;
                continue; /* read again at once */
            }
        } else if (st.st_size != 0) {
            rc = SHK_ECORRUPT; /* truncated: too short to hold a header */
            break;
        }
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    free(prev);
    uint64_t max_size = ((const seg_header *)buf)->max_size;
    free(buf);
    if (rc != SHK_OK) {
        close(fd);
        return rc;
    }
    shk_segment *seg = handle_new(path, fd, max_size, 0, (uint64_t)st.st_size);
    if (!seg) {
        close(fd);
        return SHK_ESYS;
    }
    if (open_heap(seg) != SHK_OK) {
        handle_free(seg);
        return SHK_ECORRUPT;
    }
    *out = seg;
    return SHK_OK;
}

int shk_segment_open(const char *name, uint64_t size, uint64_t max_size, mode_t mode,
                     shk_segment **out, int *created)
{
    return shk_segment_open_ex(name, size, max_size, mode, SHK_TRUST_OWNER, NULL, out, created);
}

int shk_segment_open_ex(const char *name, uint64_t size, uint64_t max_size, mode_t mode,
                        int trust, shk_segment_owner *owner, shk_segment **out, int *created)
{
    /* Alternate until one wins: another process may create or unlink the
     * name between our two calls. */
    for (int i = 0; i < 100; i++) {
        int rc = shk_segment_attach_ex(name, trust, owner, out);
        if (rc != SHK_ENOENT) {
            if (created && rc == SHK_OK)
                *created = 0;
            return rc;
        }
        rc = shk_segment_create(name, size, max_size, mode, out);
        if (rc != SHK_EEXIST) {
            if (created && rc == SHK_OK)
                *created = 1;
            return rc;
        }
    }
    return SHK_ESYS;
}

void shk_segment_retain(shk_segment *seg)
{
    /* relaxed: taking a reference needs no ordering, we already hold one. */
    SHK_A(atomic_fetch_add_explicit(&seg->refs, 1, memory_order_relaxed));
}

void shk_segment_close(shk_segment *seg)
{
    if (!seg)
        return;
    /* acq_rel: the last releaser must see every other holder's accesses
     * finished before it unmaps. */
    if (SHK_A(atomic_fetch_sub_explicit(&seg->refs, 1, memory_order_acq_rel)) != 1)
        return;
    shk_freelist_drop(seg->heap);
    handle_free(seg);
}

int shk_segment_unlink(const char *name)
{
    if (!shk_segment_name_valid(name))
        return SHK_EINVAL;
    char path[SHK_SEGMENT_NAME_MAX + 2];
    shm_path(path, name);
    if (shm_unlink(path) != 0)
        return errno == ENOENT ? SHK_ENOENT : SHK_ESYS;
    return SHK_OK;
}

/* -------------------------------------------------------------- accessors */

char *shk_segment_base(const shk_segment *seg) { return seg->map.base; }
const char *shk_segment_name(const shk_segment *seg) { return seg->name + 1; }
uint64_t shk_segment_max_size(const shk_segment *seg) { return seg->map.max_size; }
uint64_t shk_segment_hash_seed(const shk_segment *seg) { return hdr(seg)->hash_seed; }
shk_freelist *shk_segment_heap(shk_segment *seg) { return seg->heap; }
shk_mapping *shk_segment_mapping(shk_segment *seg) { return &seg->map; }

uint64_t shk_segment_file_size(const shk_segment *seg)
{
    return shk_mapping_file_size(&seg->map);
}

int shk_segment_contains(const shk_segment *seg, uint64_t off, uint64_t len)
{
    return shk_mapping_contains(&seg->map, off, len);
}

/* Everything of the segment itself that a scribble could damage and a
 * lock or a walk would trust: its two robust mutexes (each taken once, as
 * growth and directory insertions take them: a dead holder's lock needs no
 * repair, a word that cannot be a mutex is SHK_ECORRUPT), then its heap. */
int shk_segment_check(shk_segment *seg)
{
    seg_header *h = hdr(seg);
    shk_mutex *locks[2] = {&h->grow_lock, &h->dir_lock};
    for (int i = 0; i < 2; i++) {
        int lk = shk_mutex_lock(locks[i]);
        if (lk < 0)
            return lk;
        if (lk == SHK_MUTEX_RECOVERED)
            shk_mutex_consistent(locks[i]);
        shk_mutex_unlock(locks[i]);
    }
    /* the heap blocks dead processes' caches held go back to its lists */
    int rc = shk_freelist_reclaim(seg->heap, NULL);
    return rc != SHK_OK ? rc : shk_freelist_check(seg->heap, NULL);
}

/* ----------------------------------------------------------------- growth */

int shk_segment_reserve(shk_segment *seg, uint64_t min_size)
{
    return shk_mapping_reserve(&seg->map, min_size);
}

/* -------------------------------------------------------------- directory */

static int object_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n >= 1 && n <= SHK_OBJECT_NAME_MAX;
}

static int find_entry(const seg_header *h, const char *name, uint64_t fs, shk_object_info *info)
{
    /* acquire: pairs with the release store of dir_count/type by the
     * inserter, so a visible entry is complete. */
    uint32_t n = SHK_A(atomic_load_explicit(&h->dir_count, memory_order_acquire));
    if (n > SHK_DIR_CAPACITY)
        return SHK_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        const dir_entry *e = &h->dir[i];
        uint32_t t = SHK_A(atomic_load_explicit(&e->type, memory_order_acquire));
        if (t == 0 || strncmp(e->name, name, sizeof e->name) != 0)
            continue;
        if (!entry_valid(e, h->data_start, fs))
            return SHK_ECORRUPT;
        if (info) {
            memcpy(info->name, e->name, sizeof info->name);
            info->name[SHK_OBJECT_NAME_MAX] = 0;
            info->type = t;
            info->offset = e->offset;
            info->size = e->size;
        }
        return SHK_OK;
    }
    return SHK_ENOENT;
}

int shk_segment_lookup(const shk_segment *seg, const char *name, shk_object_info *info)
{
    if (!object_name_valid(name))
        return SHK_EINVAL;
    return find_entry(hdr(seg), name, shk_segment_file_size(seg), info);
}

int shk_segment_object(shk_segment *seg, const char *name, uint32_t type,
                       shk_object_init_fn init, void *arg, uint64_t *offset, int *created)
{
    if (!object_name_valid(name) || type == 0 || type >= SHK_TYPE_MAX_)
        return SHK_EINVAL;
    seg_header *h = hdr(seg);
    shk_object_info info;
    int rc = shk_segment_lookup(seg, name, &info);
    if (rc == SHK_ENOENT && init) {
        int lk = shk_mutex_lock(&h->dir_lock);
        if (lk < 0)
            return lk;
        if (lk == SHK_MUTEX_RECOVERED)
            /* A dead inserter left at most an entry whose type was never
             * stored (invisible) and a leaked heap block.  Nothing to fix. */
            shk_mutex_consistent(&h->dir_lock);
        rc = shk_segment_lookup(seg, name, &info);
        if (rc == SHK_ENOENT) {
            uint32_t n = SHK_A(atomic_load_explicit(&h->dir_count, memory_order_relaxed));
            if (n >= SHK_DIR_CAPACITY) {
                rc = SHK_EFULL;
            } else {
                uint64_t off = 0, size = 0;
                rc = init(seg, arg, &off, &size);
                SHK_CRASH_POINT("segment.object");
                if (rc == SHK_OK) {
                    dir_entry *e = &h->dir[n];
                    memset(e->name, 0, sizeof e->name);
                    memcpy(e->name, name, strlen(name));
                    e->offset = off;
                    e->size = size;
                    /* release: publishes name/offset/size with the type. */
                    SHK_A(atomic_store_explicit(&e->type, type, memory_order_release));
                    SHK_A(atomic_store_explicit(&h->dir_count, n + 1, memory_order_release));
                    if (created)
                        *created = 1;
                    *offset = off;
                }
            }
            shk_mutex_unlock(&h->dir_lock);
            return rc;
        }
        shk_mutex_unlock(&h->dir_lock);
    }
    if (rc != SHK_OK)
        return rc;
    if (info.type != type)
        return SHK_ETYPE;
    if (created)
        *created = 0;
    *offset = info.offset;
    return SHK_OK;
}

uint32_t shk_segment_object_count(const shk_segment *seg)
{
    uint32_t n = SHK_A(atomic_load_explicit(&hdr(seg)->dir_count, memory_order_acquire));
    return n > SHK_DIR_CAPACITY ? SHK_DIR_CAPACITY : n;
}

int shk_segment_object_at(const shk_segment *seg, uint32_t i, shk_object_info *info)
{
    if (i >= shk_segment_object_count(seg))
        return SHK_EINVAL;
    const dir_entry *e = &hdr(seg)->dir[i];
    uint32_t t = SHK_A(atomic_load_explicit(&e->type, memory_order_acquire));
    if (t == 0)
        return SHK_ENOENT;
    if (!entry_valid(e, hdr(seg)->data_start, shk_segment_file_size(seg)))
        return SHK_ECORRUPT;
    memcpy(info->name, e->name, sizeof info->name);
    info->name[SHK_OBJECT_NAME_MAX] = 0;
    info->type = t;
    info->offset = e->offset;
    info->size = e->size;
    return SHK_OK;
}

int shk_segment_info_get(shk_segment *seg, shk_segment_info *info)
{
    const seg_header *h = hdr(seg);
    memset(info, 0, sizeof *info);
    info->file_size = shk_segment_file_size(seg);
    info->max_size = seg->map.max_size;
    info->creator_pid = h->creator_pid;
    info->creator_start_ticks = h->creator_start;
    info->created_unix_ns = h->created_ns;
    info->version = h->version;
    info->object_count = shk_segment_object_count(seg);
    uint64_t avail = shk_freelist_available(seg->heap);
    uint64_t cap = shk_freelist_capacity(seg->heap);
    info->heap_free = avail;
    info->heap_used = cap > avail ? cap - avail : 0;
    struct stat st;
    if (fstat(seg->map.fd, &st) != 0)
        return SHK_ESYS;
    owner_of(&st, &info->owner);
    return SHK_OK;
}
