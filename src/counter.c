/*
 * counter.c -- a sharded counter in shared memory.
 *
 * DESIGN
 *   One shared integer that many processes increment is the slowest thing
 *   a multicore machine does: every fetch_add moves the cache line to the
 *   adding core, so N adders queue on one line and the total rate stays
 *   flat (or falls) as N grows.  A sharded counter gives each process a
 *   cell of its own, on its own cache line(s): an add is one uncontended
 *   fetch_add on a line that stays in the adder's cache, so the rate grows
 *   with the cores.  Reading sums every cell, which costs one line per cell
 *   (~256 lines by default): reads are meant to be rare next to adds.
 *
 *   Exactness never depends on a cell being private.  Every add, to any
 *   cell, is one atomic fetch_add, so two processes sharing a cell (all
 *   cells taken, a pid reused, a pid namespace the owner check cannot see
 *   into) are merely slower, never wrong.  Ownership is a performance hint
 *   only; that is what makes the rest simple and safe under SIGKILL.
 *
 *   Claiming.  At the first add of a process (per handle), the handle
 *   probes the cells linearly from hash(pid): a cell it already owns (the
 *   owner word is its pid: another handle of the same process claimed it)
 *   is taken as is; a free one (owner 0) is claimed with a CAS 0 -> pid; a
 *   cell whose owner is dead (kill(owner, 0) fails with ESRCH) is reclaimed
 *   with a CAS owner -> pid, and its value stays where it is, still counted:
 *   the dead process's adds are part of the total, and the new owner adds
 *   on top.  If every cell has a live owner, the handle uses cell
 *   hash(pid) without owning it (shared, still exact).  A process never
 *   frees its cell: cells go 0 -> pid -> (death) -> pid', so a cell before
 *   ours on our probe path stays taken and the probe finds ours again.
 *
 *   Fork.  A forked child inherits the handle and its cell index; adding
 *   there would share the parent's cell (exact, but contended).  The handle
 *   remembers the fork generation (shk_fork_gen(), bumped in every child by
 *   a pthread_atfork handler) it claimed in; a child sees another
 *   generation and claims a cell of its own before its first add.
 *
 *   Memory order.  add() is a relaxed fetch_add.  Relaxed is enough: the
 *   RMW is atomic whatever the order (no add lost), and a counter publishes
 *   nothing but its own value, so no other memory needs ordering with it.
 *   value() reads each cell relaxed: the sum is exact when every add
 *   happened-before the read by some other synchronisation (join, waitpid,
 *   a lock, an acquire flag), which coherence then guarantees; with adds in
 *   flight each cell is read at its own instant, so the sum is the
 *   committed adds plus a subset of those in flight (for a counter that
 *   only grows: between the value before and after the read).  Users who
 *   hand data over through a counter need acquire/release and should use
 *   an Array element instead.  reset() exchanges each cell with 0 (relaxed,
 *   for the same reason): each add lands before the exchange (in the total
 *   returned) or after it (still in the counter), never lost.
 *
 *   Claim CASes are acq_rel/acquire only to keep the owner word's history
 *   simple to reason about; they run once per process, so it costs nothing.
 *
 * LAYOUT (a single heap block; `off` = offset of the header)
 *
 *   off +0   +---------------------------------------------+
 *            | magic "SHKCNTR\x01"      u64                 |
 *            | version u32 | header_size u32 (= 64)         |
 *            | ncells    u64 (power of two, <= 65536)       |
 *            | cell_size u64 (= 128)                        |
 *            | cells     u64 = align_up(off + 64, 128)      |
 *            | reserved x3                                  |
 *   off +64  +---------------------------------------------+
 *            | padding up to the 128-byte boundary          |
 *   cells    +---------------------------------------------+
 *            | cell[0]: value  _Atomic int64                |
 *            |          owner  _Atomic uint64 (pid, 0=free) |
 *            |          padding to 128 bytes                |
 *            +---------------------------------------------+
 *            | cell[1] ...                   cell[ncells-1] |
 *            +---------------------------------------------+
 *
 *   A cell is two cache lines, not one: Intel's adjacent-line prefetcher
 *   pulls 128-byte pairs, so two adders on neighbouring 64-byte lines would
 *   still trade lines.
 *
 * INVARIANTS
 *   - The header is immutable after creation (written before the directory
 *     entry that makes it reachable is published with release order).
 *   - Header and cells lie inside one live block of the segment heap, which
 *     open() verifies, so a corrupt directory entry cannot make a handle
 *     read or write outside the object.
 *   - An owner word is 0 or a pid (1 .. SHK_COUNTER_PID_MAX).  Anything
 *     else is corruption: check() reports it, and a claim never passes such
 *     a value to kill() (kill(-1, 0) would name every process).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CT_MAGIC 0x0152544e434b4853ull /* "SHKCNTR\x01" little-endian */
#define CT_VERSION 1u
#define CT_HEADER 64u
#define CT_CELL 128u
/* Largest pid Linux hands out (PID_MAX_LIMIT on 64-bit kernels). */
#define SHK_COUNTER_PID_MAX (4u << 20)

typedef struct ct_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t ncells;
    uint64_t cell_size;
    uint64_t cells; /* segment offset of cell 0 */
    uint64_t reserved[3];
} ct_shared;
SHK_STATIC_ASSERT(sizeof(ct_shared) == CT_HEADER, "counter header is 64 B");

typedef struct ct_cell {
    _Atomic int64_t value;
    _Atomic uint64_t owner;
    char pad[CT_CELL - 16];
} ct_cell;
SHK_STATIC_ASSERT(sizeof(ct_cell) == CT_CELL, "a cell is 128 B");

/* A handle's cell: (fork generation << 32) | (index + 1); 0 = none yet,
 * and index + 1 == 0 with the SHARED flag means "hashed, not owned". */
#define CT_SHARED (1ull << 31)

struct shk_counter {
    ct_cell *cells; /* cell 0 (process-local pointer) */
    uint32_t ncells;
    uint32_t mask;
    uint64_t off;
    shk_segment *seg; /* retained */
    /* Handle-local, but threads may share the handle: atomic so that a
     * racing first add of two threads is defined (each claims; the later
     * store wins; both cells are ours and counted). */
    _Atomic uint64_t slot;
};

/* ------------------------------------------------------------- helpers */

static uint64_t cells_offset(uint64_t off) { return shk_align_up(off + CT_HEADER, CT_CELL); }

/* Bytes of the block from the header to the end of the last cell. */
static uint64_t object_bytes(uint64_t off, uint64_t ncells)
{
    return cells_offset(off) - off + ncells * CT_CELL;
}

static int ncells_valid(uint64_t n)
{
    return n >= 1 && n <= SHK_COUNTER_MAX_CELLS && (n & (n - 1)) == 0;
}

static uint32_t pid_hash(uint64_t pid)
{
    pid *= 0x9e3779b97f4a7c15ull; /* Fibonacci hashing: spreads neighbours */
    return (uint32_t)(pid >> 32);
}

/* 1 if `owner` names a process that no longer exists. */
static int owner_dead(uint64_t owner)
{
    if (owner == 0 || owner > SHK_COUNTER_PID_MAX)
        return 0; /* free, or garbage: never passed to kill */
    return !shk_pid_exists((pid_t)owner);
}

/* ----------------------------------------------------- create and open */

size_t shk_counter_header_size(void) { return CT_HEADER; }

int shk_counter_create_in(shk_segment *seg, uint32_t ncells, uint64_t *off)
{
    if (ncells == 0)
        ncells = SHK_COUNTER_DEFAULT_CELLS;
    if (!ncells_valid(ncells))
        return SHK_EINVAL;
    /* The block is 16-aligned; the cells start at the next 128-byte
     * boundary after the header, at most 64 + 112 bytes in. */
    uint64_t blk;
    int rc = shk_freelist_alloc(shk_segment_heap(seg),
                                CT_HEADER + CT_CELL - 16 + (uint64_t)ncells * CT_CELL, &blk);
    if (rc != SHK_OK)
        return rc;
    char *base = shk_segment_base(seg);
    ct_shared *sh = (ct_shared *)(base + blk);
    memset(sh, 0, sizeof *sh);
    sh->magic = CT_MAGIC;
    sh->version = CT_VERSION;
    sh->header_size = CT_HEADER;
    sh->ncells = ncells;
    sh->cell_size = CT_CELL;
    sh->cells = cells_offset(blk);
    /* Recycled memory: every cell starts at value 0 with no owner.  Plain
     * memset: nobody reaches the cells before our caller publishes the
     * directory entry (release). */
    memset(base + sh->cells, 0, (uint64_t)ncells * CT_CELL);
    *off = blk;
    return SHK_OK;
}

int shk_counter_validate_header(const void *buf, size_t len, uint64_t off, uint64_t file_size)
{
    if (len < sizeof(ct_shared))
        return SHK_ECORRUPT;
    ct_shared h;
    memcpy(&h, buf, sizeof h); /* buf may be unaligned (fuzzers) */
    if (h.magic != CT_MAGIC || h.version != CT_VERSION || h.header_size != CT_HEADER ||
        h.cell_size != CT_CELL)
        return SHK_ECORRUPT;
    if (!ncells_valid(h.ncells))
        return SHK_ECORRUPT;
    if (off % SHK_ALIGN || off > file_size || h.cells != cells_offset(off))
        return SHK_ECORRUPT;
    /* ncells <= 2^16, so ncells * 128 cannot wrap. */
    if (shk_add_sat(h.cells, h.ncells * CT_CELL) > file_size)
        return SHK_ECORRUPT;
    return SHK_OK;
}

static uint64_t header_object_bytes(const void *hdr, uint64_t off)
{
    return object_bytes(off, ((const ct_shared *)hdr)->ncells);
}

/* Validate the header at `off` and that header and cells lie in one live
 * heap block; *ncells gets the cell count. */
static int validate_at(shk_segment *seg, uint64_t off, uint64_t *ncells)
{
    ct_shared h;
    int rc = shk_object_header(seg, off, &h, sizeof h, shk_counter_validate_header,
                               header_object_bytes);
    if (rc == SHK_OK)
        *ncells = h.ncells;
    return rc;
}

int shk_counter_open(shk_segment *seg, uint64_t off, shk_counter **out)
{
    uint64_t n;
    int rc = validate_at(seg, off, &n);
    if (rc != SHK_OK)
        return rc;
    shk_counter *c = calloc(1, sizeof *c);
    if (!c)
        return SHK_ESYS;
    shk_fork_watch();
    c->cells = (ct_cell *)(shk_segment_base(seg) + cells_offset(off));
    c->ncells = (uint32_t)n;
    c->mask = (uint32_t)n - 1;
    c->off = off;
    c->seg = seg;
    atomic_init(&c->slot, 0); /* no cell yet: claimed at the first add */
    shk_segment_retain(seg);
    *out = c;
    return SHK_OK;
}

static int init_counter(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    uint32_t ncells = *(const uint32_t *)arg;
    int rc = shk_counter_create_in(seg, ncells, off);
    if (rc == SHK_OK)
        *size = object_bytes(*off, ncells ? ncells : SHK_COUNTER_DEFAULT_CELLS);
    return rc;
}

static int open_named(shk_segment *seg, const char *name, uint32_t ncells, int create,
                      shk_counter **out, int *created)
{
    if (ncells && !ncells_valid(ncells))
        return SHK_EINVAL;
    uint64_t off;
    int made = 0;
    int rc = shk_segment_object(seg, name, SHK_TYPE_COUNTER, create ? init_counter : NULL,
                                &ncells, &off, &made);
    if (rc != SHK_OK)
        return rc;
    rc = shk_counter_open(seg, off, out);
    if (rc == SHK_OK && created)
        *created = made;
    return rc;
}

int shk_counter_open_named(shk_segment *seg, const char *name, uint32_t ncells,
                           shk_counter **out, int *created)
{
    return open_named(seg, name, ncells, 1, out, created);
}

int shk_counter_attach_named(shk_segment *seg, const char *name, shk_counter **out)
{
    return open_named(seg, name, 0, 0, out, NULL);
}

void shk_counter_close(shk_counter *c)
{
    if (!c)
        return;
    shk_segment_close(c->seg);
    free(c);
}

uint32_t shk_counter_ncells(const shk_counter *c) { return c->ncells; }
shk_segment *shk_counter_segment(const shk_counter *c) { return c->seg; }
uint64_t shk_counter_offset(const shk_counter *c) { return c->off; }

/* ------------------------------------------------------------ claiming */

/* Find this process's cell (see DESIGN): the slot word for generation
 * `gen`.  Bounded: one pass over the cells. */
static uint64_t claim(shk_counter *c, unsigned gen)
{
    uint64_t pid = (uint64_t)getpid();
    uint32_t start = pid_hash(pid) & c->mask;
    for (uint32_t k = 0; k < c->ncells; k++) {
        uint32_t i = (start + k) & c->mask;
        _Atomic uint64_t *ow = &c->cells[i].owner;
        /* acquire: pairs with the claim CAS of the owner we may replace
         * (not needed for exactness; keeps owner history ordered). */
        uint64_t o = SHK_A(atomic_load_explicit(ow, memory_order_acquire));
        int take = o == pid;
        if (!take && (o == 0 || owner_dead(o))) {
            /* acq_rel: as above.  A lost CAS means another process just
             * took it: go on probing. */
            take = SHK_A(atomic_compare_exchange_strong_explicit(ow, &o, pid,
                                                                 memory_order_acq_rel,
                                                                 memory_order_acquire));
            if (take)
                SHK_CRASH_POINT("counter.claimed");
        }
        if (take)
            return ((uint64_t)gen << 32) | (i + 1);
    }
    /* Every cell has a live owner: share hash(pid)'s, still exact. */
    return ((uint64_t)gen << 32) | CT_SHARED | ((start & c->mask) + 1);
}

/* The cell this process adds to, claiming one if the handle has none for
 * this process yet. */
static inline ct_cell *my_cell(shk_counter *c)
{
    unsigned gen = shk_fork_gen();
    /* relaxed: the slot is this process's own note (see the struct). */
    uint64_t s = atomic_load_explicit(&c->slot, memory_order_relaxed);
    if (SHK_UNLIKELY((uint32_t)(s >> 32) != gen || (s & 0xffffffffu) == 0)) {
        s = claim(c, gen);
        atomic_store_explicit(&c->slot, s, memory_order_relaxed);
    }
    return &c->cells[((s & ~CT_SHARED) & 0x7fffffffu) - 1];
}

/* ---------------------------------------------------------- operations */

void shk_counter_add(shk_counter *c, int64_t n)
{
    ct_cell *cell = my_cell(c);
    /* relaxed: see DESIGN (atomicity is all an exact count needs). */
    SHK_A(atomic_fetch_add_explicit(&cell->value, n, memory_order_relaxed));
    SHK_CRASH_POINT("counter.add");
}

int64_t shk_counter_value(const shk_counter *c)
{
    /* Unsigned sum: wraps modulo 2^64 instead of overflowing (UB). */
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->ncells; i++)
        /* relaxed: see DESIGN (exact once the adds happened-before). */
        sum += (uint64_t)SHK_A(atomic_load_explicit(&c->cells[i].value, memory_order_relaxed));
    return (int64_t)sum;
}

int64_t shk_counter_reset(shk_counter *c)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->ncells; i++)
        /* relaxed: the exchange is atomic with every add (DESIGN). */
        sum += (uint64_t)SHK_A(
            atomic_exchange_explicit(&c->cells[i].value, 0, memory_order_relaxed));
    return (int64_t)sum;
}

/* ----------------------------------------------------------------- check */

int shk_counter_check(const shk_counter *c, shk_counter_stats *stats)
{
    uint64_t n;
    int rc = validate_at(c->seg, c->off, &n);
    if (rc != SHK_OK)
        return rc;
    /* The handle caches the geometry; it must still match the header. */
    if (n != c->ncells ||
        (const char *)c->cells != shk_segment_base(c->seg) + cells_offset(c->off))
        return SHK_ECORRUPT;
    shk_counter_stats st = {0};
    st.ncells = c->ncells;
    st.mine = -1;
    uint64_t pid = (uint64_t)getpid();
    for (uint32_t i = 0; i < c->ncells; i++) {
        uint64_t o = SHK_A(atomic_load_explicit(&c->cells[i].owner, memory_order_relaxed));
        if (o > SHK_COUNTER_PID_MAX)
            return SHK_ECORRUPT;
        if (o == 0)
            continue;
        st.claimed++;
        if (!owner_dead(o))
            st.live++;
    }
    uint64_t s = atomic_load_explicit(&c->slot, memory_order_relaxed);
    if ((uint32_t)(s >> 32) == shk_fork_gen() && (s & 0xffffffffu) && !(s & CT_SHARED)) {
        uint32_t i = (uint32_t)(s & 0x7fffffffu) - 1;
        if (SHK_A(atomic_load_explicit(&c->cells[i].owner, memory_order_relaxed)) == pid)
            st.mine = (int32_t)i;
    }
    st.value = shk_counter_value(c);
    if (stats)
        *stats = st;
    return SHK_OK;
}
