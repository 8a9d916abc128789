/*
 * py_array.c -- shmkit._shmkit.Array: typed atomic arrays (src/array.c) as
 * a Python type.
 *
 * Every element read or write goes through libshmkit's atomic element
 * operations; a slice is a sequence of them (not one atomic step).  The
 * GIL is held throughout: one operation is nanoseconds.
 *
 * Conversions (strict, like the stdlib `array` module):
 *   integer elements accept int (and anything with __index__, e.g. numpy
 *     integers; bool counts as int); a float or str is TypeError; a value
 *     outside the element type's range is OverflowError, nothing changed.
 *   float elements accept int and float (anything with __float__); a
 *     float64 value beyond float32's range stored into float32 becomes inf.
 * add() on integer elements is checked (OverflowError, element unchanged,
 * if the result leaves the type's range); add(i, d, wrap=True) is modular.
 *
 * Slice assignment converts every value before storing any, so a bad value
 * leaves the array unchanged; the sequence must have the slice's length
 * (ValueError otherwise: the array's length is fixed).
 *
 * The buffer protocol exports the elements (struct format of the dtype,
 * shape (length,), writable) with zero copy, retaining the segment mapping
 * for the life of each export (view->internal), so numpy arrays over it
 * stay valid after close().
 *
 * What Array shares with Bitset (indexing, slices, the buffer export, the
 * type object) and with every handle (close, dealloc, names) lives in
 * py_handle.c; this file holds the element conversions and operations.
 */
#include "shmkit_py.h"

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_array */
        uint64_t length;
    uint32_t dtype;
    int is_float, is_signed;
    unsigned itemsize;
    char format[2];
    Py_ssize_t shape[1];
    Py_ssize_t strides[1];
} ShkPyArray;

SHK_PY_HANDLE_OPS(array, "Array", shk_array_close);

static int alive(ShkPyArray *s) { return shk_py_handle_alive((PyObject *)s, &array_ops); }

static PyObject *elem_get(PyObject *self, uint64_t i);

static const ShkPySeqOps array_seq = {&array_ops, "Array indices must be integers or slices",
                                      elem_get};

static int elem_index(ShkPyArray *s, PyObject *o, uint64_t *out)
{
    return shk_py_seq_index(o, s->length, &array_seq, out);
}

static PyObject *overflow(ShkPyArray *s, PyObject *v)
{
    PyErr_Format(PyExc_OverflowError, "%R is out of range for %s", v, shk_dtype_name(s->dtype));
    return NULL;
}

/* Python value -> scalar of the array's kind.  The range of narrow
 * integer types is checked by libshmkit (SHK_EINVAL on store), here only
 * what fits 64 bits. */
static int to_scalar(ShkPyArray *s, PyObject *v, shk_scalar *out)
{
    if (s->is_float) {
        if (!PyFloat_Check(v) && !PyIndex_Check(v) &&
            !(Py_TYPE(v)->tp_as_number && Py_TYPE(v)->tp_as_number->nb_float)) {
            PyErr_Format(PyExc_TypeError, "%s elements must be real numbers, not %.100s",
                         shk_dtype_name(s->dtype), Py_TYPE(v)->tp_name);
            return -1;
        }
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        out->f = d;
        return 0;
    }
    if (!PyIndex_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s elements must be integers, not %.100s",
                     shk_dtype_name(s->dtype), Py_TYPE(v)->tp_name);
        return -1;
    }
    /* an int is used as is; anything else with __index__ is converted */
    PyObject *n = PyLong_Check(v) ? (Py_INCREF(v), v) : PyNumber_Index(v);
    if (!n)
        return -1;
    int rc = 0;
    if (s->is_signed) {
        long long x = PyLong_AsLongLong(n);
        if (x == -1 && PyErr_Occurred())
            rc = -1;
        else
            out->i = x;
    } else {
        unsigned long long x = PyLong_AsUnsignedLongLong(n);
        if (x == (unsigned long long)-1 && PyErr_Occurred())
            rc = -1;
        else
            out->u = x;
    }
    Py_DECREF(n);
    if (rc < 0 && PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        overflow(s, v);
    }
    return rc;
}

/* Does a converted value fit the element type?  (Floats always do.) */
static int fits(ShkPyArray *s, shk_scalar v)
{
    if (s->is_float || s->itemsize == 8)
        return 1;
    unsigned bits = s->itemsize * 8;
    if (s->is_signed)
        return v.i >= -(int64_t)(1ull << (bits - 1)) &&
               v.i <= (int64_t)((1ull << (bits - 1)) - 1);
    return v.u <= (1ull << bits) - 1;
}

static PyObject *from_scalar(ShkPyArray *s, shk_scalar v)
{
    if (s->is_float)
        return PyFloat_FromDouble(v.f);
    if (s->is_signed)
        return PyLong_FromLongLong(v.i);
    return PyLong_FromUnsignedLongLong(v.u);
}

static PyObject *load(ShkPyArray *s, uint64_t i)
{
    shk_scalar v;
    shk_array_load(s->h, i, &v);
    return from_scalar(s, v);
}

static PyObject *elem_get(PyObject *self, uint64_t i) { return load((ShkPyArray *)self, i); }

/* Store an already converted value; OverflowError if it does not fit. */
static int store(ShkPyArray *s, uint64_t i, shk_scalar v, PyObject *orig)
{
    if (shk_array_store(s->h, i, v) != SHK_OK) {
        overflow(s, orig);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ creation */

/* __init__(segment, name, dtype=0, length=0): open Array `name` in
 * `segment`, creating it (all zero) if absent and dtype/length are given.
 * dtype is an shk_dtype code (the Python layer parses names). */
static int array_init(PyObject *self, PyObject *args, PyObject *kw)
{
    ShkPyArray *s = (ShkPyArray *)self;
    static char *kwlist[] = {"segment", "name", "dtype", "length", NULL};
    PyObject *segobj, *name;
    unsigned int dtype = 0;
    unsigned long long length = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|IK:Array", kwlist, &segobj, &name, &dtype,
                                     &length))
        return -1;
    shk_segment *seg = shk_py_handle_begin(self, &array_ops, segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    if (dtype != 0 && shk_dtype_itemsize(dtype) == 0) {
        PyErr_Format(PyExc_ValueError, "unknown dtype code %u", dtype);
        return -1;
    }
    if (dtype && length > SHK_ARRAY_MAX_BYTES / shk_dtype_itemsize(dtype)) {
        PyErr_Format(PyExc_ValueError, "length must be at most %llu for %s",
                     (unsigned long long)(SHK_ARRAY_MAX_BYTES / shk_dtype_itemsize(dtype)),
                     shk_dtype_name(dtype));
        return -1;
    }
    int created = 0;
    shk_array *a;
    int rc = shk_array_open_named(seg, oname, dtype, length, &a, &created);
    if (rc != SHK_OK) {
        shk_array *other;
        if (rc == SHK_EINVAL &&
            shk_array_open_named(seg, oname, 0, 0, &other, NULL) == SHK_OK) {
            PyErr_Format(PyExc_ValueError, "Array %R exists as %s[%llu], not %s[%llu]", name,
                         shk_dtype_name(shk_array_dtype(other)),
                         (unsigned long long)shk_array_length(other),
                         shk_dtype_name(dtype ? dtype : shk_array_dtype(other)),
                         (unsigned long long)(length ? length : shk_array_length(other)));
            shk_array_close(other);
            return -1;
        }
        return shk_py_object_error(rc, name, "Array", "give dtype and length to create it");
    }
    s->length = shk_array_length(a);
    s->dtype = shk_array_dtype(a);
    s->is_float = shk_dtype_is_float(s->dtype);
    s->is_signed = shk_dtype_is_signed(s->dtype);
    s->itemsize = shk_array_itemsize(a);
    s->format[0] = shk_dtype_format(s->dtype);
    s->format[1] = 0;
    s->shape[0] = (Py_ssize_t)s->length;
    s->strides[0] = (Py_ssize_t)s->itemsize;
    return shk_py_handle_opened(self, &array_ops, a, created, segobj, name);
}

/* ------------------------------------------------------ atomic methods */

static int nargs_ok(Py_ssize_t nargs, Py_ssize_t want, const char *sig)
{
    if (nargs == want)
        return 1;
    PyErr_Format(PyExc_TypeError, "%s takes exactly %zd arguments (%zd given)", sig, want,
                 nargs);
    return 0;
}

/* add(i, delta, wrap=False) -> previous value */
static PyObject *array_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s))
        return NULL;
    Py_ssize_t npos = PyVectorcall_NARGS(nargs);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *wrapobj = NULL;
    if (nkw == 1 && npos == 2 &&
        PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "wrap") == 0)
        wrapobj = args[2];
    else if (nkw == 0 && npos == 3)
        wrapobj = args[2];
    else if (nkw != 0 || npos != 2) {
        PyErr_SetString(PyExc_TypeError, "add() takes (i, delta, wrap=False)");
        return NULL;
    }
    int wrap = 0;
    if (wrapobj && (wrap = PyObject_IsTrue(wrapobj)) < 0)
        return NULL;
    uint64_t i;
    if (elem_index(s, args[0], &i) < 0)
        return NULL;
    PyObject *d = args[1];
    shk_scalar prev;
    int rc;
    if (s->is_float) {
        if (wrap) {
            PyErr_SetString(PyExc_TypeError, "wrap=True is for integer arrays");
            return NULL;
        }
        shk_scalar v;
        if (to_scalar(s, d, &v) < 0)
            return NULL;
        rc = shk_array_add_float(s->h, i, v.f, &prev);
        return rc == SHK_OK ? from_scalar(s, prev) : shk_py_raise(rc, "add");
    }
    if (!PyIndex_Check(d)) {
        PyErr_Format(PyExc_TypeError, "delta must be an integer for %s, not %.100s",
                     shk_dtype_name(s->dtype), Py_TYPE(d)->tp_name);
        return NULL;
    }
    PyObject *n = PyNumber_Index(d);
    if (!n)
        return NULL;
    if (wrap) {
        /* modular: any int, reduced mod 2^64 then to the element width */
        unsigned long long u = PyLong_AsUnsignedLongLongMask(n);
        Py_DECREF(n);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        rc = shk_array_add_wrap(s->h, i, u, &prev);
        return rc == SHK_OK ? from_scalar(s, prev) : shk_py_raise(rc, "add");
    }
    int of = 0;
    long long x = PyLong_AsLongLongAndOverflow(n, &of);
    if (x == -1 && PyErr_Occurred()) {
        Py_DECREF(n);
        return NULL;
    }
    if (!of) {
        rc = shk_array_add(s->h, i, x, &prev);
    } else {
        /* beyond int64: sign and magnitude, if the magnitude fits uint64 */
        int neg = of < 0;
        PyObject *mag = neg ? PyNumber_Negative(n) : (Py_INCREF(n), n);
        if (!mag) {
            Py_DECREF(n);
            return NULL;
        }
        unsigned long long m = PyLong_AsUnsignedLongLong(mag);
        Py_DECREF(mag);
        if (m == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_DECREF(n);
            PyErr_Format(PyExc_OverflowError, "adding %R overflows %s", d,
                         shk_dtype_name(s->dtype));
            return NULL;
        }
        rc = shk_array_add_wide(s->h, i, neg, m, &prev);
    }
    Py_DECREF(n);
    if (rc != SHK_OK) {
        PyErr_Format(PyExc_OverflowError,
                     "adding %R to element %llu overflows %s (element unchanged)", d,
                     (unsigned long long)i, shk_dtype_name(s->dtype));
        return NULL;
    }
    return from_scalar(s, prev);
}

static PyObject *array_exchange(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s) || !nargs_ok(nargs, 2, "exchange(i, value)"))
        return NULL;
    uint64_t i;
    shk_scalar v, prev;
    if (elem_index(s, args[0], &i) < 0 || to_scalar(s, args[1], &v) < 0)
        return NULL;
    if (shk_array_exchange(s->h, i, v, &prev) != SHK_OK)
        return overflow(s, args[1]);
    return from_scalar(s, prev);
}

/* compare_and_swap(i, expected, new) -> bool */
static PyObject *array_cas(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s) || !nargs_ok(nargs, 3, "compare_and_swap(i, expected, new)"))
        return NULL;
    uint64_t i;
    shk_scalar e, d;
    if (elem_index(s, args[0], &i) < 0 || to_scalar(s, args[2], &d) < 0)
        return NULL;
    if (!fits(s, d))
        return overflow(s, args[2]);
    if (to_scalar(s, args[1], &e) < 0) {
        /* an integer expected value beyond 64 bits can never match */
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    int rc = shk_array_compare_and_swap(s->h, i, e, d, NULL);
    if (rc < 0)
        return overflow(s, args[2]);
    return PyBool_FromLong(rc);
}

static PyObject *array_fill(PyObject *self, PyObject *arg)
{
    ShkPyArray *s = (ShkPyArray *)self;
    shk_scalar v;
    if (!alive(s) || to_scalar(s, arg, &v) < 0)
        return NULL;
    if (shk_array_store(s->h, 0, v) != SHK_OK)
        return overflow(s, arg);
    for (uint64_t i = 1; i < s->length; i++)
        shk_array_store(s->h, i, v);
    Py_RETURN_NONE;
}

static PyObject *array_tolist(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s))
        return NULL;
    if (s->length > (uint64_t)PY_SSIZE_T_MAX / sizeof(PyObject *))
        return PyErr_NoMemory();
    PyObject *list = PyList_New((Py_ssize_t)s->length);
    if (!list)
        return NULL;
    for (uint64_t i = 0; i < s->length; i++) {
        PyObject *v = load(s, i);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

static PyObject *array_check(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s))
        return NULL;
    int rc = shk_array_check(s->h);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Array.check");
    return Py_BuildValue("{s:s,s:K,s:I,s:K}", "dtype", shk_dtype_name(s->dtype), "length",
                         (unsigned long long)s->length, "itemsize", s->itemsize, "nbytes",
                         (unsigned long long)(s->length * s->itemsize));
}

/* --------------------------------------------------------------- slots */

static Py_ssize_t array_len(PyObject *self)
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s))
        return -1;
    return (Py_ssize_t)s->length;
}

static PyObject *array_item(PyObject *self, Py_ssize_t i)
{
    return shk_py_seq_item(self, i, ((ShkPyArray *)self)->length, &array_seq);
}

static PyObject *array_subscript(PyObject *self, PyObject *key)
{
    return shk_py_seq_subscript(self, key, ((ShkPyArray *)self)->length, &array_seq);
}

static int assign_slice(ShkPyArray *s, PyObject *key, PyObject *value)
{
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return -1;
    Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)s->length, &start, &stop, step);
    PyObject *seq = PySequence_Fast(value, "can only assign an iterable to an Array slice");
    if (!seq)
        return -1;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    if (m != n) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError,
                     "cannot assign %zd values to a slice of %zd elements (an Array's "
                     "length is fixed)",
                     m, n);
        return -1;
    }
    shk_scalar *tmp = PyMem_Malloc(sizeof(shk_scalar) * (size_t)(n ? n : 1));
    if (!tmp) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int rc = 0;
    /* Convert and range-check everything before storing anything: a bad
     * value leaves the array unchanged. */
    for (Py_ssize_t k = 0; k < n && rc == 0; k++) {
        rc = to_scalar(s, items[k], &tmp[k]);
        if (rc == 0 && !fits(s, tmp[k])) {
            overflow(s, items[k]);
            rc = -1;
        }
    }
    if (rc == 0)
        for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
            shk_array_store(s->h, (uint64_t)i, tmp[k]);
    PyMem_Free(tmp);
    Py_DECREF(seq);
    return rc;
}

static int array_ass_subscript(PyObject *self, PyObject *key, PyObject *value)
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s))
        return -1;
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "Array elements cannot be deleted (fixed length)");
        return -1;
    }
    if (PySlice_Check(key))
        return assign_slice(s, key, value);
    uint64_t i;
    shk_scalar v;
    if (elem_index(s, key, &i) < 0 || to_scalar(s, value, &v) < 0)
        return -1;
    return store(s, i, v, value);
}

/* ------------------------------------------------------ buffer protocol */

static int array_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    ShkPyArray *s = (ShkPyArray *)self;
    if (!alive(s)) {
        view->obj = NULL;
        return -1;
    }
    return shk_py_export_1d(self, view, flags, shk_array_segment(s->h), shk_array_data(s->h),
                            (Py_ssize_t)s->itemsize, s->format, s->shape, s->strides);
}


/* ---------------------------------------------------------------- type */

#define ARRAY_GETTER(fn, expr)                                                                 \
    static PyObject *fn(PyObject *self, void *Py_UNUSED(c))                                    \
    {                                                                                          \
        ShkPyArray *s = (ShkPyArray *)self;                                                    \
        if (!alive(s))                                                                         \
            return NULL;                                                                       \
        return expr;                                                                           \
    }

ARRAY_GETTER(get_dtype, PyUnicode_FromString(shk_dtype_name(s->dtype)))
ARRAY_GETTER(get_dtype_code, PyLong_FromUnsignedLong(s->dtype))
ARRAY_GETTER(get_itemsize, PyLong_FromUnsignedLong(s->itemsize))
ARRAY_GETTER(get_format, PyUnicode_FromString(s->format))
ARRAY_GETTER(get_length, PyLong_FromUnsignedLongLong(s->length))
ARRAY_GETTER(get_nbytes, PyLong_FromUnsignedLongLong(s->length * s->itemsize))

static PyMethodDef array_methods[] = {
    {"add", (PyCFunction)(void (*)(void))array_add, METH_FASTCALL | METH_KEYWORDS,
     "add(i, delta, wrap=False) -> previous value: atomic fetch-add.  Integer "
     "arrays: OverflowError (element unchanged) if the result leaves the "
     "type's range, or modular arithmetic with wrap=True.  Float arrays: an "
     "atomic float add (compare-and-swap loop)."},
    {"exchange", (PyCFunction)(void (*)(void))array_exchange, METH_FASTCALL,
     "exchange(i, value) -> previous value: atomic swap."},
    {"compare_and_swap", (PyCFunction)(void (*)(void))array_cas, METH_FASTCALL,
     "compare_and_swap(i, expected, new) -> bool: atomically set element i to "
     "new if it equals expected (bitwise for floats)."},
    {"fill", array_fill, METH_O, "fill(value): store value into every element."},
    {"tolist", array_tolist, METH_NOARGS, "A list copy of the elements."},
    {"check", array_check, METH_NOARGS,
     "Validate the shared layout; returns {'dtype', 'length', 'itemsize', "
     "'nbytes'} or raises CorruptSegmentError."},
    {"close", shk_py_handle_close, METH_NOARGS,
     "Close this handle; the array stays in shared memory for others."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef array_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"dtype", get_dtype, NULL, "Element type name, e.g. 'int64'.", NULL},
    {"dtype_code", get_dtype_code, NULL, "Element type code (shk_dtype).", NULL},
    {"itemsize", get_itemsize, NULL, "Bytes per element.", NULL},
    {"format", get_format, NULL, "struct-module format character of an element.", NULL},
    {"length", get_length, NULL, "Number of elements.", NULL},
    {"nbytes", get_nbytes, NULL, "Bytes of element data.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef array_members[] = SHK_PY_HANDLE_MEMBERS("array");

SHK_PY_SEQUENCE_TYPE(Array_Type, array, "Array", ShkPyArray,
                     "Array(segment, name, dtype=0, length=0): a typed atomic array in shared "
                     "memory.");

int shk_py_init_array(PyObject *m)
{
    if (shk_py_add_type(m, &Array_Type, "Array") < 0 ||
        PyModule_AddObject(m, "ARRAY_MAX_BYTES",
                           PyLong_FromUnsignedLongLong(SHK_ARRAY_MAX_BYTES)) < 0)
        return -1;
    for (uint32_t dt = 1; dt < SHK_DT_MAX_; dt++) {
        char name[32];
        snprintf(name, sizeof name, "DT_%s", shk_dtype_name(dt));
        for (char *p = name + 3; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        if (PyModule_AddIntConstant(m, name, (long)dt) < 0)
            return -1;
    }
    return 0;
}
