/*
 * py_alloc.c -- shmkit._shmkit.FreeListAllocator, BumpAllocator and
 * SlabAllocator.
 *
 * The three types share one object layout and the methods that do not
 * depend on the strategy (write/read/view/close/available_bytes...); only
 * allocate/free/reset dispatch on `kind`.  Hot methods take METH_O or
 * METH_FASTCALL so an allocate+free pair costs two cheap calls.
 *
 * Bounds: read/write/view accept any range inside the allocator's data
 * region that has been handed out at least once ([start, high water)); a
 * range outside it is a ValueError, never a wild access.
 *
 * close/dealloc/closed and the name members are the shared handle ones
 * (SHK_PY_HANDLE_HEAD, py_handle.c); releasing an allocator closes its
 * handle and drops the segment reference it holds for `base`.
 */
#include "shmkit_py.h"

enum { KIND_FREELIST, KIND_BUMP, KIND_SLAB };

typedef struct {
    SHK_PY_HANDLE_HEAD    /* h: shk_freelist* / shk_bump* / shk_slab* */
        shk_segment *seg; /* retained while h is open */
    int kind;
    char *base;
} ShkPyAlloc;

static void alloc_release(ShkPyHandle *self);

static const ShkPyHandleOps alloc_ops[] = {
    {"FreeListAllocator", alloc_release},
    {"BumpAllocator", alloc_release},
    {"SlabAllocator", alloc_release},
};

static PyTypeObject Bump_Type, Slab_Type;

/* The ops of a handle: set when it opened; before that (a closed-handle
 * error on a handle never initialised) found from its type. */
static const ShkPyHandleOps *ops_of(ShkPyAlloc *a)
{
    if (a->ops)
        return a->ops;
    if (PyObject_TypeCheck(a, &Bump_Type))
        return &alloc_ops[KIND_BUMP];
    if (PyObject_TypeCheck(a, &Slab_Type))
        return &alloc_ops[KIND_SLAB];
    return &alloc_ops[KIND_FREELIST];
}

static int alive(ShkPyAlloc *a) { return shk_py_handle_alive((PyObject *)a, ops_of(a)); }

static void region(ShkPyAlloc *a, uint64_t *start, uint64_t *end)
{
    switch (a->kind) {
    case KIND_FREELIST: shk_freelist_region(a->h, start, end); break;
    case KIND_BUMP: shk_bump_region(a->h, start, end); break;
    default: shk_slab_region(a->h, start, end); break;
    }
}

/* Check [off, off+n) lies in the data region; ValueError otherwise. */
static int in_bounds(ShkPyAlloc *a, uint64_t off, uint64_t n)
{
    uint64_t start, end;
    region(a, &start, &end);
    uint64_t stop = off + n;
    if (off < start || stop < off || stop > end) {
        PyErr_Format(PyExc_ValueError,
                     "range [%llu, %llu) is outside the allocator's data "
                     "region [%llu, %llu)",
                     (unsigned long long)off, (unsigned long long)stop,
                     (unsigned long long)start, (unsigned long long)end);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ creation */

/* Open (capacity != 0: or create) allocator `name` of this kind. */
static int open_named(int kind, shk_segment *seg, const char *name, uint64_t capacity,
                      uint64_t slot_size, void **h, int *created)
{
    switch (kind) {
    case KIND_FREELIST:
        return shk_freelist_open_named(seg, name, capacity, (shk_freelist **)h, created);
    case KIND_BUMP: return shk_bump_open_named(seg, name, capacity, (shk_bump **)h, created);
    default:
        return shk_slab_open_named(seg, name, slot_size, capacity / slot_size, (shk_slab **)h,
                                   created);
    }
}

static void alloc_release(ShkPyHandle *self)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    switch (a->kind) {
    case KIND_FREELIST: shk_freelist_close(a->h); break;
    case KIND_BUMP: shk_bump_close(a->h); break;
    default: shk_slab_close(a->h); break;
    }
    shk_segment_close(a->seg);
    a->seg = NULL;
}

/* __init__(segment, name, capacity=None, slab_size=None)
 * Opens object `name` of this kind in `segment`, creating it when capacity
 * is given and it does not exist. */
static int alloc_init_kind(PyObject *self, PyObject *args, PyObject *kw, int kind)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    static char *kwlist[] = {"segment", "name", "capacity", "slab_size", NULL};
    PyObject *segobj, *name, *cap = Py_None, *slot = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|OO", kwlist, &segobj, &name, &cap, &slot))
        return -1;
    shk_segment *seg = shk_py_handle_begin(self, &alloc_ops[kind], segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    uint64_t capacity = 0, slot_size = 16;
    int want_create = cap != Py_None;
    if (want_create) {
        if (shk_py_u64(cap, "capacity", &capacity) < 0)
            return -1;
        if (capacity == 0) {
            PyErr_SetString(PyExc_ValueError, "capacity must be positive");
            return -1;
        }
    }
    if (kind == KIND_SLAB && want_create && slot != Py_None) {
        if (shk_py_u64(slot, "slab_size", &slot_size) < 0)
            return -1;
        if (slot_size == 0 || slot_size > capacity) {
            PyErr_SetString(PyExc_ValueError,
                            "slab_size must be positive and at most capacity");
            return -1;
        }
    }
    void *h;
    int created = 0;
    int rc = open_named(kind, seg, oname, capacity, slot_size, &h, &created);
    if (rc != SHK_OK)
        return shk_py_object_error(rc, name, alloc_ops[kind].what,
                                   "give capacity= to create it");
    shk_segment_retain(seg);
    a->seg = seg;
    a->kind = kind;
    a->base = shk_segment_base(seg);
    return shk_py_handle_opened(self, &alloc_ops[kind], h, created, segobj, name);
}

static int freelist_init(PyObject *s, PyObject *a, PyObject *k)
{
    return alloc_init_kind(s, a, k, KIND_FREELIST);
}
static int bump_init(PyObject *s, PyObject *a, PyObject *k)
{
    return alloc_init_kind(s, a, k, KIND_BUMP);
}
static int slab_init(PyObject *s, PyObject *a, PyObject *k)
{
    return alloc_init_kind(s, a, k, KIND_SLAB);
}


/* ---------------------------------------------------------- hot methods */

static PyObject *alloc_allocate(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    uint64_t n = 0, off;
    if (a->kind == KIND_SLAB) {
        if (nargs > 1) {
            PyErr_SetString(PyExc_TypeError, "allocate() takes at most 1 argument");
            return NULL;
        }
        if (nargs == 1) {
            if (shk_py_u64(args[0], "size", &n) < 0)
                return NULL;
            if (n > shk_slab_slot_size(a->h)) {
                PyErr_Format(PyExc_ValueError, "size %llu exceeds the slab size %llu",
                             (unsigned long long)n,
                             (unsigned long long)shk_slab_slot_size(a->h));
                return NULL;
            }
        }
    } else {
        if (nargs != 1) {
            PyErr_SetString(PyExc_TypeError, "allocate() takes exactly 1 argument (size)");
            return NULL;
        }
        if (shk_py_u64(args[0], "size", &n) < 0)
            return NULL;
        if (n == 0) {
            PyErr_SetString(PyExc_ValueError, "size must be positive");
            return NULL;
        }
    }
    int rc;
    switch (a->kind) {
    case KIND_FREELIST: rc = shk_freelist_alloc(a->h, n, &off); break;
    case KIND_BUMP: rc = shk_bump_alloc(a->h, n, &off); break;
    default: rc = shk_slab_alloc(a->h, &off); break;
    }
    if (rc != SHK_OK) {
        if (rc == SHK_ENOMEM)
            PyErr_Format(
                ShkPy_OutOfMemoryError, "%s has no room for %llu bytes (available: %llu)",
                alloc_ops[a->kind].what, (unsigned long long)n,
                (unsigned long long)(a->kind == KIND_FREELIST ? shk_freelist_available(a->h)
                                     : a->kind == KIND_BUMP   ? shk_bump_available(a->h)
                                                              : shk_slab_available(a->h)));
        else if (rc == SHK_EINVAL)
            PyErr_Format(PyExc_ValueError, "cannot allocate %llu bytes", (unsigned long long)n);
        else
            shk_py_raise(rc, "allocate");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(off);
}

static PyObject *alloc_free(PyObject *self, PyObject *arg)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    uint64_t off;
    if (shk_py_u64(arg, "offset", &off) < 0)
        return NULL;
    int rc = a->kind == KIND_FREELIST ? shk_freelist_free(a->h, off) : shk_slab_free(a->h, off);
    if (rc != SHK_OK) {
        PyErr_Format(PyExc_ValueError,
                     "free(%llu): not a live block of this allocator "
                     "(double free or foreign offset)",
                     (unsigned long long)off);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *alloc_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write() takes 2 arguments (offset, data)");
        return NULL;
    }
    uint64_t off;
    if (shk_py_u64(args[0], "offset", &off) < 0)
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(args[1], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *res = NULL;
    if (in_bounds(a, off, (uint64_t)b.len)) {
        memcpy(a->base + off, b.buf, (size_t)b.len);
        res = PyLong_FromSsize_t(b.len);
    }
    PyBuffer_Release(&b);
    return res;
}

static int off_len_args(ShkPyAlloc *a, PyObject *const *args, Py_ssize_t nargs, const char *fn,
                        uint64_t *off, uint64_t *n)
{
    if (!alive(a))
        return -1;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (offset, size)", fn);
        return -1;
    }
    if (shk_py_u64(args[0], "offset", off) < 0 || shk_py_u64(args[1], "size", n) < 0)
        return -1;
    if (*n > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_ValueError, "size too large");
        return -1;
    }
    return in_bounds(a, *off, *n) ? 0 : -1;
}

static PyObject *alloc_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    uint64_t off, n;
    if (off_len_args(a, args, nargs, "read", &off, &n) < 0)
        return NULL;
    return PyBytes_FromStringAndSize(a->base + off, (Py_ssize_t)n);
}

static PyObject *alloc_view(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    uint64_t off, n;
    if (off_len_args(a, args, nargs, "view", &off, &n) < 0)
        return NULL;
    return shk_py_memoryview(a->seg, a->base + off, (Py_ssize_t)n, 0);
}

/* -------------------------------------------------------- other methods */

static PyObject *freelist_reclaim(shk_freelist *fl, const char *context)
{
    uint64_t n = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = shk_freelist_reclaim(fl, &n);
    Py_END_ALLOW_THREADS if (rc != SHK_OK) return shk_py_raise(rc, context);
    return PyLong_FromUnsignedLongLong(n);
}

static PyObject *alloc_available(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    uint64_t v = a->kind == KIND_FREELIST ? shk_freelist_available(a->h)
                 : a->kind == KIND_BUMP   ? shk_bump_available(a->h)
                                          : shk_slab_available(a->h);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *alloc_capacity(PyObject *self, void *Py_UNUSED(c))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    uint64_t v = a->kind == KIND_FREELIST ? shk_freelist_capacity(a->h)
                 : a->kind == KIND_BUMP ? shk_bump_capacity(a->h)
                                        : shk_slab_slot_size(a->h) * shk_slab_slot_count(a->h);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *alloc_reset(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    shk_bump_reset(a->h);
    Py_RETURN_NONE;
}

static PyObject *alloc_usable(PyObject *self, PyObject *arg)
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    uint64_t off;
    if (shk_py_u64(arg, "offset", &off) < 0)
        return NULL;
    uint64_t n = shk_freelist_usable(a->h, off);
    if (n == 0) {
        PyErr_Format(PyExc_ValueError, "%llu is not a live block", (unsigned long long)off);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(n);
}

/* check() and stats() of every kind: the same figures (both validate);
 * check() is the one documented to raise on damage. */
static PyObject *alloc_check(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    switch (a->kind) {
    case KIND_FREELIST: return shk_py_freelist_check(a->h, "FreeListAllocator.check");
    case KIND_BUMP: {
        shk_bump_stats st;
        int rc = shk_bump_check(a->h, &st);
        if (rc != SHK_OK)
            return shk_py_raise(rc, "BumpAllocator.check");
        const shk_py_figure f[] = {
            {"capacity", st.capacity},
            {"used_bytes", st.used_bytes},
            {"available_bytes", st.available_bytes},
        };
        return SHK_PY_FIGURES(f);
    }
    default: {
        shk_slab_stats st;
        int rc = shk_slab_check(a->h, &st);
        if (rc != SHK_OK)
            return shk_py_raise(rc, "SlabAllocator.check");
        const shk_py_figure f[] = {
            {"capacity", st.capacity},     {"slab_size", st.slot_size},
            {"slot_count", st.slot_count}, {"live_slots", st.live_slots},
            {"free_slots", st.free_slots}, {"available_bytes", st.available_bytes},
        };
        return SHK_PY_FIGURES(f);
    }
    }
}

static PyObject *alloc_reclaim(PyObject *self, PyObject *Py_UNUSED(x))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    return freelist_reclaim(a->h, "FreeListAllocator.reclaim");
}

static PyObject *alloc_slab_size(PyObject *self, void *Py_UNUSED(c))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_slab_slot_size(a->h));
}

static PyObject *alloc_slot_count(PyObject *self, void *Py_UNUSED(c))
{
    ShkPyAlloc *a = (ShkPyAlloc *)self;
    if (!alive(a))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_slab_slot_count(a->h));
}

#define COMMON_METHODS                                                                         \
    {"write", (PyCFunction)(void (*)(void))alloc_write, METH_FASTCALL,                         \
     "write(offset, data) -> int: copy a bytes-like object to shared memory."},                \
        {"read", (PyCFunction)(void (*)(void))alloc_read, METH_FASTCALL,                       \
         "read(offset, size) -> bytes: copy bytes out of shared memory."},                     \
        {"view", (PyCFunction)(void (*)(void))alloc_view, METH_FASTCALL,                       \
         "view(offset, size) -> memoryview: writable, zero-copy, on the shared "               \
         "memory itself; keeps the mapping alive while it lives."},                            \
        {"allocate", (PyCFunction)(void (*)(void))alloc_allocate, METH_FASTCALL,               \
         "allocate(size) -> offset.  OutOfMemoryError (nothing changed) if full."},            \
        {"available_bytes", alloc_available, METH_NOARGS,                                      \
         "Bytes that can still be allocated (free blocks and untouched space)."},              \
        {"close", shk_py_handle_close, METH_NOARGS,                                            \
         "Close this handle; the shared memory stays for other processes."},                   \
        {"check", alloc_check, METH_NOARGS,                                                    \
         "Verify the allocator against the mapping; returns its stats (a dict) "               \
         "or raises CorruptSegmentError."},                                                    \
        {"stats", alloc_check, METH_NOARGS,                                                    \
         "The allocator's figures as a dict (validated like check())."},

static PyMethodDef freelist_methods[] = {
    COMMON_METHODS{"free", alloc_free, METH_O,
                   "free(offset): return a block.  ValueError for a double free or an "
                   "offset that is not a live block (nothing changed)."},
    {"usable_size", alloc_usable, METH_O,
     "usable_size(offset) -> int: the real capacity of a live block."},
    {"reclaim", alloc_reclaim, METH_NOARGS,
     "reclaim() -> int: return the blocks that processes which have died "
     "held in their caches to the free lists; how many."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef bump_methods[] = {
    COMMON_METHODS{"reset", alloc_reset, METH_NOARGS,
                   "Free every block at once (only when no block is in use)."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef slab_methods[] = {
    COMMON_METHODS{"free", alloc_free, METH_O,
                   "free(offset): return a slot.  ValueError for a double free or an "
                   "offset that is not a live slot (nothing changed)."},
    {NULL, NULL, 0, NULL},
};

#define COMMON_GETSET                                                                          \
    SHK_PY_HANDLE_GETSET, {"capacity", alloc_capacity, NULL, "Bytes in the data region.", NULL},

static PyGetSetDef freelist_getset[] = {COMMON_GETSET{NULL, NULL, NULL, NULL, NULL}};
static PyGetSetDef slab_getset[] = {COMMON_GETSET{"slab_size", alloc_slab_size, NULL,
                                                  "Bytes per slot.", NULL},
                                    {"slot_count", alloc_slot_count, NULL, "Number of slots.",
                                     NULL},
                                    {NULL, NULL, NULL, NULL, NULL}};

static PyMemberDef alloc_members[] = SHK_PY_HANDLE_MEMBERS("allocator");

#define ALLOC_TYPE(var, pyname, methods, getset, init, doc)                                    \
    static PyTypeObject var = {                                                                \
        PyVarObject_HEAD_INIT(NULL, 0) SHK_PY_HANDLE_TYPE(pyname, ShkPyAlloc),                 \
        .tp_doc = doc,                                                                         \
        .tp_methods = methods,                                                                 \
        .tp_members = alloc_members,                                                           \
        .tp_getset = getset,                                                                   \
        .tp_init = init,                                                                       \
    };

ALLOC_TYPE(FreeList_Type, "FreeListAllocator", freelist_methods, freelist_getset, freelist_init,
           "Variable-size, lock-free, size-class allocator.")
ALLOC_TYPE(Bump_Type, "BumpAllocator", bump_methods, freelist_getset, bump_init,
           "Bump allocator: one CAS per allocation, reset() frees all.")
ALLOC_TYPE(Slab_Type, "SlabAllocator", slab_methods, slab_getset, slab_init,
           "Fixed-size slots tracked by an atomic bitmap.")

int shk_py_init_alloc(PyObject *m)
{
    if (shk_py_add_type(m, &FreeList_Type, "FreeListAllocator") < 0 ||
        shk_py_add_type(m, &Bump_Type, "BumpAllocator") < 0 ||
        shk_py_add_type(m, &Slab_Type, "SlabAllocator") < 0)
        return -1;
    return 0;
}
