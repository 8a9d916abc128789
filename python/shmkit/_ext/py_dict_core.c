/*
 * py_dict_core.c -- what every operation on a SharedDict handle shares
 * (declared in py_dict.h): the closed check, reading a key's value (find,
 * decode, validate, retry; arrays through a pin; pickles only with
 * allow_pickle), building an entry for a store, and deleting an entry only
 * if it is still the one that was read.  The lowest of the dict's files:
 * py_dict_map.c and py_dict_scan.c call it, it calls neither.
 */
#include "py_dict.h"

#include <string.h>

SHK_PY_HANDLE_OPS(dict, "SharedDict", shk_dict_close);

const ShkPyHandleOps *const shk_py_dict_ops = &dict_ops;

int shk_py_dict_closed_error(ShkPyDict *self)
{
    shk_py_handle_alive((PyObject *)self, &dict_ops);
    return -1;
}

PyObject *shk_py_dict_finish_value(const ShkPyDict *self, uint8_t vtype, PyObject *raw)
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

PyObject *shk_py_dict_fetch(ShkPyDict *self, const ShkPyKey *k, int *found, uint64_t *entry,
                            uint64_t *ver)
{
    shk_dict_ref r;
    for (;;) {
        if (SHK_UNLIKELY(!self->h)) {
            /* a retry loop ran Python code (__eq__, pickle) and another
             * thread closed the handle meanwhile */
            *found = 1;
            shk_py_dict_closed_error(self);
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
                v = shk_py_dict_finish_value(self, r.vtype, raw);
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

int shk_py_dict_build_entry(ShkPyDict *self, const ShkPyKey *k, PyObject *value,
                            shk_dict_txn *txn)
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
        return shk_py_dict_closed_error(self);
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

int shk_py_dict_delete_expect(ShkPyDict *self, const ShkPyKey *k, uint64_t entry, uint64_t ver,
                              const char *context)
{
    if (!self->h) /* closed by another thread while decoding (pickle) */
        return shk_py_dict_closed_error(self);
    int rc = shk_dict_delete(self->h, k->t, k->p, (size_t)k->n, entry, ver);
    if (rc == SHK_OK)
        return 1;
    if (rc == SHK_EAGAIN || rc == SHK_ENOTFOUND)
        return 0;
    shk_py_raise(rc, context);
    return -1;
}
