/*
 * py_stack.c -- shmkit._shmkit.Stack: the lock-free stack (src/stack.c).
 *
 * Items as in the queue (shk_py_item_*, py_handle.c): `bytes` stored as
 * they are, anything else pickled when the handle allows pickle.  Nothing
 * here ever waits, so the GIL is never released: a push or pop is one heap
 * allocation or free plus one CAS.  The handle basics (close, dealloc,
 * names) are the shared SHK_PY_HANDLE_HEAD ones.
 */
#include "shmkit_py.h"

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_stack */
        int allow_pickle;
} ShkPyStack;

SHK_PY_HANDLE_OPS(stack, "Stack", shk_stack_close);

static int s_alive(ShkPyStack *self)
{
    return shk_py_handle_alive((PyObject *)self, &stack_ops);
}

/* __init__(segment, name, allow_pickle=True) */
static int stack_init(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyStack *self = (ShkPyStack *)op;
    static char *kwlist[] = {"segment", "name", "allow_pickle", NULL};
    PyObject *segobj, *name;
    int allow_pickle = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|p", kwlist, &segobj, &name, &allow_pickle))
        return -1;
    shk_segment *seg = shk_py_handle_begin(op, &stack_ops, segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    int created = 0;
    shk_stack *st;
    int rc = shk_stack_open_named(seg, oname, &st, &created);
    if (rc != SHK_OK)
        return shk_py_object_error(rc, name, "Stack", NULL);
    self->allow_pickle = allow_pickle;
    return shk_py_handle_opened(op, &stack_ops, st, created, segobj, name);
}

static PyObject *stack_push(PyObject *op, PyObject *item)
{
    ShkPyStack *self = (ShkPyStack *)op;
    if (!s_alive(self))
        return NULL;
    PyObject *holder;
    const char *data;
    Py_ssize_t len;
    uint32_t tag;
    if (shk_py_item_encode(item, self->allow_pickle, "Stack", &holder, &data, &len, &tag) < 0)
        return NULL;
    int rc = shk_stack_push(self->h, data, (uint64_t)len, tag);
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

#define STACK_REFUSE                                                                           \
    "the top item is a pickle and this handle has allow_pickle=False "                         \
    "(the item was left on the stack)"

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
    c->raw = shk_py_item_new(len, tag, c->allow_pickle, "stack", STACK_REFUSE);
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
    int rc = peek ? shk_stack_peek(self->h, pop_alloc, &c)
                  : shk_stack_pop(self->h, pop_alloc, &c);
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
    return shk_py_item_decode(c.raw, c.tag, self->allow_pickle, STACK_REFUSE);
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
    uint64_t n = shk_stack_size(self->h);
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
    int rc = shk_stack_check(self->h, &st, repair);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Stack.check");
    /* every tag but 'b' and 'p' is foreign: the words of st.tags without
     * those two bits must be 0 */
    uint64_t known[4] = {0, 0, 0, 0};
    known[SHK_PY_TAG_BYTES / 64] |= 1ull << (SHK_PY_TAG_BYTES % 64);
    known[SHK_PY_TAG_PICKLE / 64] |= 1ull << (SHK_PY_TAG_PICKLE % 64);
    if ((st.tags[0] & ~known[0]) | (st.tags[1] & ~known[1]) | (st.tags[2] & ~known[2]) |
        (st.tags[3] & ~known[3]))
        return shk_py_raise(SHK_ECORRUPT, "Stack.check: an item with an unknown tag");
    return Py_BuildValue("{s:K,s:L,s:K,s:K,s:K,s:O}", "items", (unsigned long long)st.items,
                         "counter", (long long)st.counter, "bytes",
                         (unsigned long long)st.bytes, "total_push",
                         (unsigned long long)st.total_push, "total_pop",
                         (unsigned long long)st.total_pop, "unverified",
                         st.unverified ? Py_True : Py_False);
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
    {"close", shk_py_handle_close, METH_NOARGS,
     "Close this handle (the stack stays for other processes)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stack_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"allow_pickle", stack_get_allow_pickle, NULL,
     "Whether this handle pickles non-bytes items and unpickles them.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef stack_members[] = SHK_PY_HANDLE_MEMBERS("stack");

static PySequenceMethods stack_as_sequence = {
    .sq_length = stack_len,
};

static PyTypeObject Stack_Type = {
    PyVarObject_HEAD_INIT(NULL, 0) SHK_PY_HANDLE_TYPE("Stack", ShkPyStack),
    .tp_doc = "Stack(segment, name, allow_pickle=True): lock-free LIFO in shared memory.",
    .tp_methods = stack_methods,
    .tp_members = stack_members,
    .tp_getset = stack_getset,
    .tp_as_sequence = &stack_as_sequence,
    .tp_init = stack_init,
};

int shk_py_init_stack(PyObject *m)
{
    if (shk_py_pickle_init() < 0)
        return -1;
    return shk_py_add_type(m, &Stack_Type, "Stack");
}
