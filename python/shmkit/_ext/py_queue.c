/*
 * py_queue.c -- shmkit._shmkit.Queue: the C queue (src/queue.c) with the
 * method names and semantics of multiprocessing.Queue.
 *
 * Items: `bytes` are stored as they are (tag 0); anything else is pickled
 * with the highest protocol (tag 1) when the handle allows pickle (the
 * encoding is shared with the Stack: shk_py_item_*, py_handle.c).  get()
 * rebuilds the object: a bytes item is copied straight from the ring into a
 * new bytes object (the allocation happens inside the C get, under the
 * consumers' lock, so there is exactly one copy); a pickle is loaded after the
 * lock is dropped.
 *
 * The GIL is released only around the futex waits (shk_queue_wait_*): a
 * put or get that does not wait is ~100 ns of work, less than the cost of
 * releasing and re-taking the GIL.  A wait returns SHK_EINTR when a signal
 * arrives: we run the Python signal handlers (PyErr_CheckSignals), so Ctrl-C
 * interrupts a blocked get() with KeyboardInterrupt, and otherwise carry on.
 *
 * close() while another thread of this process is blocked in this handle
 * wakes it at once (shk_queue_wake_waiters) and defers the release of the C
 * handle until that wait returns (the waiter then raises ValueError), so no
 * thread ever uses a freed handle: the handle head's `waiting` count
 * (SHK_PY_HANDLE_HEAD, py_handle.c) does it.
 */
#include "shmkit_py.h"

#include <limits.h>
#include <time.h>

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_queue; waiting: threads in a wait */
        int allow_pickle;
} ShkPyQueue;

static PyObject *QueueFull, *QueueEmpty; /* queue.Full, queue.Empty */

SHK_PY_HANDLE_OPS(queue, "Queue", shk_queue_close);

static int q_alive(ShkPyQueue *self)
{
    return shk_py_handle_alive((PyObject *)self, &queue_ops);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------- creation */

/* __init__(segment, name, maxsize=0, ring_bytes=0, allow_pickle=True):
 * open queue `name` in `segment`, creating it (with maxsize items at most,
 * 0 = unbounded, and a ring of ring_bytes, 0 = 1 MiB) if absent. */
static int queue_init(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    static char *kwlist[] = {"segment", "name", "maxsize", "ring_bytes", "allow_pickle", NULL};
    PyObject *segobj, *name;
    long long maxsize = 0, ring = 0;
    int allow_pickle = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|LLp", kwlist, &segobj, &name, &maxsize,
                                     &ring, &allow_pickle))
        return -1;
    shk_segment *seg = shk_py_handle_begin(op, &queue_ops, segobj);
    if (!seg)
        return -1;
    /* multiprocessing.Queue: maxsize <= 0 means unbounded. */
    if (maxsize < 0)
        maxsize = 0;
    if (ring < 0 || (unsigned long long)ring > SHK_QUEUE_MAX_RING) {
        PyErr_Format(PyExc_ValueError, "ring_bytes must be between 0 and %llu",
                     (unsigned long long)SHK_QUEUE_MAX_RING);
        return -1;
    }
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    shk_queue_config cfg = {(uint64_t)ring, (uint64_t)maxsize};
    int created = 0;
    shk_queue *q;
    int rc = shk_queue_open_named(seg, oname, &cfg, &q, &created);
    if (rc != SHK_OK)
        return shk_py_object_error(rc, name, "Queue", NULL);
    self->allow_pickle = allow_pickle;
    return shk_py_handle_opened(op, &queue_ops, q, created, segobj, name);
}

/* get's buffer provider: a new bytes object per item, created while the C
 * get holds the consumers' lock (bytes are not GC-tracked: no collection, no
 * Python code runs here). */
typedef struct {
    PyObject *one; /* get: the item */
    uint32_t tag;
    PyObject *list;      /* get_many: the items (raw) */
    unsigned char *tags; /* get_many: their tags */
    Py_ssize_t ntags, captags;
    int allow_pickle;
} get_ctx;

#define QUEUE_REFUSE                                                                           \
    "the next queue item is a pickle and this handle has allow_pickle=False "                  \
    "(the item was left in the queue)"

static void *get_alloc(void *vctx, uint64_t len, uint32_t tag)
{
    get_ctx *c = vctx;
    PyObject *b = shk_py_item_new(len, tag, c->allow_pickle, "queue", QUEUE_REFUSE);
    if (!b)
        return NULL;
    if (c->list) {
        if (c->ntags == c->captags) {
            Py_ssize_t ncap = c->captags ? c->captags * 2 : 64;
            unsigned char *t = PyMem_Realloc(c->tags, (size_t)ncap);
            if (!t) {
                Py_DECREF(b);
                PyErr_NoMemory();
                return NULL;
            }
            c->tags = t;
            c->captags = ncap;
        }
        if (PyList_Append(c->list, b) < 0) {
            Py_DECREF(b);
            return NULL;
        }
        Py_DECREF(b); /* the list holds it */
        c->tags[c->ntags++] = (unsigned char)tag;
    } else {
        c->one = b;
        c->tag = tag;
    }
    return PyBytes_AS_STRING(b);
}

/* ------------------------------------------------------------- waiting */

/* block/timeout as multiprocessing.Queue takes them.  *deadline: -1 =
 * forever, 0 = do not block, else a CLOCK_MONOTONIC ns deadline. */
static int parse_block(PyObject *block, PyObject *timeout, int64_t *deadline)
{
    int b = block ? PyObject_IsTrue(block) : 1;
    if (b < 0)
        return -1;
    if (!b) {
        *deadline = 0;
        return 0;
    }
    if (!timeout || timeout == Py_None) {
        *deadline = -1;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (t < 0 || t != t) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return -1;
    }
    if (t > 1e9)
        t = 1e9; /* ~31 years: forever for any purpose */
    *deadline = mono_ns() + (int64_t)(t * 1e9);
    if (*deadline <= 0)
        *deadline = 1;
    return 0;
}

enum { W_GET, W_PUT, W_JOIN };
#define W_CLOSED INT_MIN

/* One C wait (shk_queue_wait_get/put/join) with the GIL released; its
 * status, or W_CLOSED with ValueError set if the handle was closed
 * meanwhile. */
static int wait_raw(ShkPyQueue *self, int kind, uint64_t len, int64_t left)
{
    shk_queue *q = self->h;
    int rc;
    self->waiting++;
    Py_BEGIN_ALLOW_THREADS rc = kind == W_PUT   ? shk_queue_wait_put(q, len, left)
                                : kind == W_GET ? shk_queue_wait_get(q, left)
                                                : shk_queue_wait_join(q, left);
    Py_END_ALLOW_THREADS self->waiting--;
    if (self->closed) {
        shk_py_handle_release((ShkPyHandle *)self);
        PyErr_SetString(PyExc_ValueError, "Queue closed while waiting");
        return W_CLOSED;
    }
    return rc;
}

/* Sleep until the queue may allow the operation.  0 to retry, -1 with an
 * exception (busy_exc on timeout, ValueError if closed meanwhile, or the
 * exception of a signal handler). */
static int wait_once(ShkPyQueue *self, int for_put, uint64_t len, int64_t deadline,
                     PyObject *busy_exc)
{
    int64_t left = -1;
    if (deadline > 0) {
        left = deadline - mono_ns();
        if (left <= 0) {
            PyErr_SetNone(busy_exc);
            return -1;
        }
    }
    int rc = wait_raw(self, for_put ? W_PUT : W_GET, len, left);
    if (rc == W_CLOSED)
        return -1;
    if (rc == SHK_EINTR)
        return PyErr_CheckSignals() < 0 ? -1 : 0;
    if (rc == SHK_OK || rc == SHK_ETIMEDOUT)
        return 0;
    shk_py_raise(rc, "Queue wait");
    return -1;
}

static PyObject *raise_status(int rc, const char *what)
{
    if (rc == SHK_ENOMEM && !PyErr_Occurred())
        PyErr_Format(ShkPy_OutOfMemoryError, "%s: the segment has no room for this item", what);
    else if (!PyErr_Occurred())
        shk_py_raise(rc, what);
    return NULL;
}

/* ------------------------------------------------------------ put / get */

static PyObject *do_put(ShkPyQueue *self, PyObject *item, int64_t deadline)
{
    PyObject *holder;
    const char *data;
    Py_ssize_t len;
    uint32_t tag;
    if (shk_py_item_encode(item, self->allow_pickle, "Queue", &holder, &data, &len, &tag) < 0)
        return NULL;
    PyObject *res = NULL;
    for (;;) {
        int rc = shk_queue_put(self->h, data, (uint64_t)len, tag, 0);
        if (rc == SHK_OK) {
            res = Py_None;
            Py_INCREF(res);
            break;
        }
        if (rc != SHK_EFULL) {
            raise_status(rc, "Queue.put");
            break;
        }
        if (deadline == 0) {
            PyErr_SetNone(QueueFull);
            break;
        }
        if (wait_once(self, 1, (uint64_t)len, deadline, QueueFull) < 0)
            break;
    }
    Py_XDECREF(holder);
    return res;
}

static PyObject *do_get(ShkPyQueue *self, int64_t deadline)
{
    for (;;) {
        get_ctx c = {NULL, 0, NULL, NULL, 0, 0, self->allow_pickle};
        int rc = shk_queue_get(self->h, get_alloc, &c, 0);
        if (rc == SHK_OK)
            return shk_py_item_decode(c.one, c.tag, self->allow_pickle, QUEUE_REFUSE);
        Py_XDECREF(c.one);
        if (rc != SHK_EEMPTY)
            return raise_status(rc, "Queue.get");
        if (deadline == 0) {
            PyErr_SetNone(QueueEmpty);
            return NULL;
        }
        if (wait_once(self, 0, 0, deadline, QueueEmpty) < 0)
            return NULL;
    }
}

/* put(item, block=True, timeout=None) */
static PyObject *queue_put(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    static const char *const names[] = {"item", "block", "timeout"};
    PyObject *v[3] = {NULL, NULL, NULL};
    if (!q_alive(self))
        return NULL;
    /* Fast path: put(item) */
    if (nargs == 1 && !kwnames)
        return do_put(self, args[0], -1);
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "put() takes at most 3 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        v[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int j = 0;
        while (j < 3 && PyUnicode_CompareWithASCIIString(k, names[j]) != 0)
            j++;
        if (j == 3 || v[j]) {
            PyErr_Format(PyExc_TypeError, "put() got an unexpected or repeated keyword %R", k);
            return NULL;
        }
        v[j] = args[nargs + i];
    }
    if (!v[0]) {
        PyErr_SetString(PyExc_TypeError, "put() missing required argument 'item'");
        return NULL;
    }
    int64_t deadline;
    if (parse_block(v[1], v[2], &deadline) < 0)
        return NULL;
    return do_put(self, v[0], deadline);
}

/* Parse (block=True, timeout=None) [+ one leading int argument for
 * get_many's max_items] from a vectorcall. */
static int parse_get_args(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, int with_max, long long *max_items,
                          int64_t *deadline)
{
    const char *names[3] = {"max_items", "block", "timeout"};
    PyObject *v[3] = {NULL, NULL, NULL};
    int off = with_max ? 0 : 1;
    int n = 3 - off;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", fn, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        v[i + off] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int j = off;
        while (j < 3 && PyUnicode_CompareWithASCIIString(k, names[j]) != 0)
            j++;
        if (j == 3 || v[j]) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword %R", fn,
                         k);
            return -1;
        }
        v[j] = args[nargs + i];
    }
    if (with_max) {
        *max_items = LLONG_MAX;
        if (v[0] && v[0] != Py_None) {
            if (!PyLong_Check(v[0])) {
                PyErr_SetString(PyExc_TypeError, "max_items must be an int");
                return -1;
            }
            *max_items = PyLong_AsLongLong(v[0]);
            if (*max_items == -1 && PyErr_Occurred())
                return -1;
            if (*max_items < 1) {
                PyErr_SetString(PyExc_ValueError, "max_items must be >= 1");
                return -1;
            }
        }
    }
    return parse_block(v[1], v[2], deadline);
}

/* get(block=True, timeout=None) */
static PyObject *queue_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    if (nargs == 0 && !kwnames)
        return do_get(self, -1);
    int64_t deadline;
    if (parse_get_args("get", args, nargs, kwnames, 0, NULL, &deadline) < 0)
        return NULL;
    return do_get(self, deadline);
}

static PyObject *queue_put_nowait(PyObject *op, PyObject *item)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    return do_put(self, item, 0);
}

static PyObject *queue_get_nowait(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    return do_get(self, 0);
}

/* pop(default=<none>): get_nowait, or default when empty. */
static PyObject *queue_pop(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "pop() takes at most 1 argument (default)");
        return NULL;
    }
    PyObject *r = do_get(self, 0);
    if (!r && nargs == 1 && PyErr_ExceptionMatches(QueueEmpty)) {
        PyErr_Clear();
        Py_INCREF(args[0]);
        return args[0];
    }
    return r;
}

/* put_many(items, block=True, timeout=None) -> int
 * Puts every item in order, as many per lock hold as fit.  If it cannot
 * finish (block=False, or the timeout expires) it raises queue.Full whose
 * `count` attribute says how many of the first items were put. */
static PyObject *queue_put_many(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "put_many() missing required argument 'items'");
        return NULL;
    }
    int64_t deadline;
    if (parse_get_args("put_many", args + 1, nargs - 1, kwnames, 0, NULL, &deadline) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(args[0], "put_many() takes an iterable of items");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **objs = PySequence_Fast_ITEMS(seq);
    shk_queue_item *items = PyMem_Malloc(sizeof(shk_queue_item) * (size_t)(n ? n : 1));
    PyObject **holders = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    PyObject *res = NULL;
    Py_ssize_t i, encoded = 0;
    if (!items || !holders) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        const char *data;
        Py_ssize_t len;
        uint32_t tag;
        if (shk_py_item_encode(objs[i], self->allow_pickle, "Queue", &holders[i], &data, &len,
                               &tag) < 0)
            goto done;
        encoded = i + 1;
        items[i] = (shk_queue_item){data, (uint64_t)len, tag};
    }
    uint64_t total = 0;
    while ((Py_ssize_t)total < n) {
        uint64_t k = 0;
        int rc = shk_queue_put_many(self->h, items + total, (uint64_t)n - total, &k);
        total += k;
        if (rc == SHK_OK)
            continue;
        if (rc != SHK_EFULL) {
            raise_status(rc, "Queue.put_many");
            break;
        }
        if (deadline == 0 || wait_once(self, 1, items[total].len, deadline, QueueFull) < 0) {
            if (deadline == 0)
                PyErr_SetNone(QueueFull);
            break;
        }
    }
    if ((Py_ssize_t)total == n) {
        res = PyLong_FromSsize_t(n);
    } else if (PyErr_ExceptionMatches(QueueFull)) {
        /* Tell the caller how far we got. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyErr_NormalizeException(&et, &ev, &tb);
        if (ev) {
            PyObject *cnt = PyLong_FromUnsignedLongLong(total);
            if (cnt) {
                PyObject_SetAttrString(ev, "count", cnt);
                Py_DECREF(cnt);
            }
        }
        PyErr_Restore(et, ev, tb);
    }
done:
    if (holders)
        for (i = 0; i < encoded; i++)
            Py_XDECREF(holders[i]);
    PyMem_Free(holders);
    PyMem_Free(items);
    Py_DECREF(seq);
    return res;
}

/* get_many(max_items=None, block=True, timeout=None) -> list
 * Waits (as get does) until at least one item is there, then returns up to
 * max_items of those present, in order.  queue.Empty if none came. */
static PyObject *queue_get_many(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    long long max_items;
    int64_t deadline;
    if (parse_get_args("get_many", args, nargs, kwnames, 1, &max_items, &deadline) < 0)
        return NULL;
    get_ctx c = {NULL, 0, PyList_New(0), NULL, 0, 0, self->allow_pickle};
    if (!c.list)
        return NULL;
    for (;;) {
        uint64_t k = 0;
        int rc = shk_queue_get_many(self->h, (uint64_t)max_items, get_alloc, &c, &k);
        if (rc == SHK_OK && k > 0) {
            /* An item that could not be taken (allow_pickle=False, no memory)
             * stopped the batch: return what we have, the error will come
             * back on the next call. */
            PyErr_Clear();
            break;
        }
        if (rc != SHK_EEMPTY) {
            raise_status(rc, "Queue.get_many");
            goto fail;
        }
        if (deadline == 0) {
            PyErr_SetNone(QueueEmpty);
            goto fail;
        }
        if (wait_once(self, 0, 0, deadline, QueueEmpty) < 0)
            goto fail;
    }
    for (Py_ssize_t i = 0; i < c.ntags; i++) {
        if (c.tags[i] != SHK_PY_TAG_PICKLE)
            continue;
        PyObject *raw = PyList_GET_ITEM(c.list, i);
        Py_INCREF(raw);
        PyObject *obj = shk_py_item_decode(raw, SHK_PY_TAG_PICKLE, self->allow_pickle,
                                           QUEUE_REFUSE);
        if (!obj)
            goto fail;
        PyList_SetItem(c.list, i, obj);
    }
    PyMem_Free(c.tags);
    return c.list;
fail:
    PyMem_Free(c.tags);
    Py_DECREF(c.list);
    return NULL;
}

/* -------------------------------------------------------- other methods */

static PyObject *queue_qsize(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_queue_size(self->h));
}

static PyObject *queue_empty(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    return PyBool_FromLong(shk_queue_size(self->h) == 0);
}

static PyObject *queue_full(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    uint64_t max = shk_queue_maxsize(self->h);
    if (max && shk_queue_size(self->h) >= max)
        Py_RETURN_TRUE;
    /* Full when the ring has no room for the 24-byte record that any item
     * of more than 8 bytes needs at least (its bytes going to the heap). */
    uint64_t used = shk_queue_used_bytes(self->h), ring = shk_queue_ring_bytes(self->h);
    return PyBool_FromLong(used > ring || ring - used < SHK_QUEUE_MIN_RECORD);
}

/* close(): as every handle's, and first wakes the threads of this process
 * blocked in this handle's get/put, which then raise ValueError. */
static PyObject *queue_close(PyObject *op, PyObject *unused)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (self->h && self->waiting > 0)
        shk_queue_wake_waiters(self->h);
    return shk_py_handle_close(op, unused);
}

static PyObject *queue_check(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    shk_queue_stats st;
    int rc = shk_queue_check(self->h, &st);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Queue.check");
    const shk_py_figure f[] = {
        {"items", st.items},
        {"used_bytes", st.used_bytes},
        {"ring_bytes", st.ring_bytes},
        {"maxsize", st.maxsize},
        {"out_of_line", st.out_of_line},
        {"total_put", st.total_put},
        {"total_got", st.total_got},
        {"recoveries", st.recoveries},
        {"get_waiters", st.get_waiters},
        {"put_waiters", st.put_waiters},
    };
    return SHK_PY_FIGURES(f);
}

/* ------------------------------------------------------ JoinableQueue */

static PyObject *queue_make_joinable(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    int rc = shk_queue_make_joinable(self->h);
    if (rc != SHK_OK)
        return raise_status(rc, "JoinableQueue");
    Py_RETURN_NONE;
}

static PyObject *queue_task_done(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    int rc = shk_queue_task_done(self->h);
    if (rc == SHK_OK)
        Py_RETURN_NONE;
    if (rc == SHK_EEMPTY)
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
    else if (rc == SHK_EINVAL)
        PyErr_SetString(PyExc_ValueError,
                        "task_done() on a queue that is not joinable: open it "
                        "as a JoinableQueue");
    else
        raise_status(rc, "JoinableQueue.task_done");
    return NULL;
}

/* join(timeout=None) -> bool: True once every item put is marked done
 * (or was taken by a consumer that has died), False on timeout. */
static PyObject *queue_join(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    int64_t deadline;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:join", kwlist, &timeout) ||
        parse_block(Py_True, timeout, &deadline) < 0 || !q_alive(self))
        return NULL;
    for (;;) {
        int64_t left = -1;
        if (deadline > 0) {
            left = deadline - mono_ns();
            if (left < 0)
                left = 0;
        }
        int rc = wait_raw(self, W_JOIN, 0, left);
        if (rc == W_CLOSED)
            return NULL;
        if (rc == SHK_OK)
            Py_RETURN_TRUE;
        if (rc == SHK_ETIMEDOUT)
            Py_RETURN_FALSE;
        if (rc == SHK_EINTR) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
        } else if (rc == SHK_EINVAL) {
            PyErr_SetString(PyExc_ValueError,
                            "join() on a queue that is not joinable: open it as "
                            "a JoinableQueue");
            return NULL;
        } else if (rc != SHK_EAGAIN) {
            return raise_status(rc, "JoinableQueue.join");
        }
    }
}

/* tasks() -> (unfinished, reclaimed) */
static PyObject *queue_tasks(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    uint64_t u, r;
    int rc = shk_queue_tasks(self->h, &u, &r);
    if (rc != SHK_OK)
        return raise_status(rc, "JoinableQueue.tasks");
    return Py_BuildValue("(KK)", (unsigned long long)u, (unsigned long long)r);
}

/* _wait(for_put, nbytes, timeout) -> bool: one wait step of a blocking
 * put/get, for the asyncio waiter thread: True once the operation may
 * succeed or after a wake-up (retry: not a promise), False after timeout
 * seconds; ValueError if the handle is closed meanwhile. */
static PyObject *queue_wait(PyObject *op, PyObject *args)
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    int for_put;
    unsigned long long nbytes;
    double timeout;
    if (!PyArg_ParseTuple(args, "pKd:_wait", &for_put, &nbytes, &timeout) || !q_alive(self))
        return NULL;
    if (!(timeout >= 0) || timeout > 1e9) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return NULL;
    }
    int rc = wait_raw(self, for_put ? W_PUT : W_GET, nbytes, (int64_t)(timeout * 1e9));
    if (rc == W_CLOSED)
        return NULL;
    if (rc == SHK_OK)
        Py_RETURN_TRUE;
    if (rc == SHK_ETIMEDOUT)
        Py_RETURN_FALSE;
    if (rc == SHK_EINTR)
        Py_RETURN_TRUE; /* signals are the main thread's to handle */
    return raise_status(rc, "Queue wait");
}

static PyObject *queue_get_maxsize(PyObject *op, void *Py_UNUSED(c))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_queue_maxsize(self->h));
}

static PyObject *queue_get_ring_bytes(PyObject *op, void *Py_UNUSED(c))
{
    ShkPyQueue *self = (ShkPyQueue *)op;
    if (!q_alive(self))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_queue_ring_bytes(self->h));
}

static PyObject *queue_get_allow_pickle(PyObject *op, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((ShkPyQueue *)op)->allow_pickle);
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_FASTCALL | METH_KEYWORDS,
     "put(item, block=True, timeout=None): append item; when the queue is "
     "full, wait (up to timeout seconds) or raise queue.Full."},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None): remove and return the oldest item; when "
     "empty, wait (up to timeout seconds) or raise queue.Empty."},
    {"put_nowait", queue_put_nowait, METH_O, "put(item, False)."},
    {"get_nowait", queue_get_nowait, METH_NOARGS, "get(False)."},
    {"push", queue_put_nowait, METH_O,
     "push(item): put_nowait (posix-shm name); queue.Full if full."},
    {"pop", (PyCFunction)(void (*)(void))queue_pop, METH_FASTCALL,
     "pop([default]): get_nowait (posix-shm name); returns default, if "
     "given, instead of raising queue.Empty."},
    {"put_many", (PyCFunction)(void (*)(void))queue_put_many, METH_FASTCALL | METH_KEYWORDS,
     "put_many(items, block=True, timeout=None) -> int: put every item in "
     "order, many per lock hold.  queue.Full (with .count = items put) if it "
     "cannot finish in time."},
    {"get_many", (PyCFunction)(void (*)(void))queue_get_many, METH_FASTCALL | METH_KEYWORDS,
     "get_many(max_items=None, block=True, timeout=None) -> list: wait for "
     "at least one item, return up to max_items present, oldest first."},
    {"qsize", queue_qsize, METH_NOARGS, "Number of items (a snapshot)."},
    {"empty", queue_empty, METH_NOARGS, "True if the queue holds no item (a snapshot)."},
    {"full", queue_full, METH_NOARGS,
     "True if the queue is at maxsize or its ring has no room for another "
     "item of more than 8 bytes (a snapshot)."},
    {"check", queue_check, METH_NOARGS,
     "Walk the ring and verify every record; returns stats or raises "
     "CorruptSegmentError."},
    {"close", queue_close, METH_NOARGS,
     "Close this handle (the queue stays for other processes); threads of "
     "this process blocked in its get/put raise ValueError at once."},
    {"_make_joinable", queue_make_joinable, METH_NOARGS,
     "Attach the task ledger (JoinableQueue) if the queue has none."},
    {"_task_done", queue_task_done, METH_NOARGS, "JoinableQueue.task_done."},
    {"_join", (PyCFunction)(void (*)(void))queue_join, METH_VARARGS | METH_KEYWORDS,
     "JoinableQueue.join."},
    {"_tasks", queue_tasks, METH_NOARGS, "(unfinished, reclaimed) task counts."},
    {"_wait", queue_wait, METH_VARARGS,
     "_wait(for_put, nbytes, timeout): one wait step (asyncio waiter thread)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"maxsize", queue_get_maxsize, NULL, "Most items held at once (0 = unbounded).", NULL},
    {"ring_bytes", queue_get_ring_bytes, NULL, "Bytes of the ring buffer.", NULL},
    {"allow_pickle", queue_get_allow_pickle, NULL,
     "Whether this handle pickles non-bytes items and unpickles them.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef queue_members[] = SHK_PY_HANDLE_MEMBERS("queue");

static PyTypeObject Queue_Type = {
    PyVarObject_HEAD_INIT(NULL, 0) SHK_PY_HANDLE_TYPE("Queue", ShkPyQueue),
    .tp_doc = "Queue(segment, name, maxsize=0, ring_bytes=0, allow_pickle=True): "
              "MPMC queue in shared memory.",
    .tp_methods = queue_methods,
    .tp_members = queue_members,
    .tp_getset = queue_getset,
    .tp_init = queue_init,
};

int shk_py_init_queue(PyObject *m)
{
    PyObject *qmod = PyImport_ImportModule("queue");
    if (!qmod)
        return -1;
    QueueFull = PyObject_GetAttrString(qmod, "Full");
    QueueEmpty = PyObject_GetAttrString(qmod, "Empty");
    Py_DECREF(qmod);
    if (!QueueFull || !QueueEmpty)
        return -1;
    if (shk_py_pickle_init() < 0)
        return -1;
    return shk_py_add_type(m, &Queue_Type, "Queue");
}
