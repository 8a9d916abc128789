/*
 * lfstack.c -- the out-of-line part of the tagged-offset Treiber stack
 * (lfstack.h): shk_lfstack_check, the check of a list that other processes
 * may change while it is walked.  Not inline: gcc's ThreadSanitizer build
 * refuses the fence in an inlined header function.
 */
#include "lfstack.h"

int shk_lfstack_check(_Atomic uint64_t *head, int (*walk)(uint64_t head_word, void *ctx),
                      void *ctx)
{
    for (unsigned tries = 0;; tries++) {
        uint64_t w = SHK_A(atomic_load_explicit(head, memory_order_acquire));
        if (walk(w, ctx) == 0)
            return SHK_OK;
        /* acquire: the walk's node reads happen before this re-read. */
        atomic_thread_fence(memory_order_acquire);
        if (SHK_A(atomic_load_explicit(head, memory_order_relaxed)) == w)
            return SHK_ECORRUPT;
        if (tries == SHK_LFSTACK_CHECK_TRIES)
            return SHK_EAGAIN;
    }
}
