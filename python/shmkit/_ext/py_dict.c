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
 *   allow_pickle (shk_py_dict_finish_value -> shk_py_unpickle is the one
 *   way a value is unpickled).  Values that are decoded by running code (pickle) or into a
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
 *   The files (layers; each calls only those below it, py_dict.h declares
 *   what crosses them):
 *     py_dict.c        this: the type, its method and attribute tables,
 *                      lifecycle (init, dealloc), stats/check, waiting for
 *                      a change, module registration
 *     py_dict_map.c    one key: the mapping slots, get, and the atomic
 *                      read-modify-write methods (incr, compare_and_swap,
 *                      setdefault, pop)
 *     py_dict_scan.c   every entry: key/value/item lists, snapshot,
 *                      popitem, clear; get_view and its _DictPin
 *     py_dict_core.c   what they share: the closed check, fetch (find,
 *                      decode, validate, retry), finish_value, building an
 *                      entry, deleting an entry only if unchanged
 *   py_dict_map.c and py_dict_scan.c never call each other.
 *
 *   The GIL is held throughout (operations take ~100 ns; releasing it would
 *   cost more, and holding it means no other thread can close the handle
 *   under a running operation).  No Python code runs under the dict's
 *   writer lock.
 */
#include "py_dict.h"

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
    shk_segment *seg = shk_py_handle_begin(op, shk_py_dict_ops, segobj);
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
    return shk_py_handle_opened(op, shk_py_dict_ops, d, created, segobj, name);
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
            val = shk_py_dict_finish_value(self, r.vtype, raw);
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
    {"get", (PyCFunction)(void (*)(void))shk_py_dict_get, METH_FASTCALL,
     "get(key, default=None): the value of key, or default."},
    {"incr", (PyCFunction)(void (*)(void))shk_py_dict_incr, METH_FASTCALL,
     "incr(key, delta=1): atomically add delta to a numeric value (absent = 0); "
     "returns the new value."},
    {"compare_and_swap", (PyCFunction)(void (*)(void))shk_py_dict_cas, METH_FASTCALL,
     "compare_and_swap(key, expected, new): atomically set key to new if its "
     "value == expected; returns True if it did."},
    {"setdefault", (PyCFunction)(void (*)(void))shk_py_dict_setdefault, METH_FASTCALL,
     "setdefault(key, default=None): atomic across processes."},
    {"pop", (PyCFunction)(void (*)(void))shk_py_dict_pop, METH_FASTCALL,
     "pop(key[, default]): remove key and return its value."},
    {"clear", shk_py_dict_clear, METH_NOARGS, "Remove every entry."},
    {"_watch", dict_watch, METH_O, "_watch(on): (un)register as a watcher."},
    {"_changes", dict_changes, METH_NOARGS, "The change counter (while watched)."},
    {"_wait_change", dict_wait_change, METH_VARARGS,
     "_wait_change(seen, timeout) -> bool: wait for the counter to leave seen."},
    {"_entry_version", dict_entry_version, METH_O,
     "The version of key's entry (unique per write), 0 if absent."},
    {"get_view", shk_py_dict_get_view, METH_O,
     "get_view(key): zero-copy read-only view of a numpy array (or a "
     "memoryview of a bytes/str value), valid as long as it lives."},
    {"_keys", shk_py_dict_keys_list, METH_NOARGS, "Snapshot list of the keys."},
    {"_values", shk_py_dict_values_list, METH_NOARGS, "Snapshot list of the values."},
    {"_items", shk_py_dict_items_list, METH_NOARGS, "Snapshot list of (key, value)."},
    {"_snapshot", shk_py_dict_snapshot, METH_O,
     "_snapshot(values): keys (a list) or items (a dict) at one instant, writers held off."},
    {"popitem", shk_py_dict_popitem, METH_NOARGS,
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

/* Written out rather than SHK_PY_HANDLE_TYPE: the dealloc is its own (weak
 * references), and a second .tp_dealloc initialiser would trip
 * -Woverride-init. */
static PyTypeObject ShkPyDict_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmkit._shmkit.Dict",
    .tp_basicsize = sizeof(ShkPyDict),
    .tp_dealloc = dict_dealloc,
    .tp_as_mapping = &shk_py_dict_as_mapping,
    .tp_as_sequence = &shk_py_dict_as_sequence,
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
    if (shk_py_dict_pin_ready() < 0)
        return -1;
    if (shk_py_add_type(m, &ShkPyDict_Type, "Dict") < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "DICT_SHARDS", SHK_DICT_SHARDS) < 0)
        return -1;
    return PyModule_AddFunctions(m, module_funcs);
}
