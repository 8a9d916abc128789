/*
 * fork.c -- the fork generation (internal.h: shk_fork_gen).  A handle caches
 * per-process state (a dict's version batch, the heap stripe, a counter's
 * cell) and must not share it with a forked child.  shk_fork_watch, called
 * by every open that caches such state, installs (once per process) a
 * pthread_atfork handler that bumps the generation in the child.
 *
 * INVARIANT: the generation changes in a process exactly when it is a new
 * fork child; a handle that remembered the generation sees the change with
 * one relaxed load.
 */
#include "internal.h"

_Atomic unsigned shk_fork_gen_;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    /* relaxed: the child is single-threaded here; later loads in it are
     * program-ordered after this store. */
    SHK_A(atomic_fetch_add_explicit(&shk_fork_gen_, 1, memory_order_relaxed));
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, on_fork_child); }

void shk_fork_watch(void) { pthread_once(&fork_once, register_fork_handler); }
