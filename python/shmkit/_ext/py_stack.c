/*
 * py_stack.c -- shmkit._shmkit.Stack: the lock-free stack (src/stack.c).
 *
 * Items as in the queue: `bytes` stored as they are (tag 0), anything else
 * pickled (tag 1) when the handle allows pickle.  Nothing here ever waits,
 * so the GIL is never released: a push or pop is one heap allocation or
 * free plus one CAS.
 */
#include "shmkit_py.h"

#include "structmember.h"

#define TAG_BYTES 0u
#define TAG_PICKLE 1u

typedef struct {
    PyObject_HEAD
    shk_stack *s;           /* NULL once closed */
    int created;
    int allow_pickle;
    PyObject *segment_name;
    PyObject *object_name;
} ShkPyStack;

static PyObject *pickle_dumps, *pickle_loads, *pickle_protocol;

static int s_alive(ShkPyStack *self)
{
    if (self->s)
        return 1;
    PyErr_SetString(PyExc_ValueError, "operation on a closed Stack");
    return 0;
}

/* __init__(segment, name, allow_pickle=True) */
static int stack_init(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyStack *self = (ShkPyStack *)op;
    static char *kwlist[] = {"segment", "name", "allow_pickle", NULL};
    PyObject *segobj, *name;
    int allow_pickle = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|p", kwlist, &segobj, &name,
                                     &allow_pickle))
        return -1;
    if (self->s) {
        PyErr_SetString(PyExc_RuntimeError, "Stack already initialised");
        return -1;
    }
    shk_segment *seg = shk_py_segment_arg(segobj);
    if (!seg)
        return -1;
    const char *oname = PyUnicode_AsUTF8(name);
    if (!oname)
        return -1;
    int created = 0;
    int rc = shk_stack_open_named(seg, oname, &self->s, &created);
    if (rc != SHK_OK) {
        self->s = NULL;
        return shk_py_object_error(rc, name, "Stack", NULL);
    }
    self->created = created;
    self->allow_pickle = allow_pickle;
    return shk_py_set_names(segobj, name, &self->object_name, &self->segment_name);
}

static void stack_dealloc(PyObject *op)
{
    ShkPyStack *self = (ShkPyStack *)op;
    shk_stack_close(self->s);
    Py_XDECREF(self->segment_name);
    Py_XDECREF(self->object_name);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *stack_push(PyObject *op, PyObject *item)
{
    ShkPyStack *self = (ShkPyStack *)op;
    if (!s_alive(self))
        return NULL;
    PyObject *holder = NULL;
    const char *data;
    Py_ssize_t len;
    uint32_t tag;
    if (PyBytes_CheckExact(item)) {
        data = PyBytes_AS_STRING(item);
        len = PyBytes_GET_SIZE(item);
        tag = TAG_BYTES;
    } else if (!self->allow_pickle) {
        PyErr_Format(PyExc_TypeError,
                     "this Stack takes bytes only (allow_pickle=False), not %.100s",
                     Py_TYPE(item)->tp_name);
        return NULL;
    } else {
        holder = PyObject_CallFunctionObjArgs(pickle_dumps, item, pickle_protocol, NULL);
        if (!holder)
            return NULL;
        if (!PyBytes_Check(holder)) {
            Py_DECREF(holder);
            PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
            return NULL;
        }
        data = PyBytes_AS_STRING(holder);
        len = PyBytes_GET_SIZE(holder);
        tag = TAG_PICKLE;
    }
    int rc = shk_stack_push(self->s, data, (uint64_t)len, tag);
    Py_XDECREF(holder);
    if (rc == SHK_ENOMEM) {
        PyErr_Format(ShkPy_OutOfMemoryError,
                     "Stack.push: the segment has no room for %zd bytes", len);
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Stack.push");
    Py_RETURN_NONE;
}

typedef struct {
    PyObject *raw;
    uint32_t tag;
    int allow_pickle;
} pop_ctx;

/* Buffer provider; peek may call it again when the top changed, so it
 * drops the previous attempt's object. */
static void *pop_alloc(void *vctx, uint64_t len, uint32_t tag)
{
    pop_ctx *c = vctx;
    Py_CLEAR(c->raw);
    if (tag != TAG_BYTES && tag != TAG_PICKLE) {
        PyErr_Format(ShkPy_CorruptSegmentError, "stack item with unknown tag %u", tag);
        return NULL;
    }
    if (tag == TAG_PICKLE && !c->allow_pickle) {
        PyErr_SetString(PyExc_TypeError,
                        "the top item is a pickle and this handle has "
                        "allow_pickle=False (the item was left on the stack)");
        return NULL;
    }
    if (len > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return NULL;
    }
    c->raw = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!c->raw)
        return NULL;
    c->tag = tag;
    return PyBytes_AS_STRING(c->raw);
}

static PyObject *take(PyObject *op, PyObject *const *args, Py_ssize_t nargs, int peek)
{
    ShkPyStack *self = (ShkPyStack *)op;
    if (!s_alive(self))
        return NULL;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument (default)",
                     peek ? "peek" : "pop");
        return NULL;
    }
    pop_ctx c = {NULL, 0, self->allow_pickle};
    int rc = peek ? shk_stack_peek(self->s, pop_alloc, &c)
                  : shk_stack_pop(self->s, pop_alloc, &c);
    if (rc == SHK_EEMPTY) {
        Py_XDECREF(c.raw);
        if (nargs == 1) {
            Py_INCREF(args[0]);
            return args[0];
        }
        PyErr_Format(PyExc_IndexError, "%s from an empty stack", peek ? "peek" : "pop");
        return NULL;
    }
    if (rc != SHK_OK) {
        Py_XDECREF(c.raw);
        if (!PyErr_Occurred())
            shk_py_raise(rc, peek ? "Stack.peek" : "Stack.pop");
        return NULL;
    }
    if (c.tag == TAG_BYTES)
        return c.raw;
    PyObject *obj = PyObject_CallOneArg(pickle_loads, c.raw);
    Py_DECREF(c.raw);
    return obj;
}

static PyObject *stack_pop(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return take(op, args, nargs, 0);
}

static PyObject *stack_peek(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    return take(op, args, nargs, 1);
}

static Py_ssize_t stack_len(PyObject *op)
{
    ShkPyStack *self = (ShkPyStack *)op;
    if (!s_alive(self))
        return -1;
    uint64_t n = shk_stack_size(self->s);
    return n > (uint64_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)n;
}

static PyObject *stack_check(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyStack *self = (ShkPyStack *)op;
    static char *kwlist[] = {"repair", NULL};
    int repair = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &repair))
        return NULL;
    if (!s_alive(self))
        return NULL;
    shk_stack_stats st;
    int rc = shk_stack_check(self->s, &st, repair);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Stack.check");
    return Py_BuildValue("{s:K,s:L,s:K,s:K,s:K}",
                         "items", (unsigned long long)st.items,
                         "counter", (long long)st.counter,
                         "bytes", (unsigned long long)st.bytes,
                         "total_push", (unsigned long long)st.total_push,
                         "total_pop", (unsigned long long)st.total_pop);
}

static PyObject *stack_close(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyStack *self = (ShkPyStack *)op;
    shk_stack_close(self->s);
    self->s = NULL;
    Py_RETURN_NONE;
}

static PyObject *stack_get_closed(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((ShkPyStack *)op)->s == NULL);
}

static PyObject *stack_get_allow_pickle(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((ShkPyStack *)op)->allow_pickle);
}

static PyMethodDef stack_methods[] = {
    {"push", stack_push, METH_O, "push(item): put item on top."},
    {"pop", (PyCFunction)(void (*)(void))stack_pop, METH_FASTCALL,
     "pop([default]): remove and return the top item; IndexError when empty "
     "unless default is given."},
    {"peek", (PyCFunction)(void (*)(void))stack_peek, METH_FASTCALL,
     "peek([default]): return the top item without removing it; IndexError "
     "when empty unless default is given."},
    {"check", (PyCFunction)(void (*)(void))stack_check, METH_VARARGS | METH_KEYWORDS,
     "check(repair=False): walk the stack and verify every node; returns "
     "stats or raises CorruptSegmentError.  repair=True resets the item "
     "counter to the nodes found (after a process was killed mid-push/pop; "
     "only when nobody is using the stack)."},
    {"close", stack_close, METH_NOARGS,
     "Close this handle (the stack stays for other processes)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stack_getset[] = {
    {"closed", stack_get_closed, NULL, "True once closed.", NULL},
    {"allow_pickle", stack_get_allow_pickle, NULL,
     "Whether this handle pickles non-bytes items and unpickles them.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef stack_members[] = {
    {"segment_name", T_OBJECT, offsetof(ShkPyStack, segment_name), READONLY,
     "Name of the segment holding the stack."},
    {"object_name", T_OBJECT, offsetof(ShkPyStack, object_name), READONLY,
     "Name of the stack inside its segment."},
    {"created", T_BOOL, offsetof(ShkPyStack, created), READONLY,
     "True if this handle created the stack."},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods stack_as_sequence = {
    .sq_length = stack_len,
};

static PyTypeObject Stack_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmkit._shmkit.Stack",
    .tp_basicsize = sizeof(ShkPyStack),
    .tp_dealloc = stack_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Stack(segment, name, allow_pickle=True): lock-free LIFO in shared memory.",
    .tp_methods = stack_methods,
    .tp_members = stack_members,
    .tp_getset = stack_getset,
    .tp_as_sequence = &stack_as_sequence,
    .tp_init = stack_init,
    .tp_new = PyType_GenericNew,
};

int shk_py_init_stack(PyObject *m)
{
    PyObject *pk = PyImport_ImportModule("pickle");
    if (!pk)
        return -1;
    pickle_dumps = PyObject_GetAttrString(pk, "dumps");
    pickle_loads = PyObject_GetAttrString(pk, "loads");
    pickle_protocol = PyObject_GetAttrString(pk, "HIGHEST_PROTOCOL");
    Py_DECREF(pk);
    if (!pickle_dumps || !pickle_loads || !pickle_protocol)
        return -1;
    return shk_py_add_type(m, &Stack_Type, "Stack");
}
