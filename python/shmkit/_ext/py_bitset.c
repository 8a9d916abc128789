/*
 * py_bitset.c -- shmkit._shmkit.Bitset: the atomic bitset (src/bitset.c)
 * as a Python type.
 *
 * Hot methods (set/clear/flip/test, [] and len) are METH_O or slots and call
 * straight into libshmkit ([] through the sequence helpers shared with
 * Array, py_handle.c: one more call, no measurable cost next to building
 * the result): the operation itself is a few nanoseconds, so the GIL is
 * never released (releasing it would cost more than the work) and all the
 * time goes to argument parsing.  Close, dealloc, the names and the buffer
 * export are the shared handle ones (SHK_PY_HANDLE_HEAD).
 *
 * The buffer protocol exports the words (format "Q", shape (nwords,),
 * writable) with zero copy; each export retains the segment mapping (in
 * view->internal) so close() of the handle cannot leave a numpy array over
 * unmapped memory.  The shape/strides arrays live in the object, which the
 * export also keeps alive (view->obj).
 *
 * Indexes follow Python lists: negative counts from the end; out of range
 * is IndexError; a non-integer index is TypeError.
 */
#include "shmkit_py.h"

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_bitset */
        uint64_t nbits;
    Py_ssize_t shape[1]; /* for buffer exports */
    Py_ssize_t strides[1];
} ShkPyBitset;

SHK_PY_HANDLE_OPS(bitset, "Bitset", shk_bitset_close);

static int alive(ShkPyBitset *s) { return shk_py_handle_alive((PyObject *)s, &bitset_ops); }

static PyObject *bit_get(PyObject *self, uint64_t i)
{
    return PyBool_FromLong(shk_bitset_test(((ShkPyBitset *)self)->h, i));
}

static const ShkPySeqOps bitset_seq = {&bitset_ops, "Bitset indices must be integers", bit_get};

/* A Python index (negative counts from the end) -> bit number. */
static int bit_index(ShkPyBitset *s, PyObject *o, uint64_t *out)
{
    return shk_py_seq_index(o, s->nbits, &bitset_seq, out);
}

/* Value of a bit assignment: a bool, or the int 0 or 1. */
static int bit_value(PyObject *v)
{
    if (v == Py_True)
        return 1;
    if (v == Py_False)
        return 0;
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "a bit must be a bool or 0/1, not %.100s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (overflow || (x != 0 && x != 1)) {
        PyErr_SetString(PyExc_ValueError, "a bit must be 0 or 1");
        return -1;
    }
    return (int)x;
}

/* ------------------------------------------------------------ creation */

/* __init__(segment, name, length=None): open Bitset `name` in `segment`,
 * creating it with `length` bits if it does not exist. */
static int bitset_init(PyObject *self, PyObject *args, PyObject *kw)
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    static char *kwlist[] = {"segment", "name", "length", NULL};
    PyObject *segobj, *name, *size = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|O:Bitset", kwlist, &segobj, &name, &size))
        return -1;
    shk_segment *seg = shk_py_handle_begin(self, &bitset_ops, segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    uint64_t nbits = 0;
    if (size != Py_None) {
        if (!PyIndex_Check(size) || PyBool_Check(size)) {
            PyErr_Format(PyExc_TypeError, "length must be an int, not %.100s",
                         Py_TYPE(size)->tp_name);
            return -1;
        }
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(size, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (overflow || v <= 0 || (unsigned long long)v > SHK_BITSET_MAX_BITS) {
            PyErr_Format(PyExc_ValueError, "length must be between 1 and %llu bits",
                         (unsigned long long)SHK_BITSET_MAX_BITS);
            return -1;
        }
        nbits = (uint64_t)v;
    }
    int created = 0;
    shk_bitset *b;
    int rc = shk_bitset_open_named(seg, oname, nbits, &b, &created);
    if (rc != SHK_OK) {
        shk_bitset *other;
        if (rc == SHK_EINVAL && shk_bitset_open_named(seg, oname, 0, &other, NULL) == SHK_OK) {
            PyErr_Format(PyExc_ValueError, "Bitset %R exists with length %llu, not %llu", name,
                         (unsigned long long)shk_bitset_size(other), (unsigned long long)nbits);
            shk_bitset_close(other);
            return -1;
        }
        return shk_py_object_error(rc, name, "Bitset", "give length= to create it");
    }
    s->nbits = shk_bitset_size(b);
    s->shape[0] = (Py_ssize_t)shk_bitset_nwords(b);
    s->strides[0] = 8;
    return shk_py_handle_opened(self, &bitset_ops, b, created, segobj, name);
}

/* ---------------------------------------------------------- bit methods */

#define BIT_METHOD(fn, op)                                                                     \
    static PyObject *fn(PyObject *self, PyObject *arg)                                         \
    {                                                                                          \
        ShkPyBitset *s = (ShkPyBitset *)self;                                                  \
        uint64_t i;                                                                            \
        if (!alive(s) || bit_index(s, arg, &i) < 0)                                            \
            return NULL;                                                                       \
        return PyBool_FromLong(op(s->h, i));                                                   \
    }

BIT_METHOD(bitset_set, shk_bitset_set)
BIT_METHOD(bitset_clear, shk_bitset_clear)
BIT_METHOD(bitset_flip, shk_bitset_flip)
BIT_METHOD(bitset_test, shk_bitset_test)

static PyObject *bitset_count(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_bitset_count(s->h));
}

static PyObject *bitset_any(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    return PyBool_FromLong(shk_bitset_any(s->h));
}

static PyObject *bitset_all(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    return PyBool_FromLong(shk_bitset_all(s->h));
}

static PyObject *bitset_clear_all(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    shk_bitset_clear_all(s->h);
    Py_RETURN_NONE;
}

static PyObject *bitset_set_all(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    shk_bitset_set_all(s->h);
    Py_RETURN_NONE;
}

/* find_first_set(start=0) / find_first_clear(start=0) -> int or None.
 * A negative start counts from the end; a start past the end finds
 * nothing (like str.find). */
static PyObject *find_common(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             int want_set)
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "takes at most 1 argument (start)");
        return NULL;
    }
    uint64_t from = 0;
    if (nargs == 1) {
        if (!PyIndex_Check(args[0])) {
            PyErr_Format(PyExc_TypeError, "start must be an int, not %.100s",
                         Py_TYPE(args[0])->tp_name);
            return NULL;
        }
        Py_ssize_t v = PyNumber_AsSsize_t(args[0], NULL); /* clamps */
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (v < 0) {
            v += (Py_ssize_t)s->nbits;
            if (v < 0)
                v = 0;
        }
        from = (uint64_t)v;
    }
    int64_t r = want_set ? shk_bitset_find_next_set(s->h, from)
                         : shk_bitset_find_next_clear(s->h, from);
    if (r < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(r);
}

static PyObject *bitset_find_first_set(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return find_common(self, args, n, 1);
}

static PyObject *bitset_find_first_clear(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return find_common(self, args, n, 0);
}

static PyObject *bitset_check(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    uint64_t count = 0;
    int rc = shk_bitset_check(s->h, &count);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Bitset.check");
    const shk_py_figure f[] = {
        {"length", s->nbits},
        {"words", shk_bitset_nwords(s->h)},
        {"count", count},
    };
    return SHK_PY_FIGURES(f);
}

static PyObject *bitset_words(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    PyObject *raw = shk_py_memoryview(shk_bitset_segment(s->h), shk_bitset_words(s->h),
                                      (Py_ssize_t)shk_bitset_nwords(s->h) * 8, 0);
    if (!raw)
        return NULL;
    PyObject *mv = PyObject_CallMethod(raw, "cast", "s", "Q");
    Py_DECREF(raw);
    return mv;
}

/* --------------------------------------------------------------- slots */

static Py_ssize_t bitset_len(PyObject *self)
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return -1;
    return (Py_ssize_t)s->nbits;
}

static PyObject *bitset_item(PyObject *self, Py_ssize_t i)
{
    return shk_py_seq_item(self, i, ((ShkPyBitset *)self)->nbits, &bitset_seq);
}

static PyObject *bitset_subscript(PyObject *self, PyObject *key)
{
    return shk_py_seq_subscript(self, key, ((ShkPyBitset *)self)->nbits, &bitset_seq);
}

static int bitset_ass_subscript(PyObject *self, PyObject *key, PyObject *value)
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return -1;
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "Bitset bits cannot be deleted (use clear(i))");
        return -1;
    }
    if (PySlice_Check(key)) {
        PyErr_SetString(
            PyExc_TypeError,
            "Bitset slices are read-only (use set/clear per bit, set_all or clear_all)");
        return -1;
    }
    uint64_t i;
    if (bit_index(s, key, &i) < 0)
        return -1;
    int v = bit_value(value);
    if (v < 0)
        return -1;
    shk_bitset_assign(s->h, i, v);
    return 0;
}

/* ------------------------------------------------------ buffer protocol */

static int bitset_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s)) {
        view->obj = NULL;
        return -1;
    }
    return shk_py_export_1d(self, view, flags, shk_bitset_segment(s->h), shk_bitset_words(s->h),
                            8, "Q", s->shape, s->strides);
}


/* ---------------------------------------------------------------- type */

static PyObject *bitset_get_length(PyObject *self, void *Py_UNUSED(c))
{
    ShkPyBitset *s = (ShkPyBitset *)self;
    if (!alive(s))
        return NULL;
    return PyLong_FromUnsignedLongLong(s->nbits);
}

static PyMethodDef bitset_methods[] = {
    {"set", bitset_set, METH_O,
     "set(i) -> bool: atomically set bit i; returns its previous value."},
    {"clear", bitset_clear, METH_O,
     "clear(i) -> bool: atomically clear bit i; returns its previous value."},
    {"flip", bitset_flip, METH_O,
     "flip(i) -> bool: atomically invert bit i; returns its previous value."},
    {"test", bitset_test, METH_O, "test(i) -> bool: the value of bit i."},
    {"count", bitset_count, METH_NOARGS, "Number of set bits."},
    {"any", bitset_any, METH_NOARGS, "True if at least one bit is set."},
    {"all", bitset_all, METH_NOARGS, "True if every bit is set."},
    {"clear_all", bitset_clear_all, METH_NOARGS, "Clear every bit (word by word)."},
    {"set_all", bitset_set_all, METH_NOARGS, "Set every bit (word by word)."},
    {"find_first_set", (PyCFunction)(void (*)(void))bitset_find_first_set, METH_FASTCALL,
     "find_first_set(start=0) -> int | None: the first set bit at or after "
     "start, or None if there is none."},
    {"find_first_clear", (PyCFunction)(void (*)(void))bitset_find_first_clear, METH_FASTCALL,
     "find_first_clear(start=0) -> int | None: the first clear bit at or "
     "after start, or None if there is none."},
    {"check", bitset_check, METH_NOARGS,
     "Validate the shared layout; returns {'length', 'words', 'count'} or raises "
     "CorruptSegmentError."},
    {"words", bitset_words, METH_NOARGS,
     "A writable memoryview (format 'Q') of the 64-bit words, zero copy; "
     "bit i is bit i % 64 of word i // 64.  It keeps the mapping alive."},
    {"close", shk_py_handle_close, METH_NOARGS,
     "Close this handle; the bitset stays in shared memory for others."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef bitset_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"length", bitset_get_length, NULL, "Number of bits.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef bitset_members[] = SHK_PY_HANDLE_MEMBERS("bitset");

SHK_PY_SEQUENCE_TYPE(Bitset_Type, bitset, "Bitset", ShkPyBitset,
                     "Bitset(segment, name, length=None): an atomic bitset in shared memory.");

int shk_py_init_bitset(PyObject *m)
{
    if (shk_py_add_type(m, &Bitset_Type, "Bitset") < 0)
        return -1;
    return PyModule_AddObject(m, "BITSET_MAX_BITS",
                              PyLong_FromUnsignedLongLong(SHK_BITSET_MAX_BITS));
}
