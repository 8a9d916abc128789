/*
 * py_handle.c -- what the handle types of the structures in a segment
 * (Array, Bitset, Queue, Stack, SharedDict, the allocators) share, so each binding file
 * holds only what is its own.
 *
 * A handle object:
 *
 *   +--------------------+  SHK_PY_HANDLE_HEAD (shmkit_py.h)
 *   | PyObject_HEAD      |
 *   | h        ----------+--> libshmkit handle (shk_array *, shk_queue *..)
 *   | ops      ----------+--> static {"Array", release}: name + how to close h
 *   | closed, waiting    |
 *   | created, trust     |
 *   | segment_name, object_name
 *   +--------------------+
 *   | the type's own fields (length, shape, allow_pickle, ...)
 *
 * Invariants: h != NULL implies ops != NULL (both set by
 * shk_py_handle_opened).  The handle is usable iff h != NULL and !closed.
 * closed with h != NULL only happens while waiting > 0: a thread of this
 * handle is blocked inside libshmkit with the GIL released (Queue.get), so
 * close() must not free h under it; the last waiter to return releases it.
 * Types that never drop the GIL inside a call leave waiting at 0, and for
 * them close() releases at once.
 *
 * Why a head and function pointers rather than per-type copies: close,
 * dealloc, the closed flag and the name members were the same code in
 * every binding file, differing only in the close function and the type
 * name.  Keeping ops in the object (not looked up from the type) lets a
 * Python subclass inherit everything.
 *
 * SharedDict (py_dict.c) uses it too, with its own dealloc that clears its
 * weak references before shk_py_handle_dealloc; it never drops the GIL, so
 * for it h == NULL alone means closed.
 *
 * Also here: the sequence protocol (index, item, slice) and the 1-D
 * zero-copy buffer export of Array and Bitset.
 */
#include "shmkit_py.h"

/* ------------------------------------------------------------ handles */

shk_segment *shk_py_handle_begin(PyObject *self, const ShkPyHandleOps *ops, PyObject *segobj)
{
    ShkPyHandle *hd = (ShkPyHandle *)self;
    if (hd->h || hd->closed) {
        PyErr_Format(PyExc_RuntimeError, "%s already initialised", ops->what);
        return NULL;
    }
    return shk_py_segment_arg(segobj);
}

int shk_py_handle_opened(PyObject *self, const ShkPyHandleOps *ops, void *h, int created,
                         PyObject *segobj, PyObject *name)
{
    ShkPyHandle *hd = (ShkPyHandle *)self;
    hd->ops = ops;
    hd->h = h;
    hd->created = created;
    hd->trust = ((ShkPySegment *)segobj)->trust; /* a Segment: handle_begin checked */
    return shk_py_set_names(segobj, name, &hd->object_name, &hd->segment_name);
}

int shk_py_handle_alive(PyObject *self, const ShkPyHandleOps *ops)
{
    ShkPyHandle *hd = (ShkPyHandle *)self;
    if (hd->h && !hd->closed)
        return 1;
    PyErr_Format(PyExc_ValueError, "operation on a closed %s", ops->what);
    return 0;
}

void shk_py_handle_release(ShkPyHandle *self)
{
    if (self->h && self->waiting == 0) {
        self->ops->release(self);
        self->h = NULL;
    }
}

PyObject *shk_py_handle_close(PyObject *self, PyObject *Py_UNUSED(unused))
{
    ShkPyHandle *hd = (ShkPyHandle *)self;
    hd->closed = 1;
    shk_py_handle_release(hd);
    Py_RETURN_NONE;
}

void shk_py_handle_dealloc(PyObject *self)
{
    ShkPyHandle *hd = (ShkPyHandle *)self;
    /* A waiter holds a reference, so none is left here. */
    shk_py_handle_release(hd);
    Py_XDECREF(hd->segment_name);
    Py_XDECREF(hd->object_name);
    Py_TYPE(self)->tp_free(self);
}

PyObject *shk_py_handle_get_closed(PyObject *self, void *Py_UNUSED(unused))
{
    ShkPyHandle *hd = (ShkPyHandle *)self;
    return PyBool_FromLong(hd->closed || hd->h == NULL);
}

PyObject *shk_py_handle_get_trust(PyObject *self, void *Py_UNUSED(unused))
{
    return PyUnicode_FromString(shk_py_trust_name(((ShkPyHandle *)self)->trust));
}

int shk_py_seq_index(PyObject *o, uint64_t len, const ShkPySeqOps *so, uint64_t *out)
{
    if (!PyIndex_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s, not %.100s", so->index_msg, Py_TYPE(o)->tp_name);
        return -1;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(o, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0)
        i += (Py_ssize_t)len;
    if (i < 0 || (uint64_t)i >= len) {
        PyErr_Format(PyExc_IndexError, "%s index out of range", so->handle->what);
        return -1;
    }
    *out = (uint64_t)i;
    return 0;
}

PyObject *shk_py_seq_item(PyObject *self, Py_ssize_t i, uint64_t len, const ShkPySeqOps *so)
{
    if (!shk_py_handle_alive(self, so->handle))
        return NULL;
    if (i < 0 || (uint64_t)i >= len) {
        PyErr_Format(PyExc_IndexError, "%s index out of range", so->handle->what);
        return NULL;
    }
    return so->get(self, (uint64_t)i);
}

PyObject *shk_py_seq_subscript(PyObject *self, PyObject *key, uint64_t len,
                               const ShkPySeqOps *so)
{
    if (!shk_py_handle_alive(self, so->handle))
        return NULL;
    if (!PySlice_Check(key)) {
        uint64_t i;
        if (shk_py_seq_index(key, len, so, &i) < 0)
            return NULL;
        return so->get(self, i);
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)len, &start, &stop, step);
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    for (Py_ssize_t k = 0, i = start; k < n; k++, i += step) {
        PyObject *v = so->get(self, (uint64_t)i);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, v);
    }
    return list;
}

/* ------------------------------------------------------- buffer export */

int shk_py_export_1d(PyObject *self, Py_buffer *view, int flags, shk_segment *seg, void *buf,
                     Py_ssize_t itemsize, const char *format, Py_ssize_t *shape,
                     Py_ssize_t *strides)
{
    /* The export pins the mapping, not the handle: close() of the handle
     * leaves numpy arrays over it valid. */
    shk_segment_retain(seg); /* dropped by shk_py_release_export */
    view->internal = seg;
    view->buf = buf;
    view->len = shape[0] * itemsize;
    view->readonly = 0;
    view->itemsize = itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)format : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) ? shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? strides : NULL;
    view->suboffsets = NULL;
    Py_INCREF(self);
    view->obj = self;
    return 0;
}

void shk_py_release_export(PyObject *Py_UNUSED(self), Py_buffer *view)
{
    shk_segment_close((shk_segment *)view->internal);
}
