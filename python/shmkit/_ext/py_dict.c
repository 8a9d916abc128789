/*
 * py_dict.c -- shmkit._shmkit.Dict, the C type under shmkit.SharedDict.
 *
 * DESIGN
 *   The mapping slots (mp_subscript, mp_ass_subscript, sq_contains, mp_length)
 *   are C, and shmkit.SharedDict subclasses this type without overriding
 *   them, so d[k] costs one C call: encode the key (a str's cached UTF-8, no
 *   temporary object), a lock-free find, decode the value straight from
 *   shared memory with the cheapest constructor, validate (src/dict.c
 *   seqlock), and retry if a writer changed the entry meanwhile.
 *
 *   Keys and values are encoded by py_codec.c (the tags are listed there).
 *   A pickled value is stored and loaded only by a handle with
 *   allow_pickle (finish_value -> shk_py_unpickle is the one way a value is
 *   unpickled).  Values that are decoded by running code (pickle) or into a
 *   new buffer (numpy) are first copied and validated, then decoded, so a
 *   torn read is never fed to pickle.
 *
 *   get_view(key) pins the entry (src/dict.c) and hands numpy a read-only
 *   buffer exported by a small _DictPin object that holds the pin and a
 *   reference on the segment mapping; both are dropped when the last view
 *   of the buffer goes away, so the memory stays valid (and unchanged) even
 *   if the key is overwritten or deleted meanwhile.
 *
 *   The handle is a structure handle (SHK_PY_HANDLE_HEAD, py_handle.c):
 *   close(), the closed/created/segment_name/object_name attributes, the
 *   "already initialised" and "operation on a closed SharedDict" errors are
 *   the base's.  Only the weak-reference list and the dealloc that clears it are the dict's own.
 *
 *   The GIL is held throughout (operations take ~100 ns; releasing it would
 *   cost more, and holding it means no other thread can close the handle
 *   under a running operation).  No Python code runs under the dict's
 *   writer lock.
 */
#include "shmkit_py.h"

#include <string.h>
#include <unistd.h>


#ifndef SHK_UNLIKELY
#if defined(__GNUC__)
#define SHK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SHK_UNLIKELY(x) (x)
#endif
#endif
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_dict */
        int allow_pickle;
    uint64_t pop_hint; /* where popitem looks first */
    PyObject *weakrefs;
} ShkPyDict;

SHK_PY_HANDLE_OPS(dict, "SharedDict", shk_dict_close);

static PyTypeObject ShkPyDict_Type;
static PyTypeObject ShkPyPin_Type;

/* Raise "operation on a closed SharedDict" (the base's message) and
 * return -1; only called with h == NULL. */
static int closed_error(ShkPyDict *self)
{
    shk_py_handle_alive((PyObject *)self, &dict_ops);
    return -1;
}

/* No call of this type drops the GIL, so `waiting` stays 0 and close()
 * releases h at once: h == NULL alone means closed (or never opened), one
 * load on the hot path. */
#define CHECK_OPEN(self, ret)                                                                  \
    do {                                                                                       \
        if (SHK_UNLIKELY((self)->h == NULL)) {                                                 \
            closed_error(self);                                                                \
            return ret;                                                                        \
        }                                                                                      \
    } while (0)

/* Second stage for values copied to `raw` (validated): a pickle is
 * refused unless this handle allows pickle (shk_py_unpickle, the one
 * place the extension unpickles), whoever wrote the value. */
static PyObject *finish_value(const ShkPyDict *self, uint8_t vtype, PyObject *raw)
{
    return shk_py_value_finish(vtype, raw, self->allow_pickle,
                               "this value is a pickle and this SharedDict has "
                               "allow_pickle=False: it was not unpickled and the dict is "
                               "unchanged (open the dict with allow_pickle=True only if "
                               "every process that can write the segment is trusted)");
}

/* Arrays are read through a pin rather than copied twice: while pinned the
 * entry cannot change or be reused, so its data is copied once, straight
 * into the new array.  Returns the array, or NULL with *retry set if the
 * entry changed before the pin took (find again). */
static PyObject *decode_array_pinned(ShkPyDict *self, const shk_dict_ref *r, int *retry)
{
    *retry = 0;
    int rc = shk_dict_pin(self->h, r);
    if (rc == SHK_EAGAIN) {
        *retry = 1;
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict: reading an array");
    /* the pin proves the entry is unchanged since find; the table word
     * proves we did not find it through a stale table */
    shk_segment *seg = shk_dict_segment(self->h);
    shk_segment_retain(seg); /* decoding runs numpy; keep the mapping */
    PyObject *v = NULL;
    if (!shk_dict_ref_valid(self->h, r))
        *retry = 1;
    else
        v = shk_py_array_decode(r->val, r->vlen, NULL);
    shk_dict_unpin_seg(seg, r->entry);
    shk_segment_close(seg);
    return v;
}

/* Find key and decode its value: the full loop of find, decode, validate,
 * retry.  Returns a new reference; NULL with no error and *found = 0 if
 * absent; NULL with an error otherwise.  entry/ver (may be NULL) identify
 * the entry the value came from, for compare-and-set style commits. */
static PyObject *fetch(ShkPyDict *self, const ShkPyKey *k, int *found, uint64_t *entry,
                       uint64_t *ver)
{
    shk_dict_ref r;
    for (;;) {
        if (SHK_UNLIKELY(!self->h)) {
            /* a retry loop ran Python code (__eq__, pickle) and another
             * thread closed the handle meanwhile */
            *found = 1;
            closed_error(self);
            return NULL;
        }
        int rc = shk_dict_find(self->h, k->t, k->p, (size_t)k->n, &r);
        if (rc == SHK_ENOTFOUND) {
            *found = 0;
            if (entry)
                *entry = *ver = 0;
            return NULL;
        }
        if (rc != SHK_OK)
            return shk_py_raise(rc, "SharedDict lookup");
        PyObject *v, *raw = NULL;
        if (r.vtype == 'a') {
            int retry;
            v = decode_array_pinned(self, &r, &retry);
            if (retry)
                continue;
        } else {
            v = shk_py_value_decode(r.vtype, r.val, r.vlen, &raw);
            if (!shk_dict_ref_valid(self->h, &r)) {
                /* changed under us: whatever we decoded is meaningless */
                Py_XDECREF(v);
                Py_XDECREF(raw);
                if (!v)
                    PyErr_Clear();
                continue;
            }
            if (v && raw) {
                Py_DECREF(v);
                v = finish_value(self, r.vtype, raw);
            }
            Py_XDECREF(raw);
        }
        *found = 1;
        if (entry) {
            *entry = r.entry;
            *ver = r.ver;
        }
        return v;
    }
}

static inline PyObject *lookup(ShkPyDict *self, const ShkPyKey *k, int *found)
{
    return fetch(self, k, found, NULL, NULL);
}

static inline PyObject *lookup_ref(ShkPyDict *self, const ShkPyKey *k, int *found,
                                   uint64_t *entry, uint64_t *ver)
{
    return fetch(self, k, found, entry, ver);
}

/* Prepare + fill an entry for (key, value).  0 ok (txn ready), -1 error. */
static int build_entry(ShkPyDict *self, const ShkPyKey *k, PyObject *value, shk_dict_txn *txn)
{
    ShkPyValue v;
    if (shk_py_value_encode(value, self->allow_pickle, &v) < 0) {
        shk_py_value_free(&v);
        return -1;
    }
    if (!self->h) {
        /* Python code (an __eq__ before us, pickle.dumps just now) closed
         * the handle, or another thread did */
        shk_py_value_free(&v);
        return closed_error(self);
    }
    uint64_t total = (uint64_t)v.n + (uint64_t)v.n2;
    int rc = shk_dict_prepare(self->h, k->t, k->p, (size_t)k->n, v.t, total, txn);
    if (rc != SHK_OK) {
        shk_py_value_free(&v);
        shk_py_raise(rc, "SharedDict: storing value");
        return -1;
    }
    if (v.n)
        memcpy(txn->val, v.p, (size_t)v.n);
    if (v.n2) {
        char *dst = txn->val + v.n;
        memcpy(dst, v.p2, (size_t)v.n2);
    }
    shk_py_value_free(&v);
    return 0;
}

/* ============================================================ the type */

/* The start of every operation on one key: the closed check, then the key
 * encoded into *k (kenc_free it).  0, or -1 with ValueError (closed) or
 * the key's TypeError/ValueError. */
static inline int open_key(ShkPyDict *self, PyObject *key, ShkPyKey *k)
{
    CHECK_OPEN(self, -1);
    return shk_py_key_encode(key, k);
}

static int dict_mp_ass(PyObject *op, PyObject *key, PyObject *value)
{
    ShkPyDict *self = (ShkPyDict *)op;
    ShkPyKey k;
    if (open_key(self, key, &k) < 0)
        return -1;
    int rc;
    if (value == NULL) {
        rc = shk_dict_delete(self->h, k.t, k.p, (size_t)k.n, 0, 0);
        shk_py_key_free(&k);
        if (rc == SHK_OK)
            return 0;
        if (rc == SHK_ENOTFOUND) {
            PyErr_SetObject(PyExc_KeyError, key);
            return -1;
        }
        shk_py_raise(rc, "SharedDict: delete");
        return -1;
    }
    shk_dict_txn txn;
    if (build_entry(self, &k, value, &txn) < 0) {
        shk_py_key_free(&k);
        return -1;
    }
    shk_py_key_free(&k);
    rc = shk_dict_commit(self->h, &txn, SHK_DICT_SET, 0, 0, NULL);
    if (rc != SHK_OK) {
        shk_dict_abort(self->h, &txn);
        shk_py_raise(rc, "SharedDict: set");
        return -1;
    }
    return 0;
}

static PyObject *dict_mp_sub(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    ShkPyKey k;
    if (open_key(self, key, &k) < 0)
        return NULL;
    int found;
    PyObject *v = lookup(self, &k, &found);
    shk_py_key_free(&k);
    if (!v && !found && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return v;
}

static int dict_sq_contains(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    ShkPyKey k;
    if (open_key(self, key, &k) < 0) {
        /* like dict: an unhashable-ish key is an error, but a key of a type
         * we never store is simply absent */
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    shk_dict_ref r;
    int rc;
    do {
        rc = shk_dict_find(self->h, k.t, k.p, (size_t)k.n, &r);
        /* the key matched on a snapshot: confirm it was a stable one */
    } while (rc == SHK_OK && !shk_dict_ref_valid(self->h, &r));
    shk_py_key_free(&k);
    if (rc == SHK_OK)
        return 1;
    if (rc == SHK_ENOTFOUND)
        return 0;
    shk_py_raise(rc, "SharedDict: contains");
    return -1;
}

static Py_ssize_t dict_mp_len(PyObject *op)
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, -1);
    uint64_t n = shk_dict_count(self->h);
    if (n == SHK_DICT_COUNT_CORRUPT || n > (uint64_t)PY_SSIZE_T_MAX) {
        shk_py_raise(SHK_ECORRUPT, "SharedDict len");
        return -1;
    }
    return (Py_ssize_t)n;
}

/* The start of a METH_FASTCALL method: TypeError "<fn> expected N
 * arguments" (or "N or M") unless lo <= nargs <= hi, then the closed check.
 * 0, or -1 with the exception set. */
static int method_args(ShkPyDict *self, const char *fn, Py_ssize_t nargs, Py_ssize_t lo,
                       Py_ssize_t hi)
{
    if (nargs < lo || nargs > hi) {
        if (lo == hi)
            PyErr_Format(PyExc_TypeError, "%s expected %zd arguments", fn, lo);
        else
            PyErr_Format(PyExc_TypeError, "%s expected %zd or %zd arguments", fn, lo, hi);
        return -1;
    }
    CHECK_OPEN(self, -1);
    return 0;
}

/* get(key, default=None) */
static PyObject *dict_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyDict *self = (ShkPyDict *)op;
    ShkPyKey k;
    if (method_args(self, "get", nargs, 1, 2) < 0 || shk_py_key_encode(args[0], &k) < 0)
        return NULL;
    int found;
    PyObject *v = lookup(self, &k, &found);
    shk_py_key_free(&k);
    if (v || found || PyErr_Occurred())
        return v;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

/* ---- atomic read-modify-write: incr, compare_and_swap, setdefault, pop ----
 *
 * Each reads the value of the key and the entry it came from, decides, and
 * then writes only if nothing changed meanwhile: a store expecting that
 * entry (SHK_DICT_EXPECT, where entry 0 means "still absent"), an insert
 * only while absent (SHK_DICT_INSERT), or a delete of that entry.  A lost
 * race reads again.  rmw() is that loop and the argument checks; an
 * rmw_method per method holds only its arity and decision.  No Python code runs under the dict's lock: the step
 * (__eq__, __add__) and the value encoding (pickle) run before the commit,
 * which is why it has to be conditional. */

/* Commit (key -> value) in `mode`: SHK_DICT_EXPECT only if the key still is
 * (entry, ver) (0 = absent), SHK_DICT_INSERT only if it is absent.
 * 1 committed, 0 lost the race (read again), -1 error (`context` prefixes
 * the message). */
static int commit_entry(ShkPyDict *self, const ShkPyKey *k, PyObject *value, int mode,
                        uint64_t entry, uint64_t ver, const char *context)
{
    shk_dict_txn txn;
    if (build_entry(self, k, value, &txn) < 0)
        return -1;
    int rc = shk_dict_commit(self->h, &txn, mode, entry, ver, NULL);
    if (rc == SHK_OK)
        return 1;
    shk_dict_abort(self->h, &txn);
    if (rc == (mode == SHK_DICT_INSERT ? SHK_EEXIST : SHK_EAGAIN))
        return 0;
    shk_py_raise(rc, context);
    return -1;
}

/* Delete key only if it still is (entry, ver).  1 deleted, 0 lost the race
 * (changed or already gone), -1 error. */
static int delete_expect(ShkPyDict *self, const ShkPyKey *k, uint64_t entry, uint64_t ver,
                         const char *context)
{
    if (!self->h) /* closed by another thread while decoding (pickle) */
        return closed_error(self);
    int rc = shk_dict_delete(self->h, k->t, k->p, (size_t)k->n, entry, ver);
    if (rc == SHK_OK)
        return 1;
    if (rc == SHK_EAGAIN || rc == SHK_ENOTFOUND)
        return 0;
    shk_py_raise(rc, context);
    return -1;
}

enum { RMW_DONE, RMW_STORE, RMW_INSERT, RMW_DELETE };

typedef struct {
    int what;         /* RMW_*: return at once, or write then return */
    PyObject *store;  /* RMW_STORE/RMW_INSERT: the value (borrowed from
                          * result or the arguments) */
    PyObject *result; /* new reference: what the method returns once the
                          * write took (at once for RMW_DONE) */
} rmw_plan;

/* One read-modify-write method: its arguments and its decision. */
typedef struct {
    const char *name; /* for "<name> expected N arguments" */
    Py_ssize_t min_args, max_args;
    /* Arguments past the key that are wrong whatever the value: -1 with
     * an exception, checked before the key is encoded (may be NULL). */
    int (*check)(PyObject *const *args, Py_ssize_t nargs);
    /* The decision on the current value `cur` (borrowed; NULL if the key is
     * absent): fill *plan, or return -1 with an exception. */
    int (*step)(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan);
    const char *context; /* prefix of a commit's error message */
} rmw_method;

/* Lost races an rmw() accepts before it gives up.  Between processes a
 * lost race means another writer committed, so losing this many in a row
 * does not happen; a step whose own Python code rewrites the key (an
 * __eq__ that stores to it) loses every time, and would loop for ever. */
#define RMW_MAX_RACES 10000

/* The whole method: arguments (the key is args[0]), then read, decide and
 * write until the write takes, at most RMW_MAX_RACES times. */
static PyObject *rmw(PyObject *op, PyObject *const *args, Py_ssize_t nargs, const rmw_method *m)
{
    ShkPyDict *self = (ShkPyDict *)op;
    if (method_args(self, m->name, nargs, m->min_args, m->max_args) < 0 ||
        (m->check && m->check(args, nargs) < 0))
        return NULL;
    ShkPyKey k;
    if (shk_py_key_encode(args[0], &k) < 0)
        return NULL;
    PyObject *result = NULL;
    for (int races = 0;; races++) {
        if (races == RMW_MAX_RACES) {
            PyErr_Format(PyExc_RuntimeError,
                         "%s: the value of this key changed during each of %d attempts, so "
                         "nothing was written; does Python code that the operation runs "
                         "(an __eq__, __add__ or pickling) write to this key?",
                         m->name, RMW_MAX_RACES);
            break;
        }
        int found;
        uint64_t e, ver;
        PyObject *cur = lookup_ref(self, &k, &found, &e, &ver);
        if (!cur && PyErr_Occurred())
            break;
        rmw_plan plan = {RMW_DONE, NULL, NULL};
        int rc = m->step(cur, args, nargs, &plan);
        Py_XDECREF(cur);
        if (rc < 0)
            break;
        if (plan.what == RMW_DONE) {
            result = plan.result;
            break;
        }
        if (plan.what == RMW_DELETE)
            rc = delete_expect(self, &k, e, ver, m->context);
        else
            rc = commit_entry(self, &k, plan.store,
                              plan.what == RMW_INSERT ? SHK_DICT_INSERT : SHK_DICT_EXPECT, e,
                              ver, m->context);
        if (rc == 1) {
            result = plan.result;
            break;
        }
        Py_DECREF(plan.result);
        if (rc < 0)
            break;
    }
    shk_py_key_free(&k);
    return result;
}

static int incr_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan)
{
    if (cur && !(PyLong_CheckExact(cur) || PyFloat_CheckExact(cur))) {
        PyErr_Format(PyExc_TypeError, "incr: value of this key is a %.100s, not a number",
                     Py_TYPE(cur)->tp_name);
        return -1;
    }
    PyObject *one = nargs == 2 ? NULL : PyLong_FromLong(1);
    PyObject *delta = nargs == 2 ? args[1] : one;
    if (!delta)
        return -1;
    PyObject *nv = cur ? PyNumber_Add(cur, delta) : Py_NewRef(delta);
    Py_XDECREF(one);
    if (!nv)
        return -1;
    plan->what = RMW_STORE;
    plan->store = nv;
    plan->result = nv;
    return 0;
}

static int incr_check(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 2 && !(PyLong_Check(args[1]) || PyFloat_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "incr delta must be an int or a float");
        return -1;
    }
    return 0;
}

/* incr(key, delta=1) -> new value.  Atomic across processes. */
static const rmw_method incr_method = {"incr",     1,         2,
                                       incr_check, incr_step, "SharedDict: commit"};

static int cas_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan)
{
    (void)nargs;
    int eq = cur ? PyObject_RichCompareBool(cur, args[1], Py_EQ) : 0;
    if (eq < 0)
        return -1;
    if (eq) {
        plan->what = RMW_STORE;
        plan->store = args[2];
    }
    plan->result = Py_NewRef(eq ? Py_True : Py_False);
    return 0;
}

/* compare_and_swap(key, expected, new) -> bool */
static const rmw_method cas_method = {"compare_and_swap",  3, 3, NULL, cas_step,
                                      "SharedDict: commit"};

static int setdefault_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs,
                           rmw_plan *plan)
{
    if (!cur) {
        plan->what = RMW_INSERT;
        cur = plan->store = nargs == 2 ? args[1] : Py_None;
    }
    plan->result = Py_NewRef(cur);
    return 0;
}

/* setdefault(key, default=None): atomic across processes */
static const rmw_method setdefault_method = {
    "setdefault", 1, 2, NULL, setdefault_step, "SharedDict.setdefault"};

static int pop_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan)
{
    if (cur) {
        plan->what = RMW_DELETE;
    } else if (nargs == 2) {
        cur = args[1];
    } else {
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return -1;
    }
    plan->result = Py_NewRef(cur);
    return 0;
}

/* pop(key[, default]) */
static const rmw_method pop_method = {"pop", 1, 2, NULL, pop_step, "SharedDict.pop"};

/* The METH_FASTCALL functions of the methods above. */
#define RMW_FUNCTION(fn, method)                                                               \
    static PyObject *fn(PyObject *op, PyObject *const *args, Py_ssize_t nargs)                 \
    {                                                                                          \
        return rmw(op, args, nargs, &method);                                                  \
    }
RMW_FUNCTION(dict_incr, incr_method)
RMW_FUNCTION(dict_cas, cas_method)
RMW_FUNCTION(dict_setdefault, setdefault_method)
RMW_FUNCTION(dict_pop, pop_method)

/* ---- scans ---- */

enum { SCAN_KEYS = 1, SCAN_VALUES = 2, SCAN_ITEMS = 3 };

/* One lock-free pass; returns the list, or NULL with no error set if the
 * table was replaced meanwhile (retry), or NULL with an error. */
static PyObject *scan_once(ShkPyDict *self, int what, Py_ssize_t limit)
{
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    uint64_t pos = 0, tw = 0;
    shk_dict_ref r;
    for (;;) {
        if (limit >= 0 && PyList_GET_SIZE(out) >= limit)
            return out;
        if (!self->h) { /* closed by another thread while unpickling */
            Py_DECREF(out);
            closed_error(self);
            return NULL;
        }
        int rc = shk_dict_next(self->h, &pos, &tw, &r);
        if (rc == SHK_ENOTFOUND)
            return out;
        if (rc == SHK_EAGAIN) {
            Py_DECREF(out);
            return NULL;
        }
        if (rc != SHK_OK) {
            Py_DECREF(out);
            return shk_py_raise(rc, "SharedDict scan");
        }
        PyObject *key = NULL, *val = NULL, *raw = NULL;
        if (what & SCAN_KEYS)
            key = shk_py_key_decode(r.ktype, r.key, r.klen);
        if (what & SCAN_VALUES)
            val = shk_py_value_decode(r.vtype, r.val, r.vlen, &raw);
        int ok = shk_dict_ref_valid(self->h, &r);
        if (!ok || ((what & SCAN_KEYS) && !key) || ((what & SCAN_VALUES) && !val)) {
            Py_XDECREF(key);
            Py_XDECREF(val);
            Py_XDECREF(raw);
            if (ok) { /* a real decoding error */
                Py_DECREF(out);
                return NULL;
            }
            /* The slot changed (the key replaced or deleted) or the table
             * was replaced meanwhile: look at the same slot again, so a
             * replaced key is not skipped; the next step reports a
             * replaced table. */
            PyErr_Clear();
            pos = (uint64_t)r.shard << 32 | r.slot;
            continue;
        }
        if (raw) {
            Py_DECREF(val);
            val = finish_value(self, r.vtype, raw);
            Py_DECREF(raw);
            if (!val) {
                Py_XDECREF(key);
                Py_DECREF(out);
                return NULL;
            }
        }
        PyObject *item = what == SCAN_ITEMS  ? PyTuple_Pack(2, key, val)
                         : what == SCAN_KEYS ? Py_NewRef(key)
                                             : Py_NewRef(val);
        Py_XDECREF(key);
        Py_XDECREF(val);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
}

static PyObject *scan(ShkPyDict *self, int what, Py_ssize_t limit)
{
    CHECK_OPEN(self, NULL);
    /* A resize or clear restarts the pass: a snapshot never shows a key
     * twice.  Under a storm of resizes this retries; each resize at least
     * doubles the table, so the number of restarts is logarithmic. */
    for (;;) {
        PyObject *l = scan_once(self, what, limit);
        if (l || PyErr_Occurred())
            return l;
    }
}

static PyObject *dict_keys_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_KEYS, -1);
}
static PyObject *dict_values_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_VALUES, -1);
}
static PyObject *dict_items_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_ITEMS, -1);
}

/* A consistent snapshot: every key (and value) at one instant.  All shards
 * are frozen (writers wait; readers go on) while the keys are decoded and
 * the values copied raw; the values are decoded after the unlock, so no
 * Python code (unpickling, numpy, a finalizer run by the cyclic GC) runs
 * while writers wait.  Returns a list of keys, or a dict when `values`. */
static PyObject *dict_snapshot(PyObject *op, PyObject *want_values)
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int values = PyObject_IsTrue(want_values);
    if (values < 0)
        return NULL;
    PyObject *keys = PyList_New(0), *raws = PyList_New(0), *out = NULL;
    if (!keys || !raws)
        goto done;
#if PY_VERSION_HEX >= 0x030A0000
    int gc_was_enabled = PyGC_Disable();
#endif
    int rc = shk_dict_lock(self->h);
    if (rc == SHK_OK) {
        uint64_t pos = 0, tw = 0;
        shk_dict_ref r;
        while ((rc = shk_dict_next(self->h, &pos, &tw, &r)) == SHK_OK) {
            PyObject *k = shk_py_key_decode(r.ktype, r.key, r.klen);
            PyObject *v = !values
                              ? NULL
                              : Py_BuildValue("(iN)", (int)r.vtype,
                                              PyBytes_FromStringAndSize(r.val,
                                                                        (Py_ssize_t)r.vlen));
            int bad = !k || (values && !v) || PyList_Append(keys, k) < 0 ||
                      (values && PyList_Append(raws, v) < 0);
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (bad)
                break;
        }
        shk_dict_unlock(self->h);
    }
#if PY_VERSION_HEX >= 0x030A0000
    if (gc_was_enabled)
        PyGC_Enable();
#endif
    if (PyErr_Occurred())
        goto done;
    if (rc != SHK_ENOTFOUND) {
        shk_py_raise(rc == SHK_EAGAIN ? SHK_ECORRUPT : rc, "SharedDict.snapshot");
        goto done;
    }
    if (!values) {
        out = Py_NewRef(keys);
        goto done;
    }
    out = PyDict_New();
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(keys); i++) {
        PyObject *t = PyList_GET_ITEM(raws, i), *b = PyTuple_GET_ITEM(t, 1), *raw;
        shk_dict_ref r = {.vtype = (uint8_t)PyLong_AsLong(PyTuple_GET_ITEM(t, 0)),
                          .val = PyBytes_AS_STRING(b),
                          .vlen = (uint64_t)PyBytes_GET_SIZE(b)};
        PyObject *v = shk_py_value_decode(r.vtype, r.val, r.vlen, &raw);
        if (v && raw) {
            Py_DECREF(v);
            v = finish_value(self, r.vtype, raw);
            Py_DECREF(raw);
        }
        if (!v || PyDict_SetItem(out, PyList_GET_ITEM(keys, i), v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(v);
    }
done:
    Py_XDECREF(keys);
    Py_XDECREF(raws);
    return out;
}

/* The key of some live entry, looking first where the last popitem of this
 * handle left off (so draining a dict with popitem is linear, not
 * quadratic).  NULL with no error if the dict is empty. */
static PyObject *any_key(ShkPyDict *self)
{
    for (;;) {
        uint64_t start = self->pop_hint, pos = start, tw = 0;
        shk_dict_ref r;
        int rc = shk_dict_next(self->h, &pos, &tw, &r);
        if (rc == SHK_ENOTFOUND && start > 0) {
            pos = 0;
            tw = 0;
            rc = shk_dict_next(self->h, &pos, &tw, &r);
        }
        if (rc == SHK_ENOTFOUND) {
            self->pop_hint = 0;
            return NULL;
        }
        if (rc == SHK_EAGAIN)
            continue;
        if (rc != SHK_OK)
            return shk_py_raise(rc, "SharedDict.popitem");
        PyObject *key = shk_py_key_decode(r.ktype, r.key, r.klen);
        if (!shk_dict_ref_valid(self->h, &r)) {
            Py_XDECREF(key);
            PyErr_Clear();
            continue;
        }
        self->pop_hint = pos;
        return key;
    }
}

static PyObject *dict_popitem(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    for (;;) {
        PyObject *key = any_key(self);
        if (!key) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
            return NULL;
        }
        ShkPyKey k;
        if (shk_py_key_encode(key, &k) < 0) {
            Py_DECREF(key);
            return NULL;
        }
        int found;
        uint64_t e, ver;
        PyObject *v = lookup_ref(self, &k, &found, &e, &ver);
        if (!v) {
            shk_py_key_free(&k);
            Py_DECREF(key);
            if (PyErr_Occurred())
                return NULL;
            continue; /* another process took it first */
        }
        int rc = delete_expect(self, &k, e, ver, "SharedDict.popitem");
        shk_py_key_free(&k);
        PyObject *t = rc == 1 ? PyTuple_Pack(2, key, v) : NULL;
        Py_DECREF(key);
        Py_DECREF(v);
        if (rc != 0) /* taken, or an error */
            return t;
    }
}

static PyObject *dict_clear(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int rc = shk_dict_clear(self->h);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.clear");
    Py_RETURN_NONE;
}

/* ---- waiting for a change (WATCH in src/dict_internal.h) ---- */

static PyObject *dict_watch(PyObject *op, PyObject *on)
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int b = PyObject_IsTrue(on);
    if (b < 0)
        return NULL;
    shk_dict_watch(self->h, b);
    Py_RETURN_NONE;
}

static PyObject *dict_changes(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    return PyLong_FromUnsignedLong(shk_dict_changes(self->h));
}

/* _wait_change(seen, timeout) -> bool: False after timeout seconds (< 0:
 * none) with the counter still at seen; True when it moved or after a
 * wake-up (compare again).  The GIL is dropped with the segment retained,
 * not the handle, so close() from another thread stays immediate. */
static PyObject *dict_wait_change(PyObject *op, PyObject *args)
{
    ShkPyDict *self = (ShkPyDict *)op;
    unsigned long seen;
    double timeout;
    if (!PyArg_ParseTuple(args, "kd:_wait_change", &seen, &timeout))
        return NULL;
    CHECK_OPEN(self, NULL);
    int64_t ns = timeout < 0 ? -1 : timeout > 1e9 ? (int64_t)1e18 : (int64_t)(timeout * 1e9);
    shk_segment *seg = shk_dict_segment(self->h);
    const void *word = shk_dict_change_word(self->h);
    shk_segment_retain(seg);
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = shk_dict_wait_change_at(word, (uint32_t)seen, ns);
    Py_END_ALLOW_THREADS shk_segment_close(seg);
    if (rc == SHK_ETIMEDOUT)
        Py_RETURN_FALSE;
    if (rc == SHK_EINTR && PyErr_CheckSignals() < 0)
        return NULL;
    if (rc != SHK_OK && rc != SHK_EINTR)
        return shk_py_raise(rc, "SharedDict.wait");
    Py_RETURN_TRUE;
}

static PyObject *dict_entry_version(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    ShkPyKey k;
    if (open_key(self, key, &k) < 0)
        return NULL;
    shk_dict_ref r;
    int rc = shk_dict_find(self->h, k.t, k.p, (size_t)k.n, &r);
    shk_py_key_free(&k);
    if (rc == SHK_ENOTFOUND)
        return PyLong_FromLong(0);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.wait");
    return PyLong_FromUnsignedLongLong(r.ver);
}

/* ---- views ---- */

typedef struct {
    PyObject_HEAD shk_segment *seg; /* retained */
    uint64_t entry;                 /* pinned */
    char *ptr;
    Py_ssize_t len;
    pid_t pid; /* the process whose pin this is */
} ShkPyPin;

static int pin_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    ShkPyPin *p = (ShkPyPin *)op;
    return PyBuffer_FillInfo(view, op, p->ptr, p->len, 1, flags);
}

static void pin_dealloc(PyObject *op)
{
    ShkPyPin *p = (ShkPyPin *)op;
    if (p->seg) {
        /* A forked child has a copy of this object but not of the pin: only
         * the process that pinned may unpin. */
        if (p->pid == getpid())
            shk_dict_unpin_seg(p->seg, p->entry);
        shk_segment_close(p->seg);
    }
    Py_TYPE(op)->tp_free(op);
}

static PyBufferProcs pin_as_buffer = {pin_getbuffer, NULL};

static PyTypeObject ShkPyPin_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmkit._shmkit._DictPin",
    .tp_basicsize = sizeof(ShkPyPin),
    .tp_dealloc = pin_dealloc,
    .tp_as_buffer = &pin_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A pinned SharedDict value: keeps its memory valid while alive.",
};

/* get_view(key): zero-copy read-only view of an array (or a memoryview of
 * a bytes/str value). */
static PyObject *dict_get_view(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    ShkPyKey k;
    if (open_key(self, key, &k) < 0)
        return NULL;
    shk_dict_ref r;
    int rc;
    for (;;) {
        rc = shk_dict_find(self->h, k.t, k.p, (size_t)k.n, &r);
        if (rc != SHK_OK)
            break;
        rc = shk_dict_pin(self->h, &r);
        if (rc == SHK_OK)
            break;
        if (rc != SHK_EAGAIN)
            break;
    }
    shk_py_key_free(&k);
    if (rc == SHK_ENOTFOUND) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.get_view");
    /* pinned: the entry can no longer change or be reused */
    ShkPyPin *pin = PyObject_New(ShkPyPin, &ShkPyPin_Type);
    if (!pin) {
        shk_dict_unpin(self->h, r.entry);
        return NULL;
    }
    shk_segment *seg = shk_dict_segment(self->h);
    shk_segment_retain(seg);
    pin->seg = seg;
    pin->entry = r.entry;
    pin->pid = getpid();
    pin->ptr = (char *)r.val;
    pin->len = (Py_ssize_t)r.vlen;
    PyObject *res;
    if (r.vtype == 'a') {
        res = shk_py_array_decode(r.val, r.vlen, (PyObject *)pin);
    } else if (r.vtype == 'b' || r.vtype == 's' || r.vtype == 'A') {
        res = PyMemoryView_FromObject((PyObject *)pin);
    } else {
        PyErr_SetString(PyExc_TypeError, "get_view needs a numpy array, bytes or str value");
        res = NULL;
    }
    Py_DECREF(pin);
    return res;
}

/* ---- lifecycle ---- */

static int dict_init(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyDict *self = (ShkPyDict *)op;
    static char *kwlist[] = {"segment", "name", "create", "capacity", "allow_pickle", NULL};
    PyObject *segobj, *name;
    int create = 1, allow_pickle = 1;
    unsigned long long cap = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|pKp", kwlist, &segobj, &name, &create, &cap,
                                     &allow_pickle))
        return -1;
    shk_segment *seg = shk_py_handle_begin(op, &dict_ops, segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    shk_dict *d;
    int created = 0;
    int rc = shk_dict_open_named(seg, oname, create, cap, &d, &created);
    if (rc != SHK_OK)
        return shk_py_object_error(rc, name, "SharedDict", "create=True to create it");
    self->allow_pickle = allow_pickle;
    return shk_py_handle_opened(op, &dict_ops, d, created, segobj, name);
}

/* The base's dealloc, after the weak references the base does not have. */
static void dict_dealloc(PyObject *op)
{
    if (((ShkPyDict *)op)->weakrefs)
        PyObject_ClearWeakRefs(op);
    shk_py_handle_dealloc(op);
}

static PyObject *stats_dict(const shk_dict_stats *st, shk_dict *d, int full)
{
    shk_segment_info si;
    shk_segment_info_get(shk_dict_segment(d), &si);
    PyObject *r = Py_BuildValue(
        "{s:K,s:K,s:d,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "entries",
        (unsigned long long)st->count, "capacity", (unsigned long long)st->capacity,
        "load_factor", st->capacity ? (double)st->used_slots / (double)st->capacity : 0.0,
        "tombstones", (unsigned long long)st->tombstones, "table_bytes",
        (unsigned long long)st->table_bytes, "resizes", (unsigned long long)st->resizes,
        "recoveries", (unsigned long long)st->recoveries, "heap_used",
        (unsigned long long)si.heap_used, "heap_free", (unsigned long long)si.heap_free,
        "segment_size", (unsigned long long)si.file_size, "max_size",
        (unsigned long long)si.max_size);
    if (r && full) {
        PyObject *x = Py_BuildValue("{s:K,s:K,s:K,s:K}", "entry_bytes",
                                    (unsigned long long)st->entry_bytes, "key_bytes",
                                    (unsigned long long)st->key_bytes, "value_bytes",
                                    (unsigned long long)st->value_bytes, "max_probe",
                                    (unsigned long long)st->max_probe);
        if (!x || PyDict_Update(r, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(r);
            return NULL;
        }
        Py_DECREF(x);
    }
    return r;
}

static PyObject *dict_stats(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    shk_dict_stats st;
    shk_dict_stats_get(self->h, &st);
    if (st.count == SHK_DICT_COUNT_CORRUPT)
        return shk_py_raise(SHK_ECORRUPT, "SharedDict.stats");
    return stats_dict(&st, self->h, 0);
}

/* The encodings check() adds to the C invariants: every key, and every
 * value but pickles (never loaded here) and arrays (not copied here; their
 * header is validated when read), decodes.  0, or -1 with
 * CorruptSegmentError (or MemoryError). */
static int check_encodings(ShkPyDict *self)
{
    uint64_t pos = 0, tw = 0;
    shk_dict_ref r;
    for (;;) {
        int rc = shk_dict_next(self->h, &pos, &tw, &r);
        if (rc == SHK_ENOTFOUND)
            return 0;
        if (rc == SHK_EAGAIN) { /* table replaced: walk the new one */
            pos = tw = 0;
            continue;
        }
        if (rc != SHK_OK) {
            shk_py_raise(rc, "SharedDict.check");
            return -1;
        }
        PyObject *raw = NULL, *val = NULL;
        PyObject *key = shk_py_key_decode(r.ktype, r.key, r.klen);
        if (key) /* arrays are decoded too (a copy): their header is checked */
            val = r.vtype == 'p' ? Py_NewRef(Py_None)
                                 : shk_py_value_decode(r.vtype, r.val, r.vlen, &raw);
        if (!shk_dict_ref_valid(self->h, &r)) { /* changed meanwhile */
            Py_XDECREF(key);
            Py_XDECREF(val);
            Py_XDECREF(raw);
            PyErr_Clear();
            continue;
        }
        if (val && raw) { /* 'I': a big int's digits; 'a': an array */
            Py_DECREF(val);
            val = finish_value(self, r.vtype, raw);
        }
        Py_XDECREF(raw);
        Py_XDECREF(key);
        if (!val)
            return -1;
        Py_DECREF(val);
    }
}

static PyObject *dict_check(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    shk_dict_stats st;
    int rc = shk_dict_check(self->h, &st);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.check");
    if (check_encodings(self) < 0)
        return NULL;
    return stats_dict(&st, self->h, 1);
}

static PyObject *dict_get_allow_pickle(PyObject *op, void *c)
{
    (void)c;
    return PyBool_FromLong(((ShkPyDict *)op)->allow_pickle);
}

static PyObject *estimate_size(PyObject *m, PyObject *args)
{
    (void)m;
    unsigned long long n, kl, vl;
    if (!PyArg_ParseTuple(args, "KKK", &n, &kl, &vl))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_dict_estimate_size(n, kl, vl));
}

static PyObject *entry_footprint(PyObject *m, PyObject *args)
{
    (void)m;
    unsigned long long kl, vl;
    if (!PyArg_ParseTuple(args, "KK", &kl, &vl))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_dict_entry_footprint(kl, vl));
}

static PyMethodDef dict_methods[] = {
    {"get", (PyCFunction)(void (*)(void))dict_get, METH_FASTCALL,
     "get(key, default=None): the value of key, or default."},
    {"incr", (PyCFunction)(void (*)(void))dict_incr, METH_FASTCALL,
     "incr(key, delta=1): atomically add delta to a numeric value (absent = 0); "
     "returns the new value."},
    {"compare_and_swap", (PyCFunction)(void (*)(void))dict_cas, METH_FASTCALL,
     "compare_and_swap(key, expected, new): atomically set key to new if its "
     "value == expected; returns True if it did."},
    {"setdefault", (PyCFunction)(void (*)(void))dict_setdefault, METH_FASTCALL,
     "setdefault(key, default=None): atomic across processes."},
    {"pop", (PyCFunction)(void (*)(void))dict_pop, METH_FASTCALL,
     "pop(key[, default]): remove key and return its value."},
    {"clear", dict_clear, METH_NOARGS, "Remove every entry."},
    {"_watch", dict_watch, METH_O, "_watch(on): (un)register as a watcher."},
    {"_changes", dict_changes, METH_NOARGS, "The change counter (while watched)."},
    {"_wait_change", dict_wait_change, METH_VARARGS,
     "_wait_change(seen, timeout) -> bool: wait for the counter to leave seen."},
    {"_entry_version", dict_entry_version, METH_O,
     "The version of key's entry (unique per write), 0 if absent."},
    {"get_view", dict_get_view, METH_O,
     "get_view(key): zero-copy read-only view of a numpy array (or a "
     "memoryview of a bytes/str value), valid as long as it lives."},
    {"_keys", dict_keys_list, METH_NOARGS, "Snapshot list of the keys."},
    {"_values", dict_values_list, METH_NOARGS, "Snapshot list of the values."},
    {"_items", dict_items_list, METH_NOARGS, "Snapshot list of (key, value)."},
    {"_snapshot", dict_snapshot, METH_O,
     "_snapshot(values): keys (a list) or items (a dict) at one instant, writers held off."},
    {"popitem", dict_popitem, METH_NOARGS,
     "popitem(): remove and return some (key, value) pair; KeyError if empty."},
    {"stats", dict_stats, METH_NOARGS, "Counters: entries, capacity, load factor, heap..."},
    {"check", dict_check, METH_NOARGS,
     "Verify every invariant (CorruptSegmentError if one fails); returns stats."},
    {"close", shk_py_handle_close, METH_NOARGS, "Close this handle (the dict stays)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dict_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"allow_pickle", dict_get_allow_pickle, NULL, "Values may be pickled.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef dict_members[] = SHK_PY_HANDLE_MEMBERS("dict");

static PyMappingMethods dict_as_mapping = {dict_mp_len, dict_mp_sub, dict_mp_ass};
static PySequenceMethods dict_as_sequence = {.sq_contains = dict_sq_contains};

/* Written out rather than SHK_PY_HANDLE_TYPE: the dealloc is its own (weak
 * references), and a second .tp_dealloc initialiser would trip
 * -Woverride-init. */
static PyTypeObject ShkPyDict_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmkit._shmkit.Dict",
    .tp_basicsize = sizeof(ShkPyDict),
    .tp_dealloc = dict_dealloc,
    .tp_as_mapping = &dict_as_mapping,
    .tp_as_sequence = &dict_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Dict(segment, name, create=True, capacity=0, allow_pickle=True): "
              "the C core of shmkit.SharedDict.",
    .tp_weaklistoffset = offsetof(ShkPyDict, weakrefs),
    .tp_methods = dict_methods,
    .tp_getset = dict_getset,
    .tp_members = dict_members,
    .tp_init = dict_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_funcs[] = {
    {"dict_entry_footprint", entry_footprint, METH_VARARGS,
     "dict_entry_footprint(key_len, value_len): heap bytes of one entry."},
    {"dict_estimate_size", estimate_size, METH_VARARGS,
     "dict_estimate_size(entries, key_len, value_len): bytes a dict of that many "
     "entries needs (shk_dict_estimate_size)."},
    {NULL, NULL, 0, NULL},
};

int shk_py_init_dict(PyObject *m)
{
    if (PyType_Ready(&ShkPyPin_Type) < 0)
        return -1;
    if (shk_py_add_type(m, &ShkPyDict_Type, "Dict") < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "DICT_SHARDS", SHK_DICT_SHARDS) < 0)
        return -1;
    return PyModule_AddFunctions(m, module_funcs);
}
