/*
 * check.h -- the tiny unit-test harness of the C tests.
 *
 *   TEST(name) { CHECK(cond); CHECK_EQ(a, b); }
 *   int main(void) { RUN(name); ...; return check_summary(); }
 *
 * Prints one line per failed check and ends with "N passed, N failed".
 */
#ifndef SHMKIT_CHECK_H
#define SHMKIT_CHECK_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_failed_now;
static int check_tests_passed, check_tests_failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            check_failed_now = 1;                                            \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
        if (check_a_ != check_b_) {                                          \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_);         \
            check_failed_now = 1;                                            \
        }                                                                    \
    } while (0)

#define TEST(name) static void name(void)

#define RUN(name)                                                            \
    do {                                                                     \
        check_failed_now = 0;                                                \
        if (getenv("SHMKIT_TEST_VERBOSE")) /* which test hangs, if one does */ \
            fprintf(stderr, "-- %s\n", #name);                              \
        name();                                                              \
        if (check_failed_now) {                                              \
            check_tests_failed++;                                            \
            fprintf(stderr, "FAIL %s\n", #name);                             \
        } else {                                                             \
            check_tests_passed++;                                            \
        }                                                                    \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_tests_passed, check_tests_failed);
    return check_tests_failed ? 1 : 0;
}

/* Iteration counts of stress tests, scaled down by SHMKIT_TEST_SCALE
 * (a divisor; the valgrind target sets it, valgrind being ~50x slower). */
static inline int check_scale(int n)
{
    const char *v = getenv("SHMKIT_TEST_SCALE");
    int d = v ? atoi(v) : 1;
    return d > 1 ? (n / d > 0 ? n / d : 1) : n;
}

/* Wait for n forked children; 1 if every one exited with status 0 (all
 * are reaped either way, so none is left a zombie). */
static inline int check_reap(const pid_t *pids, int n)
{
    int ok = 1;
    for (int i = 0; i < n; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    return ok;
}

/* A segment name unique to this process and test. */
static inline const char *check_name(const char *tag)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "shmkit-ctest-%d-%s", (int)getpid(), tag);
    return buf;
}

#endif
