/*
 * dict_helpers.h -- small writers the dict's C tests share: a set through
 * prepare/commit, an EXPECT-mode increment, and keys chosen to fall in one
 * shard.
 */
#ifndef SHMKIT_DICT_HELPERS_H
#define SHMKIT_DICT_HELPERS_H

#include "check.h"
#include "shmkit.h"

/* Fill a new entry's value.  Its own function so that TSan's suppression
 * (tests/c/tsan.supp) can name it: writes into a freshly allocated entry
 * race by design with seqlock readers of the retired entry whose block it
 * reuses (they re-check the version and discard what they read). */
static inline void seqlock_fill(char *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
}

/* Set string key k to the 8-byte integer v with commit mode `mode`. */
static inline int dict_put(shk_dict *d, const char *k, size_t n, uint64_t v, int mode,
                           uint64_t expect_e, uint64_t expect_ver)
{
    shk_dict_txn t;
    int rc = shk_dict_prepare(d, 's', k, n, 'i', 8, &t);
    if (rc != SHK_OK)
        return rc;
    seqlock_fill(t.val, &v, 8);
    rc = shk_dict_commit(d, &t, mode, expect_e, expect_ver, NULL);
    if (rc != SHK_OK)
        shk_dict_abort(d, &t);
    return rc;
}

/* "ctr" += 1 with optimistic retry (find, then commit EXPECT that entry). */
static inline int dict_incr(shk_dict *d)
{
    for (;;) {
        shk_dict_ref r;
        int64_t cur = 0;
        uint64_t e = 0, ver = 0;
        int rc = shk_dict_find(d, 's', "ctr", 3, &r);
        if (rc == SHK_OK) {
            memcpy(&cur, r.val, 8);
            if (!shk_dict_ref_valid(d, &r))
                continue;
            e = r.entry;
            ver = r.ver;
        } else if (rc != SHK_ENOTFOUND) {
            return rc;
        }
        cur++;
        rc = dict_put(d, "ctr", 3, (uint64_t)cur, SHK_DICT_EXPECT, e, ver);
        if (rc != SHK_EAGAIN)
            return rc;
    }
}

/* Write n distinct keys ("b<j>", each under 16 bytes) that all hash to
 * shard 0 of d into keys[0..n), so that writers of them crowd one table. */
static inline void dict_shard0_keys(shk_dict *d, char (*keys)[16], int n)
{
    for (int i = 0, j = 0; i < n; j++) {
        int len = snprintf(keys[i], 16, "b%d", j);
        if ((shk_dict_hash(d, 's', keys[i], (size_t)len) & (SHK_DICT_SHARDS - 1)) == 0)
            i++;
    }
}

#endif
