/*
 * shmkit/dict.h -- SharedDict: a process-shared hash map with variable-size
 * keys and values, lock-free reads and online growth.  Design: src/dict.c.
 *
 * Keys and values are byte strings with a one-byte type tag each (the Python
 * layer encodes str/bytes/int/... into them); two keys are equal when their
 * tags and bytes are equal.  The hash is shk_hash64 seeded per segment.
 *
 * Reads are lock-free: shk_dict_find() returns a *reference* into shared
 * memory (pointers valid while the mapping lives) plus a version; the caller
 * decodes the value, then calls shk_dict_ref_valid(): if it says 0, the entry
 * changed meanwhile and the decoded value must be thrown away and the find
 * retried.  shk_dict_get() wraps that loop for plain C callers.
 *
 * Writes build the new entry first (shk_dict_prepare, then fill the value
 * area), then publish it with shk_dict_commit(): a compare-and-swap of its
 * table slot, lock-free.  Only resizes, clear() and check() freeze a shard
 * (writers of it wait meanwhile).
 */
#ifndef SHMKIT_DICT_H
#define SHMKIT_DICT_H

#include "common.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shk_dict shk_dict;

/* Largest number of table slots (2^31); the dict holds up to 3/4 of that. */
#define SHK_DICT_MAX_LOG2_CAP 31u
#define SHK_DICT_MIN_CAPACITY 8u
/* A dict is this many independent shards (tables that grow on their own),
 * chosen by the key's hash.  Each shard holds up to 3/4 of 2^31 entries. */
#define SHK_DICT_SHARDS 16u
/* A reference can be pinned (views) by at most this many holders at once. */
#define SHK_DICT_MAX_PINS 0xffffu

/* Build an empty dict in the heap of `seg` with room for `capacity_hint`
 * entries before the first resize; *off gets the offset of its header.
 * SHK_EINVAL if the hint is beyond what a dict can hold. */
int shk_dict_create_in(shk_segment *seg, uint64_t capacity_hint, uint64_t *off);
/* Open a handle on the dict whose header is at `off` (validated:
 * SHK_ECORRUPT).  The handle retains seg. */
int shk_dict_open(shk_segment *seg, uint64_t off, shk_dict **out);
/* Open dict `name` in `seg`; create it if absent and `create` is non-zero
 * (a hint of 0 is a valid size, so the dict says create in its own
 * argument).  SHK_ENOENT if absent and !create, SHK_ETYPE if `name` is
 * another kind, SHK_ECORRUPT if its header fails validation. */
int shk_dict_open_named(shk_segment *seg, const char *name, int create, uint64_t capacity_hint,
                        shk_dict **out, int *created);
void shk_dict_close(shk_dict *d);
shk_segment *shk_dict_segment(const shk_dict *d);
uint64_t shk_dict_offset(const shk_dict *d);

/* The hash the dict uses for a key (exposed for tests and sizing). */
uint64_t shk_dict_hash(const shk_dict *d, uint8_t ktype, const void *key, size_t klen);

/* ---- lock-free reads ---- */

typedef struct shk_dict_ref {
    uint64_t entry;  /* segment offset of the entry               */
    uint64_t ver;    /* its version when found                     */
    uint64_t table;  /* its shard's table word when found          */
    uint64_t slot;   /* the table slot that referenced it           */
    uint64_t word;   /* that slot's word when found                */
    const char *key; /* into shared memory                         */
    const char *val; /* into shared memory, 16-byte aligned         */
    uint64_t klen, vlen;
    uint8_t ktype, vtype;
    uint32_t shard; /* which shard                                */
} shk_dict_ref;

/* Find a key.  SHK_OK with *ref filled, or SHK_ENOTFOUND.  Never blocks. */
int shk_dict_find(shk_dict *d, uint8_t ktype, const void *key, size_t klen, shk_dict_ref *ref);
/* Same with a precomputed hash (shk_dict_hash). */
int shk_dict_find_h(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint64_t hash,
                    shk_dict_ref *ref);
/* 1 if what was read through ref since find is a consistent snapshot of
 * the entry that its slot referenced at one instant (so the answer is
 * linearizable there); 0: discard it and find again. */
int shk_dict_ref_valid(const shk_dict *d, const shk_dict_ref *ref);

/* Copy a value out.  *vlen gets its length; SHK_EINVAL (with *vlen set) if
 * cap is too small.  SHK_ENOTFOUND if absent. */
int shk_dict_get(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint8_t *vtype,
                 void *buf, uint64_t cap, uint64_t *vlen);

/* Pin the entry of ref so its memory stays valid (not reused) after it is
 * overwritten or deleted, until shk_dict_unpin.  SHK_EAGAIN if it changed
 * since find (find again), SHK_EFULL if it has SHK_DICT_MAX_PINS pins. */
int shk_dict_pin(shk_dict *d, const shk_dict_ref *ref);
void shk_dict_unpin(shk_dict *d, uint64_t entry);
/* The same without a dict handle (for views that outlive it). */
void shk_dict_unpin_seg(shk_segment *seg, uint64_t entry);

/* ---- writes ---- */

typedef struct shk_dict_txn {
    uint64_t entry; /* the new, unpublished entry                */
    uint64_t hash;
    char *val; /* where to write the value (vlen bytes)     */
    uint64_t vlen;
} shk_dict_txn;

/* Allocate and fill an entry for (key, vtype, vlen bytes of value) from the
 * segment heap.  The caller then writes the value into txn->val and calls
 * shk_dict_commit or shk_dict_abort.  SHK_ENOMEM if the heap has no room. */
int shk_dict_prepare(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint8_t vtype,
                     uint64_t vlen, shk_dict_txn *txn);
void shk_dict_abort(shk_dict *d, shk_dict_txn *txn);

enum shk_dict_mode {
    SHK_DICT_SET = 0,    /* insert or replace                          */
    SHK_DICT_INSERT = 1, /* insert only: SHK_EEXIST if the key exists  */
    SHK_DICT_EXPECT = 2  /* replace only the entry (expect_entry,
                                expect_ver); expect_entry 0 = key must be
                                absent.  SHK_EAGAIN otherwise.             */
};

/* Publish a prepared entry.  On SHK_OK the txn is consumed; on any error
 * nothing changed and the txn is still the caller's (commit again or
 * abort).  *replaced (may be NULL) tells whether a key was overwritten.
 * SHK_ENOMEM if the table had to grow and the heap has no room. */
int shk_dict_commit(shk_dict *d, shk_dict_txn *txn, int mode, uint64_t expect_entry,
                    uint64_t expect_ver, int *replaced);

/* Convenience: prepare + copy + commit(SET). */
int shk_dict_set(shk_dict *d, uint8_t ktype, const void *key, size_t klen, uint8_t vtype,
                 const void *val, uint64_t vlen);

/* Delete a key (if expect_entry != 0, only if it still is that entry with
 * version expect_ver: SHK_EAGAIN otherwise).  SHK_ENOTFOUND if absent. */
int shk_dict_delete(shk_dict *d, uint8_t ktype, const void *key, size_t klen,
                    uint64_t expect_entry, uint64_t expect_ver);

/* Remove every entry (the table shrinks back to its minimum). */
int shk_dict_clear(shk_dict *d);

/* Waiting for a change (any successful set, delete or clear, by anyone).
 * Register with shk_dict_watch(d, 1) first, then read shk_dict_changes()
 * (and the dict); shk_dict_wait_change(d, seen, timeout_ns) returns SHK_OK
 * at once if the counter moved from `seen`, else sleeps on its futex:
 * SHK_OK (changed, or a spurious wake: compare again), SHK_ETIMEDOUT,
 * SHK_EINTR.  Writers bump the counter only while someone watches; end
 * with shk_dict_watch(d, 0). */
void shk_dict_watch(shk_dict *d, int on);
uint32_t shk_dict_changes(const shk_dict *d);
int shk_dict_wait_change(shk_dict *d, uint32_t seen, int64_t timeout_ns);
/* The same for a caller that may close d (from another thread) during the
 * wait: the counter's address, valid while d's segment is retained
 * (shk_segment_retain), and the wait on it. */
const void *shk_dict_change_word(const shk_dict *d);
int shk_dict_wait_change_at(const void *word, uint32_t seen, int64_t timeout_ns);

/* The number of entries (exact when no writer runs), or
 * SHK_DICT_COUNT_CORRUPT if the per-writer counts are corrupt and the
 * shard could not be recounted from its table. */
#define SHK_DICT_COUNT_CORRUPT UINT64_MAX
uint64_t shk_dict_count(const shk_dict *d);

/* ---- iteration ----
 * Walk the current table: *pos starts at 0 (or anywhere, with *table = 0,
 * to start a walk in the middle); each call fills ref with the
 * next live entry (validate it with shk_dict_ref_valid after reading) and
 * returns SHK_OK, or SHK_ENOTFOUND at the end.  SHK_EAGAIN if the table was
 * replaced (resize/clear) since *pos was 0: restart, or use
 * shk_dict_lock() to hold writers off during a walk. */
int shk_dict_next(shk_dict *d, uint64_t *pos, uint64_t *table, shk_dict_ref *ref);
int shk_dict_lock(shk_dict *d);    /* freeze every shard: writers wait   */
void shk_dict_unlock(shk_dict *d); /* until unlock (repairs dead ones)   */

/* ---- statistics and checking ---- */

typedef struct shk_dict_stats {
    uint64_t count;      /* live entries                              */
    uint64_t capacity;   /* table slots                               */
    uint64_t used_slots; /* slots writers reserved, >= live + tombs
                                (exactly live + tombstones from check)    */
    uint64_t tombstones; /* used_slots - count (exact from check)     */
    uint64_t table_bytes;
    uint64_t resizes;                /* since creation                            */
    uint64_t recoveries;             /* times a dead writer's state was repaired  */
    uint64_t entry_bytes;            /* heap bytes held by live entries (check)   */
    uint64_t key_bytes, value_bytes; /* (check only)                    */
    uint64_t max_probe;              /* longest probe sequence (check only)       */
} shk_dict_stats;

/* Cheap counters (no walk). */
void shk_dict_stats_get(const shk_dict *d, shk_dict_stats *st);
/* Walk table and entries with writers held off and verify every invariant:
 * table and entry bounds, entry versions even, tags = hash bits, hashes
 * recomputed from the keys, every entry reachable by probing from its home
 * slot, no duplicate keys on a probe path, counters consistent.  SHK_OK or
 * SHK_ECORRUPT; fills *st (may be NULL) with the full statistics. */
int shk_dict_check(shk_dict *d, shk_dict_stats *st);

/* Bytes one entry with these key and value lengths takes on the heap
 * (including allocator rounding); for sizing segments. */
uint64_t shk_dict_entry_footprint(uint64_t klen, uint64_t vlen);
/* Bytes of shared memory a dict of `entries` entries with keys of klen and
 * values of vlen encoded bytes needs: entries, tables (with the one a
 * growth leaves behind), header and segment overhead.  An upper bound for
 * sizing a segment (size= or max_size=); saturates at UINT64_MAX. */
uint64_t shk_dict_estimate_size(uint64_t entries, uint64_t klen, uint64_t vlen);

#ifdef __cplusplus
}
#endif
#endif
