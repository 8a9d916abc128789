/*
 * crash.c -- crash points for the crash-torture tests (internal.h:
 * SHK_CRASH_POINT).  Compiled only with SHK_TEST_HOOKS (the Makefile's test
 * builds, and the extension `make install` builds for `make test`): in the
 * library and extension users install, a crash point is no code at all and
 * SHMKIT_CRASH_AT is not read.
 *
 * One point is armed at a time, per process: its name and a countdown of
 * hits; the hit that brings the countdown to 0 raises SIGKILL.
 */
#include "internal.h"

#ifdef SHK_TEST_HOOKS

#include <signal.h>
#include <stdlib.h>
#include <string.h>

int shk_crash_armed;
static char crash_name[64];
static long crash_countdown;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

void shk_crash_arm(const char *v)
{
    shk_crash_armed = 0;
    if (!v || !*v)
        return;
    const char *colon = strchr(v, ':');
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    if (n >= sizeof crash_name)
        return;
    memcpy(crash_name, v, n);
    crash_name[n] = 0;
    crash_countdown = colon ? strtol(colon + 1, NULL, 10) : 1;
    if (crash_countdown < 1)
        crash_countdown = 1;
    shk_crash_armed = 1;
}

static void crash_read_env(void) { shk_crash_arm(getenv("SHMKIT_CRASH_AT")); }

void shk_crash_init(void) { pthread_once(&crash_once, crash_read_env); }

void shk_crash_point_hit(const char *name)
{
    if (strcmp(name, crash_name) != 0)
        return;
    /* Only the process that armed it counts; races between threads do not
     * matter for a test hook that ends the process. */
    if (--crash_countdown == 0)
        raise(SIGKILL);
}

#endif /* SHK_TEST_HOOKS */
