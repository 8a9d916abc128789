/*
 * module.c -- the extension module shmkit._shmkit: exceptions, the mapping
 * from libshmkit status codes to Python exceptions, and module init, which
 * calls each binding file's shk_py_init_<thing>().
 */
#include "shmkit_py.h"

#include <errno.h>

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
    case SHK_EBADOFF:
    case SHK_ECLOSED: type = PyExc_ValueError; break;
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

static struct PyModuleDef shmkit_module = {
    PyModuleDef_HEAD_INIT,
    "shmkit._shmkit",
    "C core of shmkit: shared-memory segments and data structures.",
    -1,
    NULL, NULL, NULL, NULL, NULL,
};

static int add_exceptions(PyObject *m)
{
    ShkPy_Error = PyErr_NewExceptionWithDoc(
        "shmkit.Error", "Base class of shmkit's own errors.", NULL, NULL);
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

PyMODINIT_FUNC PyInit__shmkit(void)
{
    PyObject *m = PyModule_Create(&shmkit_module);
    if (!m)
        return NULL;
    if (add_exceptions(m) < 0 ||
        PyModule_AddStringConstant(m, "C_VERSION", SHMKIT_VERSION) < 0 ||
        shk_py_init_segment(m) < 0 || shk_py_init_alloc(m) < 0 ||
        shk_py_init_dict(m) < 0 || shk_py_init_queue(m) < 0 ||
        shk_py_init_stack(m) < 0 || shk_py_init_bitset(m) < 0 ||
        shk_py_init_array(m) < 0 || shk_py_init_counter(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
