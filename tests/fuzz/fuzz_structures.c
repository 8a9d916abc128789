/* Fuzz the header validation of the dict, queue and stack: the input
 * replaces the header block of one of them (chosen by its first byte) in a
 * real segment, then the structure is opened by name and, if it opens,
 * walked by its check().  Every outcome must be SHK_OK or SHK_ECORRUPT, with
 * no read outside the segment (ASan) and no undefined behaviour (UBSan).
 *
 * The robust mutex inside the dict and queue headers is kept intact: a
 * mutex word forged to name a live owner blocks lockers by design (a process
 * that can write the segment can stall it: docs/SECURITY.md), which is a
 * hang, not a parsing bug, and would only hide the findings we look for.
 *
 * A fourth kind (LIVE) works on a live queue instead: the input scribbles
 * bytes over its ring (offset, value pairs) and, if its first byte says so,
 * over its mutex words (an owner id that could name a live thread is moved
 * out of the possible range, for the reason above), then puts, gets and
 * checks.  Every status must be one the call documents, a get must never
 * read outside the ring or the segment, and nothing may hang.
 *
 * A fifth kind (LIVE_DICT) scribbles over the block of a live dict entry
 * (its version word, lengths, key and value) and then reads it: find, get,
 * a whole walk and check() must each answer OK, not found or
 * SHK_ECORRUPT, within bounded work (a slot that keeps naming a dead or
 * overhanging entry is corrupt, not a reason to spin).  Reads only, so
 * every run starts from the same state. */
#include "fuzz_common.h"

enum { DICT, QUEUE, STACK, NKIND, LIVE = NKIND, LIVE_DICT };
static const char *const names[NKIND] = {"d", "q", "s"};
/* The mutexes come from the library (shk_dict_mutex_span: one per shard;
 * shk_queue_mutex_span: put_lock and get_lock), so a layout change cannot
 * leave them stale. */

static shk_segment *seg;
static uint64_t off[NKIND], len[NKIND];
static char *orig[NKIND];
static uint64_t ring_off;
static char *ring_orig;
static uint64_t entry_off, entry_len;
static char *entry_orig;
#define LIVE_RING 4096u

static void setup(void)
{
    if (seg)
        return;
    const char *name = fuzz_name("structures");
    shk_segment_unlink(name);
    shk_dict *d;
    shk_queue *q;
    shk_stack *s;
    shk_queue_config cfg = {4096, 0};
    if (shk_segment_create(name, 0, 16 << 20, 0600, &seg) != SHK_OK ||
        shk_dict_open_named(seg, names[DICT], 1, 0, &d, NULL) != SHK_OK ||
        shk_queue_open_named(seg, names[QUEUE], &cfg, &q, NULL) != SHK_OK ||
        shk_stack_open_named(seg, names[STACK], &s, NULL) != SHK_OK)
        abort();
    /* Only this mapping is used from here on: removing the name at once
     * leaves nothing in /dev/shm however libFuzzer exits. */
    shk_segment_unlink(name);
    /* some content, so that check() has entries/records/nodes to walk */
    shk_dict_set(d, 1, "k", 1, 1, "v", 1);
    shk_queue_put(q, "item", 4, 0, 0);
    shk_stack_push(s, "node", 4, 0);
    shk_dict_close(d);
    shk_queue_close(q);
    shk_stack_close(s);
    for (int k = 0; k < NKIND; k++) {
        shk_object_info info;
        if (shk_segment_lookup(seg, names[k], &info) != SHK_OK)
            abort();
        off[k] = info.offset;
        /* the header's heap block, or (the dict's header starts on a cache
         * line inside its block) the size the directory records */
        len[k] = shk_freelist_usable(shk_segment_heap(seg), info.offset);
        if (len[k] == 0)
            len[k] = info.size;
        orig[k] = fuzz_copy((const uint8_t *)shk_segment_base(seg) + off[k], len[k]);
    }
    shk_dict_ref r;
    if (shk_dict_open_named(seg, names[DICT], 0, 0, &d, NULL) != SHK_OK ||
        shk_dict_find(d, 1, "k", 1, &r) != SHK_OK)
        abort();
    entry_off = r.entry;
    entry_len = shk_freelist_usable(shk_segment_heap(seg), entry_off);
    entry_orig = fuzz_copy((const uint8_t *)shk_segment_base(seg) + entry_off, entry_len);
    shk_dict_close(d);
    memcpy(&ring_off, shk_segment_base(seg) + off[QUEUE] + 16, 8);   /* q_shared.ring_off */
    ring_orig = fuzz_copy((const uint8_t *)shk_segment_base(seg) + ring_off, LIVE_RING);
}

static int live_status_ok(int rc)
{
    return rc == SHK_OK || rc == SHK_ECORRUPT || rc == SHK_EEMPTY || rc == SHK_EFULL ||
           rc == SHK_ENOMEM;
}

/* The LIVE kind: scribble over the live queue's ring (and maybe its lock),
 * then use it. */
static void live_queue(const uint8_t *data, size_t size)
{
    char *base = shk_segment_base(seg);
    memcpy(base + ring_off, ring_orig, LIVE_RING);
    size_t i = 1;
    if ((data[0] & 0x80) && size >= 1 + sizeof(pthread_mutex_t)) {
        uint64_t a, b;
        shk_queue_mutex_span((data[0] >> 6) & 1, &a, &b);   /* put_lock or get_lock */
        char *lock = base + off[QUEUE] + a;
        memcpy(lock, data + 1, sizeof(pthread_mutex_t));
        uint32_t w;
        memcpy(&w, lock, 4);
        if ((w & 0x3fffffffu) != 0 && (w & 0x3fffffffu) <= (4u << 20)) {
            w |= 1u << 23;   /* no possible thread id: never a live owner */
            memcpy(lock, &w, 4);
        }
        i += sizeof(pthread_mutex_t);
    }
    for (; i + 3 <= size; i += 3) {
        uint16_t at;
        memcpy(&at, data + i, 2);
        base[ring_off + at % LIVE_RING] = (char)data[i + 2];
    }
    shk_queue *q;
    shk_queue_config cfg = {4096, 0};
    int rc = shk_queue_open_named(seg, names[QUEUE], &cfg, &q, NULL);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    if (rc != SHK_OK)
        return;
    char buf[4096];
    uint64_t n;
    uint32_t tag;
    for (int r = 0; r < 3; r++) {
        rc = shk_queue_get_into(q, buf, sizeof buf, &n, &tag, 0);
        FUZZ_ASSERT(live_status_ok(rc) || rc == SHK_EINVAL);
    }
    rc = shk_queue_put(q, "after", 5, 0, 0);
    FUZZ_ASSERT(live_status_ok(rc));
    rc = shk_queue_put(q, buf, 700, 0, 0);   /* out of line */
    FUZZ_ASSERT(live_status_ok(rc));
    rc = shk_queue_check(q, NULL);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    while ((rc = shk_queue_get_into(q, buf, sizeof buf, &n, &tag, 0)) == SHK_OK)
        ;
    FUZZ_ASSERT(live_status_ok(rc) || rc == SHK_EINVAL);
    shk_queue_close(q);
}

/* The LIVE_DICT kind: scribble over the live entry, then read the dict. */
static void live_dict(const uint8_t *data, size_t size)
{
    char *base = shk_segment_base(seg);
    memcpy(base + entry_off, entry_orig, entry_len);
    for (size_t i = 1; i + 3 <= size; i += 3) {
        uint16_t at;
        memcpy(&at, data + i, 2);
        base[entry_off + at % entry_len] = (char)data[i + 2];
    }
    shk_dict *d;
    int rc = shk_dict_open_named(seg, names[DICT], 0, 0, &d, NULL);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    if (rc != SHK_OK)
        return;
    shk_dict_ref r;
    rc = shk_dict_find(d, 1, "k", 1, &r);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ENOTFOUND || rc == SHK_ECORRUPT);
    char buf[64];
    uint64_t n;
    uint8_t vt;
    rc = shk_dict_get(d, 1, "k", 1, &vt, buf, sizeof buf, &n);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ENOTFOUND || rc == SHK_ECORRUPT || rc == SHK_EINVAL);
    uint64_t pos = 0, tw = 0;
    while ((rc = shk_dict_next(d, &pos, &tw, &r)) == SHK_OK)
        ;
    FUZZ_ASSERT(rc == SHK_ENOTFOUND || rc == SHK_ECORRUPT);
    rc = shk_dict_check(d, NULL);
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    shk_dict_close(d);
    memcpy(base + entry_off, entry_orig, entry_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 1)
        return 0;
    /* bit 6 of the first byte picks LIVE_DICT; otherwise its value picks
     * one of the others (as the committed seeds expect) */
    int k = (data[0] & 0x40) ? LIVE_DICT : data[0] % (NKIND + 1);
    char *base = shk_segment_base(seg);
    for (int i = 0; i < NKIND; i++)
        memcpy(base + off[i], orig[i], len[i]);
    if (k == LIVE) {
        live_queue(data, size);
        return 0;
    }
    if (k == LIVE_DICT) {
        live_dict(data, size);
        return 0;
    }
    size_t n = size - 1 < len[k] ? size - 1 : len[k];
    memcpy(base + off[k], data + 1, n);
    if (k == DICT) {
        uint64_t a, b;
        for (unsigned i = 0; shk_dict_mutex_span(i, &a, &b) == SHK_OK; i++)
            if (b <= len[k])
                memcpy(base + off[k] + a, orig[k] + a, b - a);
    } else if (k == QUEUE) {
        uint64_t a, b;
        for (unsigned i = 0; shk_queue_mutex_span(i, &a, &b) == SHK_OK; i++)
            if (b <= len[k])
                memcpy(base + off[k] + a, orig[k] + a, b - a);
    }

    int rc;
    if (k == DICT) {
        shk_dict *d;
        rc = shk_dict_open_named(seg, names[k], 0, 0, &d, NULL);
        if (rc == SHK_OK) {
            int c = shk_dict_check(d, NULL);
            FUZZ_ASSERT(c == SHK_OK || c == SHK_ECORRUPT);
            shk_dict_close(d);
        }
    } else if (k == QUEUE) {
        shk_queue *q;
        shk_queue_config cfg = {4096, 0};
        rc = shk_queue_open_named(seg, names[k], &cfg, &q, NULL);
        if (rc == SHK_OK) {
            int c = shk_queue_check(q, NULL);
            FUZZ_ASSERT(c == SHK_OK || c == SHK_ECORRUPT);
            shk_queue_close(q);
        }
    } else {
        shk_stack *s;
        rc = shk_stack_open_named(seg, names[k], &s, NULL);
        if (rc == SHK_OK) {
            int c = shk_stack_check(s, NULL, 0);
            FUZZ_ASSERT(c == SHK_OK || c == SHK_ECORRUPT);
            shk_stack_close(s);
        }
    }
    FUZZ_ASSERT(rc == SHK_OK || rc == SHK_ECORRUPT);
    return 0;
}
