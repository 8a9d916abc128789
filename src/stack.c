/*
 * stack.c -- lock-free LIFO stack of variable-size items.
 *
 * DESIGN
 *   A Treiber stack: each item is one segment-heap block (a node) holding a
 *   link, the item's length and tag, and its bytes; the stack's head word
 *   packs a 32-bit ABA tag above the top node's offset (internal.h:
 *   shk_lfstack_push/pop, the very code the free-list allocator runs on its
 *   size classes).  push = allocate + fill a node, one release CAS; pop = one
 *   acquire CAS, copy out, free the node.  The tag makes a pop whose node was
 *   popped, freed and reused meanwhile (ABA) fail its CAS and retry.
 *
 *   Lock-free rather than locked: a stack has a single contention point
 *   (the head) that one CAS updates completely, so there is no multi-step
 *   state for a lock to protect and a process SIGKILLed at any instant can
 *   never block the others.  What a kill can cost (the one item in flight):
 *     push killed before its CAS: the item was never pushed (its node leaks).
 *     pop killed after its CAS:   the item is gone with the killed process
 *                                 (its node leaks).
 *   Nothing else: the list itself is always consistent.
 *
 *   peek reads the top node without taking it, like a seqlock read: load
 *   the head word, copy the node, re-load the head word; if the word (with
 *   its tag) is unchanged no push or pop happened in between, so the node
 *   was still the top and unmodified during the copy.  Lengths read on the
 *   way are bounds-checked before use, so a node being reused under us
 *   cannot make the copy run off the segment.
 *
 * LAYOUT
 *   s_shared (a heap block, 64 bytes):
 *     magic "SHKSTACK" | version | header_size | head (tag:32|off/16:32) |
 *     count (signed) | total_push | total_pop
 *   node (a heap block, 16-aligned as shk_lfstack requires):
 *     +0  link   next node offset (atomic, shk_lfstack's)
 *     +8  len    item bytes
 *     +16 tag    u32 user tag | u32 check "STKN"
 *     +24 item bytes
 *
 * INVARIANTS
 *   - Every node on the list is a live heap block of >= 24 + len bytes, and
 *     its fields never change while it is on the list.
 *   - count == nodes on the list, except for the instant between a CAS and
 *     the counter update that follows it (push: +1 after; pop: -1 after), so
 *     count may read one low or high transiently; len() clamps at 0.
 */
#include "internal.h"
#include "lfstack.h"

#include <stdlib.h>
#include <string.h>

#define S_MAGIC 0x4b434154534b4853ull /* "SHKSTACK" */
#define S_VERSION 2u                  /* also covers the item tags Python writes ('b', 'p') */
#define NODE_HDR 24u
#define NODE_CHECK 0x4e4b5453u /* "STKN" */

typedef struct s_shared {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    _Atomic uint64_t head;
    _Atomic int64_t count;
    _Atomic uint64_t total_push;
    _Atomic uint64_t total_pop;
    uint64_t reserved[2];
} s_shared;
SHK_STATIC_ASSERT(sizeof(s_shared) == 64, "stack header is a line");

typedef struct s_node {
    _Atomic uint64_t link;
    _Atomic uint64_t len;
    _Atomic uint32_t tag;
    _Atomic uint32_t check;
} s_node;
SHK_STATIC_ASSERT(sizeof(s_node) == NODE_HDR, "node header");

struct shk_stack {
    shk_segment *seg;
    shk_freelist *heap;
    char *base;
    s_shared *sh;
};

int shk_stack_create_in(shk_segment *seg, uint64_t *off)
{
    uint64_t hoff;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), sizeof(s_shared), &hoff);
    if (rc != SHK_OK)
        return rc;
    s_shared *sh = (s_shared *)(shk_segment_base(seg) + hoff);
    memset(sh, 0, sizeof *sh);
    sh->version = S_VERSION;
    sh->header_size = sizeof(s_shared);
    /* Plain store: published by the directory entry's release store. */
    sh->magic = S_MAGIC;
    *off = hoff;
    return SHK_OK;
}

int shk_stack_open(shk_segment *seg, uint64_t off, shk_stack **out)
{
    if (off % 16 || !shk_segment_contains(seg, off, sizeof(s_shared)))
        return SHK_ECORRUPT;
    s_shared *sh = (s_shared *)(shk_segment_base(seg) + off);
    if (sh->magic != S_MAGIC || sh->version != S_VERSION || sh->header_size != sizeof(s_shared))
        return SHK_ECORRUPT;
    uint64_t top = shk_lf_off(SHK_A(atomic_load_explicit(&sh->head, memory_order_relaxed)));
    if (top && !shk_segment_contains(seg, top, NODE_HDR))
        return SHK_ECORRUPT;
    shk_stack *s = calloc(1, sizeof *s);
    if (!s)
        return SHK_ESYS;
    s->seg = seg;
    s->heap = shk_segment_heap(seg);
    s->base = shk_segment_base(seg);
    s->sh = sh;
    shk_segment_retain(seg);
    *out = s;
    return SHK_OK;
}

static int init_cb(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    (void)arg;
    *size = sizeof(s_shared);
    return shk_stack_create_in(seg, off);
}

int shk_stack_open_named(shk_segment *seg, const char *name, shk_stack **out, int *created)
{
    uint64_t off;
    int rc = shk_segment_object(seg, name, SHK_TYPE_STACK, init_cb, NULL, &off, created);
    if (rc != SHK_OK)
        return rc;
    return shk_stack_open(seg, off, out);
}

void shk_stack_close(shk_stack *s)
{
    if (!s)
        return;
    shk_segment_close(s->seg);
    free(s);
}

shk_segment *shk_stack_segment(const shk_stack *s) { return s->seg; }

static inline s_node *node_at(const shk_stack *s, uint64_t off)
{
    return (s_node *)(s->base + off);
}

int shk_stack_push(shk_stack *s, const void *data, uint64_t len, uint32_t tag)
{
    if (len > SHK_STACK_MAX_ITEM || tag > 255 || (len && !data))
        return SHK_EINVAL;
    uint64_t off;
    int rc = shk_freelist_alloc(s->heap, NODE_HDR + len, &off);
    if (rc != SHK_OK)
        return rc;
    s_node *n = node_at(s, off);
    /* relaxed: the node is ours until the release CAS in push publishes it. */
    SHK_A(atomic_store_explicit(&n->len, len, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&n->tag, tag, memory_order_relaxed));
    SHK_A(atomic_store_explicit(&n->check, NODE_CHECK, memory_order_relaxed));
    if (len)
        memcpy((char *)n + NODE_HDR, data, len);
    SHK_CRASH_POINT("stack.push.cas");
    shk_lfstack_push(&s->sh->head, s->base, off);
    SHK_CRASH_POINT("stack.push.count");
    /* relaxed: counters are statistics, nothing is published through them. */
    SHK_A(atomic_fetch_add_explicit(&s->sh->count, 1, memory_order_relaxed));
    SHK_A(atomic_fetch_add_explicit(&s->sh->total_push, 1, memory_order_relaxed));
    return SHK_OK;
}

/* Length and tag of node `off` if it looks like a node whose bytes lie in
 * the backed segment; 0 otherwise. */
static int node_valid(const shk_stack *s, uint64_t off, uint64_t *len, uint32_t *tag)
{
    if (off == 0 || off % 16 || !shk_segment_contains(s->seg, off, NODE_HDR))
        return 0;
    const s_node *n = node_at(s, off);
    uint64_t l = SHK_A(atomic_load_explicit(&n->len, memory_order_relaxed));
    if (SHK_A(atomic_load_explicit(&n->check, memory_order_relaxed)) != NODE_CHECK ||
        l > SHK_STACK_MAX_ITEM || !shk_segment_contains(s->seg, off + NODE_HDR, l))
        return 0;
    *len = l;
    *tag = SHK_A(atomic_load_explicit(&n->tag, memory_order_relaxed));
    return 1;
}

int shk_stack_pop(shk_stack *s, shk_stack_alloc_fn alloc, void *ctx)
{
    if (!alloc)
        return SHK_EINVAL;
    uint64_t off = shk_lfstack_pop(&s->sh->head, s->base, shk_segment_file_size(s->seg));
    if (off == 0)
        return SHK_EEMPTY;
    SHK_CRASH_POINT("stack.pop.count");
    SHK_A(atomic_fetch_sub_explicit(&s->sh->count, 1, memory_order_relaxed));
    uint64_t len;
    uint32_t tag;
    if (!node_valid(s, off, &len, &tag) || shk_freelist_usable(s->heap, off) < NODE_HDR + len)
        return SHK_ECORRUPT; /* not ours to free: leave it alone */
    void *dst = alloc(ctx, len, tag);
    if (!dst) {
        /* Give it back (on top: the order is kept unless someone pushed in
         * between). */
        shk_lfstack_push(&s->sh->head, s->base, off);
        SHK_A(atomic_fetch_add_explicit(&s->sh->count, 1, memory_order_relaxed));
        return SHK_ENOMEM;
    }
    if (len)
        memcpy(dst, (char *)node_at(s, off) + NODE_HDR, len);
    SHK_A(atomic_fetch_add_explicit(&s->sh->total_pop, 1, memory_order_relaxed));
    SHK_CRASH_POINT("stack.pop.free");
    shk_freelist_free(s->heap, off);
    return SHK_OK;
}

int shk_stack_peek(shk_stack *s, shk_stack_alloc_fn alloc, void *ctx)
{
    if (!alloc)
        return SHK_EINVAL;
    for (;;) {
        /* acquire: pairs with the pusher's release CAS, so the top node's
         * fields are visible. */
        uint64_t w = SHK_A(atomic_load_explicit(&s->sh->head, memory_order_acquire));
        uint64_t off = shk_lf_off(w);
        if (off == 0)
            return SHK_EEMPTY;
        uint64_t len;
        uint32_t tag;
        int ok = node_valid(s, off, &len, &tag);
        if (ok) {
            void *dst = alloc(ctx, len, tag);
            if (!dst)
                return SHK_ENOMEM;
            if (len)
                memcpy(dst, (char *)node_at(s, off) + NODE_HDR, len);
        }
        /* acquire fence: the copy above is ordered before the re-load, so
         * an unchanged word proves nothing changed the node during it
         * (the seqlock read pattern). */
        atomic_thread_fence(memory_order_acquire);
        if (SHK_A(atomic_load_explicit(&s->sh->head, memory_order_relaxed)) == w)
            return ok ? SHK_OK : SHK_ECORRUPT;
    }
}

uint64_t shk_stack_size(const shk_stack *s)
{
    int64_t n = SHK_A(atomic_load_explicit(&s->sh->count, memory_order_relaxed));
    return n > 0 ? (uint64_t)n : 0;
}

/* One walk of the list for shk_lfstack_check: every node a live heap block
 * big enough for its item, no cycle. */
typedef struct stack_walk {
    shk_stack *s;
    uint64_t items, bytes, tags[4]; /* of the last walk */
} stack_walk;

static int walk_stack(uint64_t head_word, void *ctx)
{
    stack_walk *sw = ctx;
    shk_stack *s = sw->s;
    /* after the head: every node on that list lies below this size */
    uint64_t fs = shk_segment_file_size(s->seg);
    /* A list longer than the segment could hold nodes has a cycle. */
    uint64_t limit = fs / (NODE_HDR + 16) + 1;
    sw->items = sw->bytes = 0;
    memset(sw->tags, 0, sizeof sw->tags);
    for (uint64_t off = shk_lf_off(head_word); off;) {
        uint64_t len;
        uint32_t tag;
        if (!node_valid(s, off, &len, &tag) ||
            shk_freelist_usable(s->heap, off) < NODE_HDR + len || ++sw->items > limit)
            return 1;
        sw->bytes += len;
        tag = tag < 256 ? tag : 255; /* push refuses tags above 255 */
        sw->tags[tag / 64] |= 1ull << (tag % 64);
        off = SHK_A(atomic_load_explicit(&node_at(s, off)->link, memory_order_relaxed));
    }
    return 0;
}

int shk_stack_check(shk_stack *s, shk_stack_stats *st, int repair)
{
    shk_stack_stats r;
    memset(&r, 0, sizeof r);
    /* Other processes may push and pop meanwhile: shk_lfstack_check tells
     * a list they moved (walked again, at worst reported unverified) from a
     * corrupt one. */
    stack_walk sw = {s, 0, 0, {0, 0, 0, 0}};
    int rc = shk_lfstack_check(&s->sh->head, walk_stack, &sw);
    if (rc == SHK_EAGAIN) {
        r.unverified = 1;
        rc = SHK_OK;
    } else if (rc == SHK_OK) {
        r.items = sw.items;
        r.bytes = sw.bytes;
        memcpy(r.tags, sw.tags, sizeof r.tags);
    }
    r.counter = SHK_A(atomic_load_explicit(&s->sh->count, memory_order_relaxed));
    r.total_push = SHK_A(atomic_load_explicit(&s->sh->total_push, memory_order_relaxed));
    r.total_pop = SHK_A(atomic_load_explicit(&s->sh->total_pop, memory_order_relaxed));
    if (rc == SHK_OK && !r.unverified && repair && r.counter != (int64_t)r.items) {
        SHK_A(atomic_store_explicit(&s->sh->count, (int64_t)r.items, memory_order_relaxed));
    }
    if (st)
        *st = r;
    return rc;
}
