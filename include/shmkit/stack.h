/*
 * shmkit/stack.h -- lock-free LIFO stack of variable-size items in shared
 * memory.
 *
 * A Treiber stack of segment-heap blocks, linked by tagged offsets (the same
 * shk_lfstack code as the free-list allocator), so push and pop are each one
 * heap allocation/free plus one CAS, and no process can block another.
 * Items are byte strings with an 8-bit user tag, like the queue's.
 */
#ifndef SHMKIT_STACK_H
#define SHMKIT_STACK_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_stack shk_stack; /* process-local handle */

#define SHK_STACK_MAX_ITEM (1ull << 36)

int shk_stack_create_in(shk_segment *seg, uint64_t *off);
int shk_stack_open(shk_segment *seg, uint64_t off, shk_stack **out);
/* Create-or-open the stack named `name` in seg's directory. */
int shk_stack_open_named(shk_segment *seg, const char *name, shk_stack **out, int *created);
void shk_stack_close(shk_stack *s);
shk_segment *shk_stack_segment(const shk_stack *s);

/* Gives the buffer an item of `len` bytes is copied into (NULL = stop:
 * SHK_ENOMEM).  peek may call it more than once (when the top changes under
 * it); only the buffer of the last call holds the item. */
typedef void *(*shk_stack_alloc_fn)(void *ctx, uint64_t len, uint32_t tag);

/* SHK_OK, SHK_ENOMEM (heap full, nothing changed), SHK_EINVAL. */
int shk_stack_push(shk_stack *s, const void *data, uint64_t len, uint32_t tag);
/* SHK_OK or SHK_EEMPTY.  If alloc fails the item is pushed back. */
int shk_stack_pop(shk_stack *s, shk_stack_alloc_fn alloc, void *ctx);
/* Copy the top item without removing it: SHK_OK or SHK_EEMPTY. */
int shk_stack_peek(shk_stack *s, shk_stack_alloc_fn alloc, void *ctx);
/* Number of items (a snapshot; never negative). */
uint64_t shk_stack_size(const shk_stack *s);

typedef struct shk_stack_stats {
    uint64_t items;  /* nodes found by walking the list            */
    int64_t counter; /* the shared item counter (len())            */
    uint64_t bytes;  /* item bytes held                            */
    uint64_t total_push, total_pop;
    int unverified;   /* the list changed under every walk tried   */
    uint64_t tags[4]; /* the item tags met: bit t % 64 of word
                                t / 64 for tag t (0..255; the caller knows
                                which tags it writes)                      */
} shk_stack_stats;
/* Walk the list: every node a live heap block big enough for its item, no
 * cycle.  SHK_OK or SHK_ECORRUPT.  Safe while other processes push and pop
 * (never calls a healthy stack corrupt; a list that changes under 64 walks
 * is reported unverified, with items and bytes 0); exact when quiescent.
 * A process killed between its CAS and its counter update leaves counter
 * != items (reported in stats, fixed with repair != 0, only when
 * verified). */
int shk_stack_check(shk_stack *s, shk_stack_stats *stats, int repair);

#ifdef __cplusplus
}
#endif
#endif
