/*
 * mapping.c -- a process's mapping of a segment file, and the file's growth.
 * The lowest layer of a segment: the heap (alloc_freelist.c) grows the file
 * through it, and the segment (segment.c) maps and unmaps it; it calls
 * neither.
 *
 * DESIGN
 *   A segment is one POSIX shm object.  Every process maps `max_size` bytes
 *   of it once (MAP_SHARED | MAP_NORESERVE), even though the file behind it is
 *   smaller: Linux allows a shared mapping longer than its file, pages past
 *   end-of-file fault with SIGBUS only if touched.  Growth is therefore one
 *   posix_fallocate() on the file by whichever process needs room; every other
 *   process already has the new bytes mapped at the same place.  Nothing ever
 *   moves, so offsets and zero-copy views stay valid for a mapping's life.
 *
 *   posix_fallocate (not ftruncate) is what makes this safe: it reserves the
 *   tmpfs pages up front, so a full /dev/shm is an ENOSPC we report as
 *   SHK_ENOMEM instead of a SIGBUS on first touch.  The heap never hands out
 *   an offset beyond the file size, so no process touches unbacked pages.
 *
 *   The file size every process reads is a shared record (file_size, in
 *   the segment header).  Anything in shared memory may be forged, so a
 *   process believes it only as far as it has seen the file reach with
 *   fstat (`verified`): a record claiming more costs one fstat, and can
 *   never turn into a read past end-of-file (SIGBUS) or past the mapping
 *   (SIGSEGV).
 *
 * INVARIANTS
 *   - file_size only grows, only under grow_lock, and only after the bytes
 *     are allocated in the file (release store; readers acquire).
 *   - verified <= max_size, and <= the file's real size when it was read.
 *   - Every size this layer answers is <= min(file_size, verified).
 */
#include "mapping.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GROW_STEP_MAX (256ull << 20)
#define GROW_ROUND (1ull << 20)

int shk_mapping_open(shk_mapping *m, int fd, uint64_t max_size, uint64_t floor,
                     uint64_t file_bytes)
{
    char *base = mmap(NULL, max_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                      0);
    /* Settle for less address space when the process has a limit (ulimit
     * -v gives ENOMEM, valgrind EINVAL): halve down to `floor`. */
    while (base == MAP_FAILED && (errno == ENOMEM || errno == EINVAL) && floor &&
           max_size / 2 >= floor) {
        max_size = shk_align_up(max_size / 2, 4096);
        base = mmap(NULL, max_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    }
    if (base == MAP_FAILED)
        return SHK_ESYS;
    m->base = base;
    m->fd = fd;
    m->max_size = max_size;
    atomic_init(&m->verified, file_bytes < max_size ? file_bytes : max_size);
    m->file_size = NULL;
    m->grow_lock = NULL;
    return SHK_OK;
}

void shk_mapping_bind(shk_mapping *m, _Atomic uint64_t *file_size, shk_mutex *grow_lock)
{
    m->file_size = file_size;
    m->grow_lock = grow_lock;
}

void shk_mapping_close(shk_mapping *m)
{
    munmap(m->base, m->max_size);
    close(m->fd);
}

/* The real size of the file, capped at the mapping; remembered as the new
 * verified bound.  0 if fstat fails (nothing is believed backed then). */
static uint64_t refresh_verified(const shk_mapping *m)
{
    struct stat st;
    uint64_t v = 0;
    if (fstat(m->fd, &st) == 0 && st.st_size > 0)
        v = (uint64_t)st.st_size < m->max_size ? (uint64_t)st.st_size : m->max_size;
    shk_mapping *w = (shk_mapping *)m;
    SHK_A(atomic_store_explicit(&w->verified, v, memory_order_relaxed));
    return v;
}

/* A shared file_size beyond the verified bound: the file may really have
 * grown (another process grew it), or the record is forged. */
uint64_t shk_mapping_file_size_slow(const shk_mapping *m, uint64_t fs)
{
    uint64_t v = refresh_verified(m);
    return fs < v ? fs : v;
}

int shk_mapping_contains(const shk_mapping *m, uint64_t off, uint64_t len)
{
    return shk_add_sat(off, len) <= shk_mapping_file_size(m);
}

int shk_mapping_reserve(shk_mapping *m, uint64_t min_size)
{
    if (SHK_LIKELY(min_size <= shk_mapping_file_size(m)))
        return SHK_OK;
    if (min_size > m->max_size)
        return SHK_ENOMEM;
    int lk = shk_mutex_lock(m->grow_lock);
    if (lk < 0)
        return lk;
    if (lk == SHK_MUTEX_RECOVERED) {
        /* The holder died inside growth.  Either it allocated the bytes and
         * did not publish file_size (harmless: we grow again below, and
         * fallocate of allocated bytes is a no-op) or it did nothing.  The
         * published file_size is always backed, so nothing to repair. */
        shk_mutex_consistent(m->grow_lock);
    }
    /* The bytes really backed: a shared file_size that claims more than the
     * file holds is lowered here, by growing from what exists. */
    uint64_t cur = shk_mapping_file_size(m);
    int rc = SHK_OK;
    if (cur < min_size) {
        uint64_t step = cur < GROW_STEP_MAX ? cur : GROW_STEP_MAX;
        uint64_t want = cur + step;
        if (want < min_size)
            want = min_size;
        want = shk_align_up(want, GROW_ROUND);
        if (want > m->max_size)
            want = m->max_size;
        int e = posix_fallocate(m->fd, (off_t)cur, (off_t)(want - cur));
        SHK_CRASH_POINT("segment.grow");
        if (e != 0 && want > min_size) {
            /* Not enough for the geometric step: try the bare minimum. */
            want = shk_align_up(min_size, 4096);
            e = posix_fallocate(m->fd, (off_t)cur, (off_t)(want - cur));
        }
        if (e == 0) {
            /* release: bytes below file_size are backed before anyone can
             * see the new value. */
            SHK_A(atomic_store_explicit(m->file_size, want, memory_order_release));
            refresh_verified(m);
        } else
            rc = (e == ENOSPC || e == EFBIG) ? SHK_ENOMEM : (errno = e, SHK_ESYS);
    }
    shk_mutex_unlock(m->grow_lock);
    return rc;
}
