/*
 * py_counter.c -- shmkit._shmkit.Counter: the sharded counter
 * (src/counter.c) as a Python type.
 *
 * add() is METH_FASTCALL and calls straight into libshmkit: the add itself
 * is one uncontended atomic instruction, so the GIL is never released and
 * the time goes to argument parsing.  int(c), c.value and `c += n` are
 * number slots / a getter over the same calls.  Close, dealloc and the
 * names are the shared handle ones (SHK_PY_HANDLE_HEAD).
 */
#include "shmkit_py.h"

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_counter */
} ShkPyCounter;

SHK_PY_HANDLE_OPS(counter, "Counter", shk_counter_close);

static int alive(PyObject *self) { return shk_py_handle_alive(self, &counter_ops); }

/* An int64 amount: an int (or __index__) that fits; bools are refused
 * (c.add(True) is almost certainly a mistake). */
static int amount(PyObject *o, int64_t *out)
{
    if (PyBool_Check(o) || !PyIndex_Check(o)) {
        PyErr_Format(PyExc_TypeError, "the amount must be an int, not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    PyObject *i = PyNumber_Index(o);
    if (!i)
        return -1;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(i, &overflow);
    Py_DECREF(i);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "the amount must fit in a signed 64-bit integer");
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* __init__(segment, name, cells=None, create=True): open Counter `name` in
 * `segment`, creating it (with `cells` cells) if absent and create. */
static int counter_init(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", "name", "cells", "create", NULL};
    PyObject *segobj, *name, *cells = Py_None;
    int create = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|Op:Counter", kwlist, &segobj, &name, &cells,
                                     &create))
        return -1;
    shk_segment *seg = shk_py_handle_begin(self, &counter_ops, segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    uint32_t ncells = 0;
    if (cells != Py_None) {
        if (PyBool_Check(cells) || !PyLong_Check(cells)) {
            PyErr_Format(PyExc_TypeError, "cells must be an int, not %.100s",
                         Py_TYPE(cells)->tp_name);
            return -1;
        }
        long long v = PyLong_AsLongLong(cells);
        if (v == -1 && PyErr_Occurred())
            PyErr_Clear();
        if (v < 1 || v > SHK_COUNTER_MAX_CELLS || (v & (v - 1))) {
            PyErr_Format(PyExc_ValueError, "cells must be a power of two from 1 to %u",
                         SHK_COUNTER_MAX_CELLS);
            return -1;
        }
        ncells = (uint32_t)v;
    }
    int created = 0;
    shk_counter *c;
    int rc = create ? shk_counter_open_named(seg, oname, ncells, &c, &created)
                    : shk_counter_attach_named(seg, oname, &c);
    if (rc != SHK_OK)
        return shk_py_object_error(rc, name, "Counter", NULL);
    return shk_py_handle_opened(self, &counter_ops, c, created, segobj, name);
}

static PyObject *counter_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!alive(self))
        return NULL;
    int64_t n = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "add() takes at most 1 argument (n)");
        return NULL;
    }
    if (nargs == 1 && amount(args[0], &n) < 0)
        return NULL;
    shk_counter_add(((ShkPyCounter *)self)->h, n);
    Py_RETURN_NONE;
}

static PyObject *counter_value(PyObject *self, void *Py_UNUSED(c))
{
    if (!alive(self))
        return NULL;
    return PyLong_FromLongLong(shk_counter_value(((ShkPyCounter *)self)->h));
}

static PyObject *counter_reset(PyObject *self, PyObject *Py_UNUSED(x))
{
    if (!alive(self))
        return NULL;
    return PyLong_FromLongLong(shk_counter_reset(((ShkPyCounter *)self)->h));
}

/* check() and stats(): the same figures; check() is the one documented to
 * raise on corruption, stats() the cheap look (both validate). */
static PyObject *counter_stats(PyObject *self, PyObject *Py_UNUSED(x))
{
    if (!alive(self))
        return NULL;
    shk_counter_stats st;
    int rc = shk_counter_check(((ShkPyCounter *)self)->h, &st);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Counter.check");
    return Py_BuildValue("{s:L,s:I,s:I,s:I,s:i}", "value", (long long)st.value, "cells",
                         st.ncells, "cells_claimed", st.claimed, "cells_live", st.live, "cell",
                         (int)st.mine);
}

static PyObject *counter_int(PyObject *self) { return counter_value(self, NULL); }

static PyObject *counter_iadd(PyObject *self, PyObject *other)
{
    int64_t n;
    if (!alive(self))
        return NULL;
    if (amount(other, &n) < 0)
        return NULL;
    shk_counter_add(((ShkPyCounter *)self)->h, n);
    Py_INCREF(self);
    return self;
}

static PyObject *counter_isub(PyObject *self, PyObject *other)
{
    int64_t n;
    if (!alive(self))
        return NULL;
    if (amount(other, &n) < 0)
        return NULL;
    if (n == INT64_MIN) {
        PyErr_SetString(PyExc_OverflowError, "the amount must fit in a signed 64-bit integer");
        return NULL;
    }
    shk_counter_add(((ShkPyCounter *)self)->h, -n);
    Py_INCREF(self);
    return self;
}

static PyObject *counter_get_cells(PyObject *self, void *Py_UNUSED(c))
{
    if (!alive(self))
        return NULL;
    return PyLong_FromUnsignedLong(shk_counter_ncells(((ShkPyCounter *)self)->h));
}

static PyMethodDef counter_methods[] = {
    {"add", (PyCFunction)(void (*)(void))counter_add, METH_FASTCALL,
     "add(n=1): add n (an int64, may be negative) to the counter: one atomic "
     "add on this process's own cell."},
    {"reset", counter_reset, METH_NOARGS,
     "reset() -> int: set the counter to 0 and return the total taken out; "
     "an add running meanwhile is in that total or stays in the counter."},
    {"check", counter_stats, METH_NOARGS,
     "Validate the shared layout; returns {'value', 'cells', 'cells_claimed', "
     "'cells_live', 'cell'} or raises CorruptSegmentError."},
    {"stats", counter_stats, METH_NOARGS,
     "{'value', 'cells', 'cells_claimed', 'cells_live', 'cell'}: cells with an "
     "owner, those whose owner is alive, and this process's cell (-1: none "
     "yet, or sharing one because every cell has a live owner)."},
    {"close", shk_py_handle_close, METH_NOARGS,
     "Close this handle; the counter stays in shared memory for others."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef counter_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"value", counter_value, NULL,
     "The sum of the cells: exact when no add is in flight; while adds run, "
     "the committed adds plus some of those in flight.",
     NULL},
    {"cells", counter_get_cells, NULL, "Number of cells.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef counter_members[] = SHK_PY_HANDLE_MEMBERS("counter");

static PyNumberMethods counter_as_number = {
    .nb_int = counter_int,
    .nb_inplace_add = counter_iadd,
    .nb_inplace_subtract = counter_isub,
};

static PyTypeObject Counter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0) SHK_PY_HANDLE_TYPE("Counter", ShkPyCounter),
    .tp_as_number = &counter_as_number,
    .tp_doc = "Counter(segment, name, cells=None, create=True): a sharded counter in "
              "shared memory.",
    .tp_methods = counter_methods,
    .tp_members = counter_members,
    .tp_getset = counter_getset,
    .tp_init = counter_init,
};

int shk_py_init_counter(PyObject *m)
{
    if (shk_py_add_type(m, &Counter_Type, "Counter") < 0)
        return -1;
    return PyModule_AddObject(m, "COUNTER_MAX_CELLS",
                              PyLong_FromUnsignedLong(SHK_COUNTER_MAX_CELLS));
}
