/*
 * py_dict_map.c -- the SharedDict methods on one key (declared in
 * py_dict.h): the mapping slots (d[k], d[k] = v, del d[k], k in d, len),
 * get, and the atomic read-modify-write methods incr, compare_and_swap,
 * setdefault and pop, each a read, a decision and a write that takes only
 * if the entry is still the one read.  Built on py_dict_core.c; py_dict.c
 * puts these in the type.  It never calls py_dict_scan.c (nor it this).
 */
#include "py_dict.h"

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
    if (shk_py_dict_build_entry(self, &k, value, &txn) < 0) {
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
PyObject *shk_py_dict_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
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
    if (shk_py_dict_build_entry(self, k, value, &txn) < 0)
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
            rc = shk_py_dict_delete_expect(self, &k, e, ver, m->context);
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
PyObject *shk_py_dict_incr(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return rmw(op, args, nargs, &incr_method);
}

PyObject *shk_py_dict_cas(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return rmw(op, args, nargs, &cas_method);
}

PyObject *shk_py_dict_setdefault(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return rmw(op, args, nargs, &setdefault_method);
}

PyObject *shk_py_dict_pop(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return rmw(op, args, nargs, &pop_method);
}

PyMappingMethods shk_py_dict_as_mapping = {dict_mp_len, dict_mp_sub, dict_mp_ass};
PySequenceMethods shk_py_dict_as_sequence = {.sq_contains = dict_sq_contains};
