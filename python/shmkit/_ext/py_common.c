/*
 * py_common.c -- the bottom of the extension: what every binding file uses
 * and that calls none of them.  The exceptions and the mapping from
 * libshmkit status codes to them, argument parsing shared by all types
 * (offsets and sizes, object names), the errors of opening an object in a
 * segment, the zero-copy memoryview that keeps a mapping alive, and the
 * figures of a free list's check().
 *
 * Layers, each calling only those below it:
 *   module.c                   module init: each file's shk_py_init_<thing>
 *   py_dict.c py_queue.c py_stack.c py_array.c py_bitset.c py_counter.c
 *   py_alloc.c                 the types of the structures
 *   py_handle.c                the structure handle base, sequences
 *   py_codec.c                 Python objects <-> tagged bytes
 *   py_segment.c               Segment, opening segments
 *   py_common.c                this file
 */
#include "shmkit_py.h"

#include <string.h>

PyObject *ShkPy_Error;
PyObject *ShkPy_CorruptSegmentError;
PyObject *ShkPy_OutOfMemoryError;
PyObject *ShkPy_ForeignSegmentError;

PyObject *shk_py_raise(int status, const char *context)
{
    PyObject *type;
    const char *msg = shk_strerror(status);
    switch (status) {
    case SHK_ENOMEM: type = ShkPy_OutOfMemoryError; break;
    case SHK_ECORRUPT: type = ShkPy_CorruptSegmentError; break;
    case SHK_EFOREIGN: type = ShkPy_ForeignSegmentError; break;
    case SHK_EINVAL:
    case SHK_EBADOFF: type = PyExc_ValueError; break;
    case SHK_ENOENT: type = PyExc_FileNotFoundError; break;
    case SHK_EEXIST: type = PyExc_FileExistsError; break;
    case SHK_ETYPE: type = PyExc_TypeError; break;
    case SHK_ENOTFOUND: type = PyExc_KeyError; break;
    case SHK_ETIMEDOUT: type = PyExc_TimeoutError; break;
    case SHK_EINTR: type = PyExc_InterruptedError; break;
    case SHK_ESYS:
        if (context)
            return PyErr_SetFromErrnoWithFilename(PyExc_OSError, context);
        return PyErr_SetFromErrno(PyExc_OSError);
    default: type = ShkPy_Error; break;
    }
    if (context)
        PyErr_Format(type, "%s: %s", context, msg);
    else
        PyErr_SetString(type, msg);
    return NULL;
}

static PyTypeObject ShkPyView_Type;

int shk_py_init_common(PyObject *m)
{
    if (PyType_Ready(&ShkPyView_Type) < 0)
        return -1;
    ShkPy_Error = PyErr_NewExceptionWithDoc("shmkit.Error",
                                            "Base class of shmkit's own errors.", NULL, NULL);
    if (!ShkPy_Error)
        return -1;
    ShkPy_CorruptSegmentError = PyErr_NewExceptionWithDoc(
        "shmkit.CorruptSegmentError",
        "The shared memory is not a valid shmkit segment: foreign, corrupt, "
        "truncated, or of another layout version.",
        ShkPy_Error, NULL);
    if (!ShkPy_CorruptSegmentError)
        return -1;
    PyObject *bases = PyTuple_Pack(2, ShkPy_Error, PyExc_MemoryError);
    if (!bases)
        return -1;
    ShkPy_OutOfMemoryError = PyErr_NewExceptionWithDoc(
        "shmkit.OutOfMemoryError",
        "The segment or allocator has no room for the request (nothing was "
        "changed). Create it with a larger size/max_size or free memory.",
        bases, NULL);
    Py_DECREF(bases);
    if (!ShkPy_OutOfMemoryError)
        return -1;
    bases = PyTuple_Pack(2, ShkPy_Error, PyExc_PermissionError);
    if (!bases)
        return -1;
    ShkPy_ForeignSegmentError = PyErr_NewExceptionWithDoc(
        "shmkit.ForeignSegmentError",
        "The segment's file is owned by another user, or others than its owner "
        "may write it, and the open did not say to trust that (trust=\"group\" "
        "or trust=\"any\"). Whoever can write a segment controls what its "
        "readers see, and runs code in any reader that unpickles.",
        bases, NULL);
    Py_DECREF(bases);
    if (!ShkPy_ForeignSegmentError)
        return -1;
    Py_INCREF(ShkPy_Error);
    Py_INCREF(ShkPy_CorruptSegmentError);
    Py_INCREF(ShkPy_ForeignSegmentError);
    Py_INCREF(ShkPy_OutOfMemoryError);
    Py_INCREF(ShkPy_OutOfMemoryError);
    if (PyModule_AddObject(m, "Error", ShkPy_Error) < 0 ||
        PyModule_AddObject(m, "CorruptSegmentError", ShkPy_CorruptSegmentError) < 0 ||
        PyModule_AddObject(m, "ForeignSegmentError", ShkPy_ForeignSegmentError) < 0 ||
        PyModule_AddObject(m, "OutOfMemoryError", ShkPy_OutOfMemoryError) < 0 ||
        PyModule_AddObject(m, "SegmentFullError", ShkPy_OutOfMemoryError) < 0)
        return -1;
    return 0;
}

int shk_py_u64_max(PyObject *o, const char *what, uint64_t max, uint64_t *out)
{
    /* bool is an int subclass, but size=True is a mistake, not 1 */
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < 0 || (uint64_t)v > max) {
        PyErr_Format(PyExc_ValueError, "%s must be between 0 and %llu, not %R", what,
                     (unsigned long long)max, o);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int shk_py_u64(PyObject *o, const char *what, uint64_t *out)
{
    return shk_py_u64_max(o, what, (uint64_t)INT64_MAX, out);
}

int shk_py_add_type(PyObject *m, PyTypeObject *t, const char *name)
{
    if (PyType_Ready(t) < 0)
        return -1;
    Py_INCREF(t);
    if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

const char *shk_py_object_name(PyObject *name)
{
    Py_ssize_t nlen;
    const char *oname = PyUnicode_AsUTF8AndSize(name, &nlen);
    if (!oname)
        return NULL;
    if (nlen < 1 || nlen > SHK_OBJECT_NAME_MAX || (Py_ssize_t)strlen(oname) != nlen) {
        PyErr_Format(PyExc_ValueError,
                     "invalid object name %R (1 to %d bytes of UTF-8, no NUL)", name,
                     SHK_OBJECT_NAME_MAX);
        return NULL;
    }
    return oname;
}

/* ------------------------------------------------- objects in segments */

int shk_py_object_error(int rc, PyObject *name, const char *what, const char *hint)
{
    if (rc == SHK_ENOENT)
        PyErr_Format(PyExc_FileNotFoundError, "no %s named %R in the segment%s%s%s", what, name,
                     hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
    else if (rc == SHK_ETYPE)
        PyErr_Format(PyExc_TypeError, "object %R in the segment is not %s %s", name,
                     strchr("AEIOU", what[0]) ? "an" : "a", what);
    else if (rc == SHK_EINVAL)
        PyErr_Format(PyExc_ValueError, "invalid %s name %R or size (names are 1 to %d bytes)",
                     what, name, SHK_OBJECT_NAME_MAX);
    else if (rc == SHK_EFULL)
        PyErr_Format(ShkPy_OutOfMemoryError,
                     "cannot create %s %R: the segment's object directory is full "
                     "(%d named objects per segment); use another segment, or keep "
                     "related values in one SharedDict",
                     what, name, SHK_DIR_CAPACITY);
    else
        shk_py_raise(rc, PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : what);
    return -1;
}

int shk_py_set_names(PyObject *segobj, PyObject *name, PyObject **object_name,
                     PyObject **segment_name)
{
    PyObject *sn = PyObject_GetAttrString(segobj, "name");
    if (!sn)
        return -1;
    Py_INCREF(name);
    Py_XSETREF(*object_name, name);
    Py_XSETREF(*segment_name, sn);
    return 0;
}

/* ------------------------------------------------------------- trust */

static const char *const trust_names[] = {"owner", "group", "any"};

const char *shk_py_trust_name(int trust)
{
    return trust >= SHK_TRUST_OWNER && trust <= SHK_TRUST_ANY ? trust_names[trust] : "?";
}

/* ------------------------------------------------------------ the views */

typedef struct {
    PyObject_HEAD shk_segment *seg;
    void *ptr;
    Py_ssize_t len;
    int readonly;
} ShkPyView;

static int view_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    ShkPyView *v = (ShkPyView *)self;
    return PyBuffer_FillInfo(view, self, v->ptr, v->len, v->readonly, flags);
}

static void view_dealloc(PyObject *self)
{
    ShkPyView *v = (ShkPyView *)self;
    shk_segment_close(v->seg);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs view_as_buffer = {view_getbuffer, NULL};

static PyTypeObject ShkPyView_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmkit._shmkit._View",
    .tp_basicsize = sizeof(ShkPyView),
    .tp_dealloc = view_dealloc,
    .tp_as_buffer = &view_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keeps a segment mapped while a memoryview of it lives.",
};

PyObject *shk_py_memoryview(shk_segment *seg, void *ptr, Py_ssize_t len, int readonly)
{
    ShkPyView *v = PyObject_New(ShkPyView, &ShkPyView_Type);
    if (!v)
        return NULL;
    shk_segment_retain(seg);
    v->seg = seg;
    v->ptr = ptr;
    v->len = len;
    v->readonly = readonly;
    PyObject *mv = PyMemoryView_FromObject((PyObject *)v);
    Py_DECREF(v); /* the memoryview's buffer holds it now */
    return mv;
}

PyObject *shk_py_figures(const shk_py_figure *f, size_t n)
{
    PyObject *d = PyDict_New();
    for (size_t i = 0; d && i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(f[i].value);
        if (!v || PyDict_SetItemString(d, f[i].name, v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

PyObject *shk_py_freelist_check(shk_freelist *fl, const char *context)
{
    shk_freelist_stats st;
    int rc = shk_freelist_check(fl, &st);
    if (rc != SHK_OK)
        return shk_py_raise(rc, context);
    const shk_py_figure f[] = {
        {"capacity", st.capacity},
        {"used_bytes", st.used_bytes},
        {"free_list_bytes", st.free_list_bytes},
        {"untouched_bytes", st.untouched_bytes},
        {"live_blocks", st.live_blocks},
        {"free_blocks", st.free_blocks},
        {"leaked_blocks", st.leaked_blocks},
        {"abandoned_blocks", st.abandoned_blocks},
        {"unverified_lists", st.unverified_lists},
        {"cached_blocks", st.cached_blocks},
        {"cached_bytes", st.cached_bytes},
    };
    return SHK_PY_FIGURES(f);
}
