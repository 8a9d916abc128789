/*
 * py_dict_scan.c -- the SharedDict methods over every entry, and pinned
 * views (declared in py_dict.h): the lock-free key/value/item lists, the
 * consistent snapshot (writers held off, no Python code run meanwhile),
 * popitem, clear, and get_view with its _DictPin type, which holds an
 * entry's pin and the segment mapping for as long as a buffer exported from
 * it lives.  Built on py_dict_core.c; py_dict.c puts these in the type.  It
 * never calls py_dict_map.c (nor it this).
 */
#include "py_dict.h"

#include <unistd.h>

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
            shk_py_dict_closed_error(self);
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
            val = shk_py_dict_finish_value(self, r.vtype, raw);
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

PyObject *shk_py_dict_keys_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_KEYS, -1);
}
PyObject *shk_py_dict_values_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_VALUES, -1);
}
PyObject *shk_py_dict_items_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_ITEMS, -1);
}

/* A consistent snapshot: every key (and value) at one instant.  All shards
 * are frozen (writers wait; readers go on) while the keys are decoded and
 * the values copied raw; the values are decoded after the unlock, so no
 * Python code (unpickling, numpy, a finalizer run by the cyclic GC) runs
 * while writers wait.  Returns a list of keys, or a dict when `values`. */
PyObject *shk_py_dict_snapshot(PyObject *op, PyObject *want_values)
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
            v = shk_py_dict_finish_value(self, r.vtype, raw);
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

PyObject *shk_py_dict_popitem(PyObject *op, PyObject *noargs)
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
        int rc = shk_py_dict_delete_expect(self, &k, e, ver, "SharedDict.popitem");
        shk_py_key_free(&k);
        PyObject *t = rc == 1 ? PyTuple_Pack(2, key, v) : NULL;
        Py_DECREF(key);
        Py_DECREF(v);
        if (rc != 0) /* taken, or an error */
            return t;
    }
}

PyObject *shk_py_dict_clear(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int rc = shk_dict_clear(self->h);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.clear");
    Py_RETURN_NONE;
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
PyObject *shk_py_dict_get_view(PyObject *op, PyObject *key)
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

int shk_py_dict_pin_ready(void) { return PyType_Ready(&ShkPyPin_Type); }
