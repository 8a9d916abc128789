/*
 * dict_watch.c -- SharedDict change notification: the dict's change counter,
 * the watcher count, and the futex wait on the counter (WATCH in
 * dict_internal.h).  Writers (dict_write.c) and clears (dict_shard.c) call
 * in here through shk_dict_note_change; nothing here calls them.
 */
#include "dict_internal.h"

#include <limits.h>

void shk_dict_wake_watchers(shk_dict *d)
{
    /* relaxed: the fence in shk_dict_note_change ordered our commit before;
     * a woken watcher re-reads the dict itself. */
    SHK_A(atomic_fetch_add_explicit(&d->sh->changes, 1, memory_order_relaxed));
    shk_futex_wake(&d->sh->changes, INT_MAX);
}

void shk_dict_watch(shk_dict *d, int on)
{
    if (on) {
        /* seq_cst: before our first load of changes (see WATCH). */
        SHK_A(atomic_fetch_add_explicit(&d->sh->watchers, 1, memory_order_seq_cst));
        return;
    }
    /* relaxed: a count; never below 0 (a corrupt value only costs wakes). */
    uint32_t w = SHK_A(atomic_load_explicit(&d->sh->watchers, memory_order_relaxed));
    while (w != 0 && !SHK_A(atomic_compare_exchange_weak_explicit(&d->sh->watchers, &w, w - 1,
                                                                  memory_order_relaxed,
                                                                  memory_order_relaxed)))
        ;
}

uint32_t shk_dict_changes(const shk_dict *d)
{
    /* seq_cst: after our increment of watchers (see WATCH). */
    return SHK_A(atomic_load_explicit(&d->sh->changes, memory_order_seq_cst));
}

const void *shk_dict_change_word(const shk_dict *d) { return (const void *)&d->sh->changes; }

int shk_dict_wait_change_at(const void *word, uint32_t seen, int64_t timeout_ns)
{
    _Atomic uint32_t *w = (_Atomic uint32_t *)word;
    /* seq_cst: after our increment of watchers (see WATCH). */
    if (SHK_A(atomic_load_explicit(w, memory_order_seq_cst)) != seen)
        return SHK_OK;
    if (timeout_ns == 0)
        return SHK_ETIMEDOUT;
    return shk_futex_wait(w, seen, timeout_ns);
}

int shk_dict_wait_change(shk_dict *d, uint32_t seen, int64_t timeout_ns)
{
    return shk_dict_wait_change_at(shk_dict_change_word(d), seen, timeout_ns);
}
