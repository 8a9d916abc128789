/*
 * lfstack.h -- the tagged-offset Treiber stack that the free-list allocator
 * (alloc_freelist.c) and the Stack structure (stack.c) both use: inline
 * push, pop, take-all and push-chain, and the check of a list that other
 * processes change meanwhile (lfstack.c).  Not installed.
 */
#ifndef SHMKIT_LFSTACK_H
#define SHMKIT_LFSTACK_H

#include "internal.h"

/* ---- tagged-offset Treiber stack ----
 * The head word packs a 32-bit ABA tag above a 32-bit node offset counted in
 * 16-byte units, so nodes must be 16-aligned and below 64 GiB
 * (SHK_MAX_MAX_SIZE).  Node offset 0 means empty: offset 0 is always the
 * segment header, never a node.  The link of a node is the _Atomic uint64_t
 * at base + node offset (callers put it first in their node layout).
 *
 * Reading the link of a node that another process pops and reuses meanwhile
 * is harmless: the memory stays mapped (segments never shrink), the read is
 * atomic, and the tag makes the following CAS fail. */
#define SHK_LFSTACK_EMPTY 0u

static inline uint64_t shk_lf_pack(uint64_t tag, uint64_t off)
{
    return (tag << 32) | ((off >> 4) & 0xffffffffu);
}
static inline uint64_t shk_lf_off(uint64_t word) { return (word & 0xffffffffu) << 4; }
static inline uint64_t shk_lf_tag(uint64_t word) { return word >> 32; }

static inline void shk_lfstack_push(_Atomic uint64_t *head, char *base, uint64_t node)
{
    _Atomic uint64_t *link = (_Atomic uint64_t *)(base + node);
    /* relaxed: our link store and the node's contents are published by the
     * release CAS below. */
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_relaxed));
    for (;;) {
        SHK_A(atomic_store_explicit(link, shk_lf_off(old), memory_order_relaxed));
        /* release on success: a popper that acquires this head value sees the
         * node's contents and link.  relaxed on failure: we only retry. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(head, &old,
                                                        shk_lf_pack(shk_lf_tag(old) + 1, node),
                                                        memory_order_release,
                                                        memory_order_relaxed)))
            return;
    }
}

/* Pops a node; returns its offset or 0 when empty.  `limit` bounds a link
 * read from shared memory: a corrupt link beyond it ends the pop with 0
 * rather than a wild read. */
static inline uint64_t shk_lfstack_pop(_Atomic uint64_t *head, char *base, uint64_t limit)
{
    /* acquire: pairs with the pusher's release so the link and contents of
     * the node we may take are visible. */
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_acquire));
    for (;;) {
        uint64_t node = shk_lf_off(old);
        if (node == 0 || node + 16 > limit)
            return 0;
        uint64_t next = SHK_A(
            atomic_load_explicit((_Atomic uint64_t *)(base + node), memory_order_relaxed));
        /* acquire on both paths: on failure we re-read a new node's link. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(head, &old,
                                                        shk_lf_pack(shk_lf_tag(old) + 1, next),
                                                        memory_order_acquire,
                                                        memory_order_acquire)))
            return node;
    }
}

/* Detaches the whole stack; returns its first node (0 if empty).  The
 * chain's links are untouched and now ours alone: a concurrent pop of the
 * old head fails on the tag. */
static inline uint64_t shk_lfstack_take_all(_Atomic uint64_t *head)
{
    /* acquire: pairs with the pushers' release, so every node's link and
     * contents along the chain are visible. */
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_acquire));
    while (shk_lf_off(old) != 0 && !SHK_A(atomic_compare_exchange_weak_explicit(
                                       head, &old, shk_lf_pack(shk_lf_tag(old) + 1, 0),
                                       memory_order_acquire, memory_order_acquire)))
        ;
    return shk_lf_off(old);
}

/* Pushes a chain (first .. a node whose link is 0) that we own.  If the
 * stack is empty, one CAS installs the whole chain; otherwise it is walked
 * to its tail (at most max_nodes, each below `limit`) and pushed as one. */
static inline void shk_lfstack_push_chain(_Atomic uint64_t *head, char *base, uint64_t first,
                                          uint64_t limit, uint64_t max_nodes)
{
    uint64_t old = SHK_A(atomic_load_explicit(head, memory_order_relaxed));
    uint64_t tail = 0;
    for (;;) {
        if (shk_lf_off(old) != 0 && tail == 0) {
            tail = first;
            for (uint64_t n = 1; n < max_nodes; n++) {
                uint64_t next = SHK_A(atomic_load_explicit((_Atomic uint64_t *)(base + tail),
                                                           memory_order_relaxed));
                if (next == 0 || next + 16 > limit)
                    break;
                tail = next;
            }
        }
        if (tail)
            SHK_A(atomic_store_explicit((_Atomic uint64_t *)(base + tail), shk_lf_off(old),
                                        memory_order_relaxed));
        /* release on success: as in push, for every node of the chain. */
        if (SHK_A(atomic_compare_exchange_weak_explicit(head, &old,
                                                        shk_lf_pack(shk_lf_tag(old) + 1, first),
                                                        memory_order_release,
                                                        memory_order_relaxed)))
            return;
    }
}

/* Verify a list that other processes may push to and pop from meanwhile.
 * walk(head_word, ctx) walks the list from that head word and returns 0 if
 * every node passed, nonzero at the first that did not (a node popped and
 * reused under the walk fails it).  Every push and pop moves the head word
 * (its tag counts them), so a walk that failed while the head word stayed
 * the same saw a list nobody touched: SHK_ECORRUPT.  If the head moved, the
 * walk proves nothing and is tried again; a list that moves under every one
 * of SHK_LFSTACK_CHECK_TRIES further walks gives SHK_EAGAIN (unverified,
 * not corrupt).  SHK_OK: the last walk passed.  (lfstack.c) */
#define SHK_LFSTACK_CHECK_TRIES 64
int shk_lfstack_check(_Atomic uint64_t *head, int (*walk)(uint64_t head_word, void *ctx),
                      void *ctx);

#endif
