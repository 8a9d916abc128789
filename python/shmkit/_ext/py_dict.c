/*
 * py_dict.c -- shmkit._shmkit.Dict, the C type under shmkit.SharedDict.
 *
 * DESIGN
 *   The mapping slots (mp_subscript, mp_ass_subscript, sq_contains, mp_length)
 *   are C, and shmkit.SharedDict subclasses this type without overriding
 *   them, so d[k] costs one C call: encode the key (a str's cached UTF-8, no
 *   temporary object), a lock-free find, decode the value straight from
 *   shared memory with the cheapest constructor, validate (src/dict.c
 *   seqlock), and retry if a writer changed the entry meanwhile.
 *
 *   Keys: one type tag byte + bytes, never Python's hash():
 *     's' str (UTF-8)   'b' bytes   'i' int as 8 bytes LE (int64 range)
 *     'I' other ints (decimal text)   't' tuple of keys, each element
 *     encoded as tag, u32 LE length, bytes.  bool keys are ints (True == 1
 *     as in dict).  Anything else is a TypeError.
 *   Values: tag byte + bytes:
 *     'n' None  'T' True  'F' False  'i' int64  'I' big int (decimal)
 *     'f' float (8 bytes)  's' str (UTF-8)  'A' str, all ASCII  'b' bytes
 *     'a' numpy array: u32 header length H, u32 ndim, dtype.str NUL-padded
 *         to 32 bytes, u64 shape[ndim], zero padding to H (a multiple of
 *         16), then the C-order data, 16-byte aligned in shared memory.
 *     'p' pickle: stored and loaded only by a handle with allow_pickle
 *         (finish_value is the one place a value is unpickled); anyone who
 *         can write the segment can make unpickling run code -- see
 *         docs/dict.md.
 *   Values that are decoded by running code (pickle) or into a new buffer
 *   (numpy) are first copied and validated, then decoded, so a torn read is
 *   never fed to pickle.
 *
 *   get_view(key) pins the entry (src/dict.c) and hands numpy a read-only
 *   buffer exported by a small _DictPin object that holds the pin and a
 *   reference on the segment mapping; both are dropped when the last view
 *   of the buffer goes away, so the memory stays valid (and unchanged) even
 *   if the key is overwritten or deleted meanwhile.
 *
 *   The handle is a structure handle (SHK_PY_HANDLE_HEAD, py_handle.c):
 *   close(), the closed/created/segment_name/object_name attributes, the
 *   "already initialised" and "operation on a closed SharedDict" errors are
 *   the base's; pickled values go through its pickle helpers.  Only the
 *   weak-reference list and the dealloc that clears it are the dict's own.
 *
 *   The GIL is held throughout (operations take ~100 ns; releasing it would
 *   cost more, and holding it means no other thread can close the handle
 *   under a running operation).  No Python code runs under the dict's
 *   writer lock.
 */
#include "shmkit_py.h"

#include <string.h>
#include <unistd.h>


#ifndef SHK_UNLIKELY
#if defined(__GNUC__)
#define SHK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SHK_UNLIKELY(x) (x)
#endif
#endif
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

typedef struct {
    SHK_PY_HANDLE_HEAD            /* h: the shk_dict */
    int allow_pickle;
    uint64_t pop_hint;            /* where popitem looks first */
    PyObject *weakrefs;
} ShkPyDict;

SHK_PY_HANDLE_OPS(dict, "SharedDict", shk_dict_close);

static PyTypeObject ShkPyDict_Type;
static PyTypeObject ShkPyPin_Type;

/* cached lazily */
static PyObject *np_module, *np_ndarray, *np_empty, *np_dtype, *np_frombuffer;

/* Raise "operation on a closed SharedDict" (the base's message) and
 * return -1; only called with h == NULL. */
static int closed_error(ShkPyDict *self)
{
    shk_py_handle_alive((PyObject *)self, &dict_ops);
    return -1;
}

/* No call of this type drops the GIL, so `waiting` stays 0 and close()
 * releases h at once: h == NULL alone means closed (or never opened), one
 * load on the hot path. */
#define CHECK_OPEN(self, ret)                                                 \
    do {                                                                      \
        if (SHK_UNLIKELY((self)->h == NULL)) {                                \
            closed_error(self);                                               \
            return ret;                                                       \
        }                                                                     \
    } while (0)

static int load_numpy(void)
{
    if (np_module)
        return 0;
    PyObject *m = PyImport_ImportModule("numpy");
    if (!m)
        return -1;
    np_ndarray = PyObject_GetAttrString(m, "ndarray");
    np_empty = PyObject_GetAttrString(m, "empty");
    np_dtype = PyObject_GetAttrString(m, "dtype");
    np_frombuffer = PyObject_GetAttrString(m, "frombuffer");
    if (!np_ndarray || !np_empty || !np_dtype || !np_frombuffer) {
        Py_DECREF(m);
        return -1;
    }
    np_module = m;
    return 0;
}

/* ndarray type if numpy is already imported (values that are arrays can
 * only exist then), without importing it ourselves. */
static PyObject *ndarray_type_if_loaded(void)
{
    if (np_ndarray)
        return np_ndarray;
    PyObject *mods = PyImport_GetModuleDict();
    if (!PyDict_GetItemString(mods, "numpy"))
        return NULL;
    if (load_numpy() < 0) {
        PyErr_Clear();
        return NULL;
    }
    return np_ndarray;
}

/* ================================================================== keys */

typedef struct {
    uint8_t t;
    const char *p;
    Py_ssize_t n;
    char buf[8];
    char *heap;          /* malloc'd (tuples) */
} kenc;

static void kenc_free(kenc *k)
{
    PyMem_Free(k->heap);
    k->heap = NULL;
}

typedef struct {
    char *p;
    size_t n, cap;
} growbuf;

static int gb_put(growbuf *g, const void *src, size_t n)
{
    if (g->n + n > g->cap) {
        size_t c = g->cap ? g->cap * 2 : 64;
        while (c < g->n + n)
            c *= 2;
        char *q = PyMem_Realloc(g->p, c);
        if (!q) {
            PyErr_NoMemory();
            return -1;
        }
        g->p = q;
        g->cap = c;
    }
    memcpy(g->p + g->n, src, n);
    g->n += n;
    return 0;
}

static int encode_key(PyObject *k, kenc *e, int depth);

static int encode_tuple(PyObject *k, kenc *e, int depth)
{
    if (depth > 32) {
        PyErr_SetString(PyExc_TypeError, "SharedDict key tuple nested too deeply");
        return -1;
    }
    growbuf g = {0};
    Py_ssize_t n = PyTuple_GET_SIZE(k);
    if (gb_put(&g, "", 0) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        kenc sub = {0};
        if (encode_key(PyTuple_GET_ITEM(k, i), &sub, depth + 1) < 0)
            goto fail;
        if ((uint64_t)sub.n > UINT32_MAX) {
            kenc_free(&sub);
            PyErr_SetString(PyExc_ValueError, "tuple key element too long");
            goto fail;
        }
        unsigned char hdr[5] = {sub.t, (unsigned char)sub.n, (unsigned char)(sub.n >> 8),
                                (unsigned char)(sub.n >> 16), (unsigned char)(sub.n >> 24)};
        int rc = gb_put(&g, hdr, 5) < 0 || gb_put(&g, sub.p, (size_t)sub.n) < 0;
        kenc_free(&sub);
        if (rc)
            goto fail;
    }
    e->t = 't';
    e->heap = g.p;
    e->p = g.p ? g.p : "";
    e->n = (Py_ssize_t)g.n;
    return 0;
fail:
    PyMem_Free(g.p);
    return -1;
}

static int encode_key(PyObject *k, kenc *e, int depth)
{
    e->heap = NULL;
    if (PyUnicode_CheckExact(k)) {
        e->t = 's';
        e->p = PyUnicode_AsUTF8AndSize(k, &e->n);
        return e->p ? 0 : -1;
    }
    if (PyBytes_CheckExact(k)) {
        e->t = 'b';
        e->p = PyBytes_AS_STRING(k);
        e->n = PyBytes_GET_SIZE(k);
        return 0;
    }
    if (PyLong_Check(k)) {   /* int and bool (True == 1, as in dict) */
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (!overflow) {
            uint64_t u = (uint64_t)v;
            for (int i = 0; i < 8; i++)
                e->buf[i] = (char)(u >> (8 * i));
            e->t = 'i';
            e->p = e->buf;
            e->n = 8;
            return 0;
        }
        PyObject *s = PyObject_Str(k);   /* canonical decimal text */
        if (!s)
            return -1;
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(s, &n);
        if (!p) {
            Py_DECREF(s);
            return -1;
        }
        e->heap = PyMem_Malloc((size_t)n + 1);
        if (!e->heap) {
            Py_DECREF(s);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(e->heap, p, (size_t)n);
        Py_DECREF(s);
        e->t = 'I';
        e->p = e->heap;
        e->n = n;
        return 0;
    }
    if (PyTuple_CheckExact(k))
        return encode_tuple(k, e, depth);
    PyErr_Format(PyExc_TypeError,
                 "SharedDict keys must be str, bytes, int or tuples of those, not %.100s",
                 Py_TYPE(k)->tp_name);
    return -1;
}

static PyObject *decode_key(uint8_t t, const char *p, uint64_t n, int depth);

static PyObject *decode_tuple(const char *p, uint64_t n, int depth)
{
    PyObject *items = PyList_New(0);
    if (!items)
        return NULL;
    uint64_t i = 0;
    while (i < n) {
        if (n - i < 5 || depth > 32)
            goto bad;
        const unsigned char *h = (const unsigned char *)p + i;
        uint64_t len = (uint64_t)h[1] | (uint64_t)h[2] << 8 | (uint64_t)h[3] << 16 |
                       (uint64_t)h[4] << 24;
        if (len > n - i - 5)
            goto bad;
        PyObject *x = decode_key(h[0], p + i + 5, len, depth + 1);
        if (!x || PyList_Append(items, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(items);
            return NULL;
        }
        Py_DECREF(x);
        i += 5 + len;
    }
    PyObject *t = PyList_AsTuple(items);
    Py_DECREF(items);
    return t;
bad:
    Py_DECREF(items);
    PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: malformed tuple key");
    return NULL;
}

/* A ValueError raised while decoding bytes read from the segment (invalid
 * UTF-8, a big int's digits) means the bytes are corrupt: say so. */
static PyObject *decoded(PyObject *o, const char *what)
{
    if (!o && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        PyErr_Format(ShkPy_CorruptSegmentError, "SharedDict: malformed %s", what);
    }
    return o;
}

static PyObject *decode_key(uint8_t t, const char *p, uint64_t n, int depth)
{
    switch (t) {
    case 's':
        return decoded(PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, NULL), "str (invalid UTF-8)");
    case 'b':
        return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    case 'i':
        if (n == 8) {
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u |= (uint64_t)(unsigned char)p[i] << (8 * i);
            return PyLong_FromLongLong((long long)u);
        }
        break;
    case 'I': {
        if (n == 0 || n > 100000)
            break;
        char *z = PyMem_Malloc(n + 1);
        if (!z)
            return PyErr_NoMemory();
        memcpy(z, p, n);
        z[n] = 0;
        char *end = NULL;
        PyObject *r = decoded(PyLong_FromString(z, &end, 10), "big int");
        if (r && end != z + n) {   /* an embedded NUL ended the digits early */
            Py_CLEAR(r);
            PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: malformed big int");
        }
        PyMem_Free(z);
        return r;
    }
    case 't':
        return decode_tuple(p, n, depth);
    }
    PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: unknown key type");
    return NULL;
}

/* ================================================================ values */

#define ARR_DTYPE_LEN 32
#define ARR_MAX_NDIM 64

typedef struct {
    uint8_t t;
    const char *p;       /* first part */
    Py_ssize_t n;
    const char *p2;      /* second part (array data) */
    Py_ssize_t n2;
    char small[8];
    PyObject *owner;     /* keeps p alive (utf-8 cache owner, pickle bytes) */
    Py_buffer view;
    int has_view;
    char hdr[16 + ARR_DTYPE_LEN + 8 * ARR_MAX_NDIM + 16];
} venc;

static void venc_free(venc *v)
{
    if (v->has_view)
        PyBuffer_Release(&v->view);
    v->has_view = 0;
    Py_CLEAR(v->owner);
}

static void put_u64(char *out, uint64_t u)
{
    for (int i = 0; i < 8; i++)
        out[i] = (char)(u >> (8 * i));
}

static uint64_t get_u64(const char *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return u;
}

static uint32_t get_u32(const char *p)
{
    return (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[1] << 8 |
           (uint32_t)(unsigned char)p[2] << 16 | (uint32_t)(unsigned char)p[3] << 24;
}

static void put_u32(char *out, uint32_t u)
{
    for (int i = 0; i < 4; i++)
        out[i] = (char)(u >> (8 * i));
}

/* 1 if encoded as an array, 0 if it must be pickled, -1 error */
static int encode_array(PyObject *o, venc *v)
{
    PyObject *dt = PyObject_GetAttrString(o, "dtype");
    if (!dt)
        return -1;
    PyObject *hasobj = PyObject_GetAttrString(dt, "hasobject");
    PyObject *fields = PyObject_GetAttrString(dt, "fields");
    PyObject *sub = PyObject_GetAttrString(dt, "subdtype");
    PyObject *dstr = PyObject_GetAttrString(dt, "str");
    Py_DECREF(dt);
    int rc = -1;
    if (!hasobj || !fields || !sub || !dstr)
        goto out;
    rc = 0;
    if (PyObject_IsTrue(hasobj) || fields != Py_None || sub != Py_None)
        goto out;    /* object / structured / subarray dtypes: pickle */
    Py_ssize_t dl;
    const char *ds = PyUnicode_AsUTF8AndSize(dstr, &dl);
    if (!ds) {
        rc = -1;
        goto out;
    }
    if (dl >= ARR_DTYPE_LEN)
        goto out;
    if (PyObject_GetBuffer(o, &v->view, PyBUF_C_CONTIGUOUS) < 0) {
        /* not C-contiguous: store a contiguous copy */
        PyErr_Clear();
        if (load_numpy() < 0)
            goto out_err;
        v->owner = PyObject_CallMethod(np_module, "ascontiguousarray", "O", o);
        if (!v->owner)
            goto out_err;
        if (PyObject_GetBuffer(v->owner, &v->view, PyBUF_C_CONTIGUOUS) < 0) {
            /* no buffer export for this dtype (e.g. datetime64): pickle */
            PyErr_Clear();
            Py_CLEAR(v->owner);
            goto out;
        }
    }
    v->has_view = 1;
    int ndim = v->view.ndim;
    if (ndim > ARR_MAX_NDIM) {
        PyBuffer_Release(&v->view);
        v->has_view = 0;
        goto out;
    }
    size_t h = align16(8 + ARR_DTYPE_LEN + 8 * (size_t)ndim);
    memset(v->hdr, 0, h);
    put_u32(v->hdr, (uint32_t)h);
    put_u32(v->hdr + 4, (uint32_t)ndim);
    memcpy(v->hdr + 8, ds, (size_t)dl);
    for (int i = 0; i < ndim; i++)
        put_u64(v->hdr + 8 + ARR_DTYPE_LEN + 8 * i, (uint64_t)v->view.shape[i]);
    v->t = 'a';
    v->p = v->hdr;
    v->n = (Py_ssize_t)h;
    v->p2 = v->view.buf;
    v->n2 = v->view.len;
    rc = 1;
    goto out;
out_err:
    rc = -1;
out:
    Py_XDECREF(hasobj);
    Py_XDECREF(fields);
    Py_XDECREF(sub);
    Py_XDECREF(dstr);
    return rc;
}

static int encode_value(ShkPyDict *self, PyObject *o, venc *v)
{
    v->p2 = NULL;
    v->n2 = 0;
    v->owner = NULL;
    v->has_view = 0;
    v->n = 0;
    v->p = "";
    if (PyUnicode_CheckExact(o)) {
        /* ASCII strings are tagged so readers can skip the UTF-8 decoder */
        v->t = PyUnicode_IS_ASCII(o) ? 'A' : 's';
        v->p = PyUnicode_AsUTF8AndSize(o, &v->n);
        return v->p ? 0 : -1;
    }
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (!overflow) {
            v->t = 'i';
            put_u64(v->small, (uint64_t)x);
            v->p = v->small;
            v->n = 8;
            return 0;
        }
        v->owner = PyObject_Str(o);
        if (!v->owner)
            return -1;
        v->t = 'I';
        v->p = PyUnicode_AsUTF8AndSize(v->owner, &v->n);
        return v->p ? 0 : -1;
    }
    if (o == Py_None || o == Py_True || o == Py_False) {
        v->t = o == Py_None ? 'n' : o == Py_True ? 'T' : 'F';
        return 0;
    }
    if (PyFloat_CheckExact(o)) {
        double x = PyFloat_AS_DOUBLE(o);
        v->t = 'f';
        memcpy(v->small, &x, 8);
        v->p = v->small;
        v->n = 8;
        return 0;
    }
    if (PyBytes_CheckExact(o)) {
        v->t = 'b';
        v->p = PyBytes_AS_STRING(o);
        v->n = PyBytes_GET_SIZE(o);
        return 0;
    }
    PyObject *nd = ndarray_type_if_loaded();
    if (nd && Py_TYPE(o) == (PyTypeObject *)nd) {
        int rc = encode_array(o, v);
        if (rc != 0)
            return rc;
    }
    if (!self->allow_pickle) {
        PyErr_Format(PyExc_TypeError,
                     "SharedDict(allow_pickle=False) cannot store a %.100s "
                     "(it would need pickle)", Py_TYPE(o)->tp_name);
        return -1;
    }
    /* o is not exact bytes (stored above), so this always pickles */
    uint32_t tag;
    if (shk_py_pickle_init() < 0 ||
        shk_py_item_encode(o, 1, "SharedDict", &v->owner, &v->p, &v->n, &tag) < 0)
        return -1;
    v->t = 'p';
    return 0;
}

/* Decode an array value from a stable (validated or pinned) copy.
 * If `view_owner` is given, return a read-only array over the shared memory
 * itself whose buffer comes from view_owner. */
static PyObject *decode_array(const char *p, uint64_t n, PyObject *view_owner)
{
    if (load_numpy() < 0)
        return NULL;
    if (n < 8 + ARR_DTYPE_LEN)
        goto bad;
    uint32_t h = get_u32(p), ndim = get_u32(p + 4);
    if (ndim > ARR_MAX_NDIM || h < 8 + ARR_DTYPE_LEN + 8 * ndim || h > n || h % 16)
        goto bad;
    if (memchr(p + 8, 0, ARR_DTYPE_LEN) == NULL)
        goto bad;
    PyObject *dt = PyObject_CallFunction(np_dtype, "s", p + 8);
    if (!dt)
        return NULL;
    PyObject *shape = PyTuple_New(ndim);
    if (!shape) {
        Py_DECREF(dt);
        return NULL;
    }
    uint64_t items = 1;
    int overflow = 0;
    for (uint32_t i = 0; i < ndim; i++) {
        uint64_t s = get_u64(p + 8 + ARR_DTYPE_LEN + 8 * i);
        if (s && items > UINT64_MAX / s)
            overflow = 1;
        items *= s;
        PyTuple_SET_ITEM(shape, i, PyLong_FromUnsignedLongLong(s));
    }
    PyObject *isz = PyObject_GetAttrString(dt, "itemsize");
    long long itemsize = isz ? PyLong_AsLongLong(isz) : -1;
    Py_XDECREF(isz);
    if (itemsize < 0 || overflow || (itemsize && items > UINT64_MAX / (uint64_t)itemsize) ||
        items * (uint64_t)itemsize != n - h) {
        Py_DECREF(dt);
        Py_DECREF(shape);
        if (!PyErr_Occurred())
            goto bad;
        return NULL;
    }
    PyObject *arr;
    if (view_owner) {
        PyObject *flat = PyObject_CallFunction(np_frombuffer, "OOnn", view_owner, dt,
                                               (Py_ssize_t)items, (Py_ssize_t)h);
        /* "(O)": a bare "O" of a tuple would pass the tuple's items as the
         * arguments, and a 0-d array's shape () as none at all */
        arr = flat ? PyObject_CallMethod(flat, "reshape", "(O)", shape) : NULL;
        Py_XDECREF(flat);
    } else {
        arr = PyObject_CallFunctionObjArgs(np_empty, shape, dt, NULL);
        if (arr) {
            Py_buffer b;
            if (PyObject_GetBuffer(arr, &b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
                Py_CLEAR(arr);
            } else {
                if (b.len == (Py_ssize_t)(n - h)) {
                    memcpy(b.buf, p + h, (size_t)b.len);
                }
                PyBuffer_Release(&b);
            }
        }
    }
    Py_DECREF(dt);
    Py_DECREF(shape);
    return arr;
bad:
    PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: malformed array value");
    return NULL;
}

/* Decode a value read through a reference that is still to be validated.
 * Direct decoding (str, bytes, numbers) reads shared memory once; pickles
 * and arrays are first copied to private memory (returned in *raw, the
 * caller validates, then finishes with finish_value). */
static PyObject *decode_value_fast(const shk_dict_ref *r, PyObject **raw)
{
    const char *p = r->val;
    uint64_t n = r->vlen;
    *raw = NULL;
    switch (r->vtype) {
    case 'A': {
        /* Build the str directly; the bytes are checked to be ASCII so that
         * even a hostile writer cannot make an invalid str object. */
        PyObject *u = PyUnicode_New((Py_ssize_t)n, 127);
        if (!u)
            return NULL;
        Py_UCS1 *dst = PyUnicode_1BYTE_DATA(u);
        memcpy(dst, p, n);
        uint64_t acc = 0, w;
        uint64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, dst + i, 8);
            acc |= w;
        }
        for (; i < n; i++)
            acc |= dst[i];
        if (acc & 0x8080808080808080ull) {
            Py_DECREF(u);
            PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: non-ASCII bytes in an ASCII value");
            return NULL;
        }
        return u;
    }
    case 's':
        return decoded(PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, NULL), "str (invalid UTF-8)");
    case 'i':
        if (n != 8)
            break;
        return PyLong_FromLongLong((long long)get_u64(p));
    case 'b':
        return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    case 'f': {
        if (n != 8)
            break;
        double x;
        memcpy(&x, p, 8);
        return PyFloat_FromDouble(x);
    }
    case 'n':
        Py_RETURN_NONE;
    case 'T':
        Py_RETURN_TRUE;
    case 'F':
        Py_RETURN_FALSE;
    case 'I':
    case 'p':
    case 'a': {
        PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        if (!b)
            return NULL;
        *raw = b;
        Py_INCREF(Py_Ellipsis);
        return Py_Ellipsis;   /* placeholder: finish_value decodes raw */
    }
    }
    PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: malformed value");
    return NULL;
}

/* Second stage for values copied to `raw` (validated).  The one place a
 * dict value is unpickled, so the one place allow_pickle=False refuses: a
 * handle that refuses never runs pickle.loads, whoever wrote the value. */
static PyObject *finish_value(const ShkPyDict *self, uint8_t vtype, PyObject *raw)
{
    const char *p = PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw);
    if (vtype == 'p') {
        if (!self->allow_pickle) {
            PyErr_SetString(PyExc_TypeError,
                            "this value is a pickle and this SharedDict has allow_pickle=False: "
                            "it was not unpickled and the dict is unchanged (open the dict "
                            "with allow_pickle=True only if every process that can write "
                            "the segment is trusted)");
            return NULL;
        }
        if (shk_py_pickle_init() < 0)
            return NULL;
        return shk_py_item_decode(Py_NewRef(raw), SHK_PY_TAG_PICKLE);
    }
    if (vtype == 'I')
        return decode_key('I', p, (uint64_t)n, 0);
    return decode_array(p, (uint64_t)n, NULL);
}

/* Arrays are read through a pin rather than copied twice: while pinned the
 * entry cannot change or be reused, so its data is copied once, straight
 * into the new array.  Returns the array, or NULL with *retry set if the
 * entry changed before the pin took (find again). */
static PyObject *decode_array_pinned(ShkPyDict *self, const shk_dict_ref *r, int *retry)
{
    *retry = 0;
    int rc = shk_dict_pin(self->h, r);
    if (rc == SHK_EAGAIN) {
        *retry = 1;
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict: reading an array");
    /* the pin proves the entry is unchanged since find; the table word
     * proves we did not find it through a stale table */
    shk_segment *seg = shk_dict_segment(self->h);
    shk_segment_retain(seg);   /* decoding runs numpy; keep the mapping */
    PyObject *v = NULL;
    if (!shk_dict_ref_valid(self->h, r))
        *retry = 1;
    else
        v = decode_array(r->val, r->vlen, NULL);
    shk_dict_unpin_seg(seg, r->entry);
    shk_segment_close(seg);
    return v;
}

/* Find key and decode its value: the full loop of find, decode, validate,
 * retry.  Returns a new reference; NULL with no error and *found = 0 if
 * absent; NULL with an error otherwise.  entry/ver (may be NULL) identify
 * the entry the value came from, for compare-and-set style commits. */
static PyObject *fetch(ShkPyDict *self, const kenc *k, int *found,
                       uint64_t *entry, uint64_t *ver)
{
    shk_dict_ref r;
    for (;;) {
        if (SHK_UNLIKELY(!self->h)) {
            /* a retry loop ran Python code (__eq__, pickle) and another
             * thread closed the handle meanwhile */
            *found = 1;
            closed_error(self);
            return NULL;
        }
        int rc = shk_dict_find(self->h, k->t, k->p, (size_t)k->n, &r);
        if (rc == SHK_ENOTFOUND) {
            *found = 0;
            if (entry)
                *entry = *ver = 0;
            return NULL;
        }
        if (rc != SHK_OK)
            return shk_py_raise(rc, "SharedDict lookup");
        PyObject *v, *raw = NULL;
        if (r.vtype == 'a') {
            int retry;
            v = decode_array_pinned(self, &r, &retry);
            if (retry)
                continue;
        } else {
            v = decode_value_fast(&r, &raw);
            if (!shk_dict_ref_valid(self->h, &r)) {
                /* changed under us: whatever we decoded is meaningless */
                Py_XDECREF(v);
                Py_XDECREF(raw);
                if (!v)
                    PyErr_Clear();
                continue;
            }
            if (v && raw) {
                Py_DECREF(v);
                v = finish_value(self, r.vtype, raw);
            }
            Py_XDECREF(raw);
        }
        *found = 1;
        if (entry) {
            *entry = r.entry;
            *ver = r.ver;
        }
        return v;
    }
}

static inline PyObject *lookup(ShkPyDict *self, const kenc *k, int *found)
{
    return fetch(self, k, found, NULL, NULL);
}

static inline PyObject *lookup_ref(ShkPyDict *self, const kenc *k, int *found,
                                   uint64_t *entry, uint64_t *ver)
{
    return fetch(self, k, found, entry, ver);
}

/* Prepare + fill an entry for (key, value).  0 ok (txn ready), -1 error. */
static int build_entry(ShkPyDict *self, const kenc *k, PyObject *value,
                       shk_dict_txn *txn)
{
    venc v;
    if (encode_value(self, value, &v) < 0) {
        venc_free(&v);
        return -1;
    }
    if (!self->h) {
        /* Python code (an __eq__ before us, pickle.dumps just now) closed
         * the handle, or another thread did */
        venc_free(&v);
        return closed_error(self);
    }
    uint64_t total = (uint64_t)v.n + (uint64_t)v.n2;
    int rc = shk_dict_prepare(self->h, k->t, k->p, (size_t)k->n, v.t, total, txn);
    if (rc != SHK_OK) {
        venc_free(&v);
        shk_py_raise(rc, "SharedDict: storing value");
        return -1;
    }
    if (v.n)
        memcpy(txn->val, v.p, (size_t)v.n);
    if (v.n2) {
        char *dst = txn->val + v.n;
        memcpy(dst, v.p2, (size_t)v.n2);
    }
    venc_free(&v);
    return 0;
}

/* ============================================================ the type */

/* The start of every operation on one key: the closed check, then the key
 * encoded into *k (kenc_free it).  0, or -1 with ValueError (closed) or
 * the key's TypeError/ValueError. */
static inline int open_key(ShkPyDict *self, PyObject *key, kenc *k)
{
    CHECK_OPEN(self, -1);
    return encode_key(key, k, 0);
}

static int dict_mp_ass(PyObject *op, PyObject *key, PyObject *value)
{
    ShkPyDict *self = (ShkPyDict *)op;
    kenc k;
    if (open_key(self, key, &k) < 0)
        return -1;
    int rc;
    if (value == NULL) {
        rc = shk_dict_delete(self->h, k.t, k.p, (size_t)k.n, 0, 0);
        kenc_free(&k);
        if (rc == SHK_OK)
            return 0;
        if (rc == SHK_ENOTFOUND) {
            PyErr_SetObject(PyExc_KeyError, key);
            return -1;
        }
        shk_py_raise(rc, "SharedDict: delete");
        return -1;
    }
    shk_dict_txn txn;
    if (build_entry(self, &k, value, &txn) < 0) {
        kenc_free(&k);
        return -1;
    }
    kenc_free(&k);
    rc = shk_dict_commit(self->h, &txn, SHK_DICT_SET, 0, 0, NULL);
    if (rc != SHK_OK) {
        shk_dict_abort(self->h, &txn);
        shk_py_raise(rc, "SharedDict: set");
        return -1;
    }
    return 0;
}

static PyObject *dict_mp_sub(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    kenc k;
    if (open_key(self, key, &k) < 0)
        return NULL;
    int found;
    PyObject *v = lookup(self, &k, &found);
    kenc_free(&k);
    if (!v && !found && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return v;
}

static int dict_sq_contains(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    kenc k;
    if (open_key(self, key, &k) < 0) {
        /* like dict: an unhashable-ish key is an error, but a key of a type
         * we never store is simply absent */
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    shk_dict_ref r;
    int rc;
    do {
        rc = shk_dict_find(self->h, k.t, k.p, (size_t)k.n, &r);
        /* the key matched on a snapshot: confirm it was a stable one */
    } while (rc == SHK_OK && !shk_dict_ref_valid(self->h, &r));
    kenc_free(&k);
    if (rc == SHK_OK)
        return 1;
    if (rc == SHK_ENOTFOUND)
        return 0;
    shk_py_raise(rc, "SharedDict: contains");
    return -1;
}

static Py_ssize_t dict_mp_len(PyObject *op)
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, -1);
    uint64_t n = shk_dict_count(self->h);
    if (n == SHK_DICT_COUNT_CORRUPT || n > (uint64_t)PY_SSIZE_T_MAX) {
        shk_py_raise(SHK_ECORRUPT, "SharedDict len");
        return -1;
    }
    return (Py_ssize_t)n;
}

/* The start of a METH_FASTCALL method: TypeError "<fn> expected N
 * arguments" (or "N or M") unless lo <= nargs <= hi, then the closed check.
 * 0, or -1 with the exception set. */
static int method_args(ShkPyDict *self, const char *fn, Py_ssize_t nargs, Py_ssize_t lo,
                       Py_ssize_t hi)
{
    if (nargs < lo || nargs > hi) {
        if (lo == hi)
            PyErr_Format(PyExc_TypeError, "%s expected %zd arguments", fn, lo);
        else
            PyErr_Format(PyExc_TypeError, "%s expected %zd or %zd arguments", fn, lo, hi);
        return -1;
    }
    CHECK_OPEN(self, -1);
    return 0;
}

/* get(key, default=None) */
static PyObject *dict_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ShkPyDict *self = (ShkPyDict *)op;
    kenc k;
    if (method_args(self, "get", nargs, 1, 2) < 0 || encode_key(args[0], &k, 0) < 0)
        return NULL;
    int found;
    PyObject *v = lookup(self, &k, &found);
    kenc_free(&k);
    if (v || found || PyErr_Occurred())
        return v;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

/* ---- atomic read-modify-write: incr, compare_and_set, setdefault, pop ----
 *
 * Each reads the value of the key and the entry it came from, decides, and
 * then writes only if nothing changed meanwhile: a store expecting that
 * entry (SHK_DICT_EXPECT, where entry 0 means "still absent"), an insert
 * only while absent (SHK_DICT_INSERT), or a delete of that entry.  A lost
 * race reads again.  rmw() is that loop and the argument checks; an
 * rmw_method per method holds only its arity and decision.  No Python code runs under the dict's lock: the step
 * (__eq__, __add__) and the value encoding (pickle) run before the commit,
 * which is why it has to be conditional. */

/* Commit (key -> value) in `mode`: SHK_DICT_EXPECT only if the key still is
 * (entry, ver) (0 = absent), SHK_DICT_INSERT only if it is absent.
 * 1 committed, 0 lost the race (read again), -1 error (`context` prefixes
 * the message). */
static int commit_entry(ShkPyDict *self, const kenc *k, PyObject *value, int mode,
                        uint64_t entry, uint64_t ver, const char *context)
{
    shk_dict_txn txn;
    if (build_entry(self, k, value, &txn) < 0)
        return -1;
    int rc = shk_dict_commit(self->h, &txn, mode, entry, ver, NULL);
    if (rc == SHK_OK)
        return 1;
    shk_dict_abort(self->h, &txn);
    if (rc == (mode == SHK_DICT_INSERT ? SHK_EEXIST : SHK_EAGAIN))
        return 0;
    shk_py_raise(rc, context);
    return -1;
}

/* Delete key only if it still is (entry, ver).  1 deleted, 0 lost the race
 * (changed or already gone), -1 error. */
static int delete_expect(ShkPyDict *self, const kenc *k, uint64_t entry, uint64_t ver,
                         const char *context)
{
    if (!self->h)   /* closed by another thread while decoding (pickle) */
        return closed_error(self);
    int rc = shk_dict_delete(self->h, k->t, k->p, (size_t)k->n, entry, ver);
    if (rc == SHK_OK)
        return 1;
    if (rc == SHK_EAGAIN || rc == SHK_ENOTFOUND)
        return 0;
    shk_py_raise(rc, context);
    return -1;
}

enum { RMW_DONE, RMW_STORE, RMW_INSERT, RMW_DELETE };

typedef struct {
    int what;            /* RMW_*: return at once, or write then return */
    PyObject *store;     /* RMW_STORE/RMW_INSERT: the value (borrowed from
                          * result or the arguments) */
    PyObject *result;    /* new reference: what the method returns once the
                          * write took (at once for RMW_DONE) */
} rmw_plan;

/* One read-modify-write method: its arguments and its decision. */
typedef struct {
    const char *name;             /* for "<name> expected N arguments" */
    Py_ssize_t min_args, max_args;
    /* Arguments past the key that are wrong whatever the value: -1 with
     * an exception, checked before the key is encoded (may be NULL). */
    int (*check)(PyObject *const *args, Py_ssize_t nargs);
    /* The decision on the current value `cur` (borrowed; NULL if the key is
     * absent): fill *plan, or return -1 with an exception. */
    int (*step)(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan);
    const char *context;          /* prefix of a commit's error message */
} rmw_method;

/* Lost races an rmw() accepts before it gives up.  Between processes a
 * lost race means another writer committed, so losing this many in a row
 * does not happen; a step whose own Python code rewrites the key (an
 * __eq__ that stores to it) loses every time, and would loop for ever. */
#define RMW_MAX_RACES 10000

/* The whole method: arguments (the key is args[0]), then read, decide and
 * write until the write takes, at most RMW_MAX_RACES times. */
static PyObject *rmw(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                     const rmw_method *m)
{
    ShkPyDict *self = (ShkPyDict *)op;
    if (method_args(self, m->name, nargs, m->min_args, m->max_args) < 0 ||
        (m->check && m->check(args, nargs) < 0))
        return NULL;
    kenc k;
    if (encode_key(args[0], &k, 0) < 0)
        return NULL;
    PyObject *result = NULL;
    for (int races = 0;; races++) {
        if (races == RMW_MAX_RACES) {
            PyErr_Format(PyExc_RuntimeError,
                         "%s: the value of this key changed during each of %d attempts, so "
                         "nothing was written; does Python code that the operation runs "
                         "(an __eq__, __add__ or pickling) write to this key?",
                         m->name, RMW_MAX_RACES);
            break;
        }
        int found;
        uint64_t e, ver;
        PyObject *cur = lookup_ref(self, &k, &found, &e, &ver);
        if (!cur && PyErr_Occurred())
            break;
        rmw_plan plan = {RMW_DONE, NULL, NULL};
        int rc = m->step(cur, args, nargs, &plan);
        Py_XDECREF(cur);
        if (rc < 0)
            break;
        if (plan.what == RMW_DONE) {
            result = plan.result;
            break;
        }
        if (plan.what == RMW_DELETE)
            rc = delete_expect(self, &k, e, ver, m->context);
        else
            rc = commit_entry(self, &k, plan.store,
                              plan.what == RMW_INSERT ? SHK_DICT_INSERT : SHK_DICT_EXPECT, e,
                              ver, m->context);
        if (rc == 1) {
            result = plan.result;
            break;
        }
        Py_DECREF(plan.result);
        if (rc < 0)
            break;
    }
    kenc_free(&k);
    return result;
}

static int incr_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan)
{
    if (cur && !(PyLong_CheckExact(cur) || PyFloat_CheckExact(cur))) {
        PyErr_Format(PyExc_TypeError, "incr: value of this key is a %.100s, not a number",
                     Py_TYPE(cur)->tp_name);
        return -1;
    }
    PyObject *one = nargs == 2 ? NULL : PyLong_FromLong(1);
    PyObject *delta = nargs == 2 ? args[1] : one;
    if (!delta)
        return -1;
    PyObject *nv = cur ? PyNumber_Add(cur, delta) : Py_NewRef(delta);
    Py_XDECREF(one);
    if (!nv)
        return -1;
    plan->what = RMW_STORE;
    plan->store = nv;
    plan->result = nv;
    return 0;
}

static int incr_check(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 2 && !(PyLong_Check(args[1]) || PyFloat_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "incr delta must be an int or a float");
        return -1;
    }
    return 0;
}

/* incr(key, delta=1) -> new value.  Atomic across processes. */
static const rmw_method incr_method = {"incr", 1, 2, incr_check, incr_step,
                                       "SharedDict: commit"};

static int cas_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan)
{
    (void)nargs;
    int eq = cur ? PyObject_RichCompareBool(cur, args[1], Py_EQ) : 0;
    if (eq < 0)
        return -1;
    if (eq) {
        plan->what = RMW_STORE;
        plan->store = args[2];
    }
    plan->result = Py_NewRef(eq ? Py_True : Py_False);
    return 0;
}

/* compare_and_set(key, expected, new) -> bool */
static const rmw_method cas_method = {"compare_and_set", 3, 3, NULL, cas_step,
                                      "SharedDict: commit"};

static int setdefault_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs,
                           rmw_plan *plan)
{
    if (!cur) {
        plan->what = RMW_INSERT;
        cur = plan->store = nargs == 2 ? args[1] : Py_None;
    }
    plan->result = Py_NewRef(cur);
    return 0;
}

/* setdefault(key, default=None): atomic across processes */
static const rmw_method setdefault_method = {"setdefault", 1, 2, NULL, setdefault_step,
                                             "SharedDict.setdefault"};

static int pop_step(PyObject *cur, PyObject *const *args, Py_ssize_t nargs, rmw_plan *plan)
{
    if (cur) {
        plan->what = RMW_DELETE;
    } else if (nargs == 2) {
        cur = args[1];
    } else {
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return -1;
    }
    plan->result = Py_NewRef(cur);
    return 0;
}

/* pop(key[, default]) */
static const rmw_method pop_method = {"pop", 1, 2, NULL, pop_step, "SharedDict.pop"};

/* The METH_FASTCALL functions of the methods above. */
#define RMW_FUNCTION(fn, method)                                               \
    static PyObject *fn(PyObject *op, PyObject *const *args, Py_ssize_t nargs) \
    {                                                                          \
        return rmw(op, args, nargs, &method);                                  \
    }
RMW_FUNCTION(dict_incr, incr_method)
RMW_FUNCTION(dict_cas, cas_method)
RMW_FUNCTION(dict_setdefault, setdefault_method)
RMW_FUNCTION(dict_pop, pop_method)

/* ---- scans ---- */

enum { SCAN_KEYS = 1, SCAN_VALUES = 2, SCAN_ITEMS = 3 };

/* One lock-free pass; returns the list, or NULL with no error set if the
 * table was replaced meanwhile (retry), or NULL with an error. */
static PyObject *scan_once(ShkPyDict *self, int what, Py_ssize_t limit)
{
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    uint64_t pos = 0, tw = 0;
    shk_dict_ref r;
    for (;;) {
        if (limit >= 0 && PyList_GET_SIZE(out) >= limit)
            return out;
        if (!self->h) {   /* closed by another thread while unpickling */
            Py_DECREF(out);
            closed_error(self);
            return NULL;
        }
        int rc = shk_dict_next(self->h, &pos, &tw, &r);
        if (rc == SHK_ENOTFOUND)
            return out;
        if (rc == SHK_EAGAIN) {
            Py_DECREF(out);
            return NULL;
        }
        if (rc != SHK_OK) {
            Py_DECREF(out);
            return shk_py_raise(rc, "SharedDict scan");
        }
        PyObject *key = NULL, *val = NULL, *raw = NULL;
        if (what & SCAN_KEYS)
            key = decode_key(r.ktype, r.key, r.klen, 0);
        if (what & SCAN_VALUES)
            val = decode_value_fast(&r, &raw);
        int ok = shk_dict_ref_valid(self->h, &r);
        if (!ok || ((what & SCAN_KEYS) && !key) || ((what & SCAN_VALUES) && !val)) {
            Py_XDECREF(key);
            Py_XDECREF(val);
            Py_XDECREF(raw);
            if (ok) {          /* a real decoding error */
                Py_DECREF(out);
                return NULL;
            }
            /* The slot changed (the key replaced or deleted) or the table
             * was replaced meanwhile: look at the same slot again, so a
             * replaced key is not skipped; the next step reports a
             * replaced table. */
            PyErr_Clear();
            pos = (uint64_t)r.shard << 32 | r.slot;
            continue;
        }
        if (raw) {
            Py_DECREF(val);
            val = finish_value(self, r.vtype, raw);
            Py_DECREF(raw);
            if (!val) {
                Py_XDECREF(key);
                Py_DECREF(out);
                return NULL;
            }
        }
        PyObject *item = what == SCAN_ITEMS ? PyTuple_Pack(2, key, val)
                         : what == SCAN_KEYS ? Py_NewRef(key) : Py_NewRef(val);
        Py_XDECREF(key);
        Py_XDECREF(val);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
}

static PyObject *scan(ShkPyDict *self, int what, Py_ssize_t limit)
{
    CHECK_OPEN(self, NULL);
    /* A resize or clear restarts the pass: a snapshot never shows a key
     * twice.  Under a storm of resizes this retries; each resize at least
     * doubles the table, so the number of restarts is logarithmic. */
    for (;;) {
        PyObject *l = scan_once(self, what, limit);
        if (l || PyErr_Occurred())
            return l;
    }
}

static PyObject *dict_keys_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_KEYS, -1);
}
static PyObject *dict_values_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_VALUES, -1);
}
static PyObject *dict_items_list(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    return scan((ShkPyDict *)op, SCAN_ITEMS, -1);
}

/* A consistent snapshot: every key (and value) at one instant.  All shards
 * are frozen (writers wait; readers go on) while the keys are decoded and
 * the values copied raw; the values are decoded after the unlock, so no
 * Python code (unpickling, numpy, a finalizer run by the cyclic GC) runs
 * while writers wait.  Returns a list of keys, or a dict when `values`. */
static PyObject *dict_snapshot(PyObject *op, PyObject *want_values)
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int values = PyObject_IsTrue(want_values);
    if (values < 0)
        return NULL;
    PyObject *keys = PyList_New(0), *raws = PyList_New(0), *out = NULL;
    if (!keys || !raws)
        goto done;
#if PY_VERSION_HEX >= 0x030A0000
    int gc_was_enabled = PyGC_Disable();
#endif
    int rc = shk_dict_lock(self->h);
    if (rc == SHK_OK) {
        uint64_t pos = 0, tw = 0;
        shk_dict_ref r;
        while ((rc = shk_dict_next(self->h, &pos, &tw, &r)) == SHK_OK) {
            PyObject *k = decode_key(r.ktype, r.key, r.klen, 0);
            PyObject *v = !values ? NULL
                          : Py_BuildValue("(iN)", (int)r.vtype,
                                          PyBytes_FromStringAndSize(r.val, (Py_ssize_t)r.vlen));
            int bad = !k || (values && !v) || PyList_Append(keys, k) < 0 ||
                      (values && PyList_Append(raws, v) < 0);
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (bad)
                break;
        }
        shk_dict_unlock(self->h);
    }
#if PY_VERSION_HEX >= 0x030A0000
    if (gc_was_enabled)
        PyGC_Enable();
#endif
    if (PyErr_Occurred())
        goto done;
    if (rc != SHK_ENOTFOUND) {
        shk_py_raise(rc == SHK_EAGAIN ? SHK_ECORRUPT : rc, "SharedDict.snapshot");
        goto done;
    }
    if (!values) {
        out = Py_NewRef(keys);
        goto done;
    }
    out = PyDict_New();
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(keys); i++) {
        PyObject *t = PyList_GET_ITEM(raws, i), *b = PyTuple_GET_ITEM(t, 1), *raw;
        shk_dict_ref r = {.vtype = (uint8_t)PyLong_AsLong(PyTuple_GET_ITEM(t, 0)),
                          .val = PyBytes_AS_STRING(b),
                          .vlen = (uint64_t)PyBytes_GET_SIZE(b)};
        PyObject *v = decode_value_fast(&r, &raw);
        if (v && raw) {
            Py_DECREF(v);
            v = finish_value(self, r.vtype, raw);
            Py_DECREF(raw);
        }
        if (!v || PyDict_SetItem(out, PyList_GET_ITEM(keys, i), v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(v);
    }
done:
    Py_XDECREF(keys);
    Py_XDECREF(raws);
    return out;
}

/* The key of some live entry, looking first where the last popitem of this
 * handle left off (so draining a dict with popitem is linear, not
 * quadratic).  NULL with no error if the dict is empty. */
static PyObject *any_key(ShkPyDict *self)
{
    for (;;) {
        uint64_t start = self->pop_hint, pos = start, tw = 0;
        shk_dict_ref r;
        int rc = shk_dict_next(self->h, &pos, &tw, &r);
        if (rc == SHK_ENOTFOUND && start > 0) {
            pos = 0;
            tw = 0;
            rc = shk_dict_next(self->h, &pos, &tw, &r);
        }
        if (rc == SHK_ENOTFOUND) {
            self->pop_hint = 0;
            return NULL;
        }
        if (rc == SHK_EAGAIN)
            continue;
        if (rc != SHK_OK)
            return shk_py_raise(rc, "SharedDict.popitem");
        PyObject *key = decode_key(r.ktype, r.key, r.klen, 0);
        if (!shk_dict_ref_valid(self->h, &r)) {
            Py_XDECREF(key);
            PyErr_Clear();
            continue;
        }
        self->pop_hint = pos;
        return key;
    }
}

static PyObject *dict_popitem(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    for (;;) {
        PyObject *key = any_key(self);
        if (!key) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
            return NULL;
        }
        kenc k;
        if (encode_key(key, &k, 0) < 0) {
            Py_DECREF(key);
            return NULL;
        }
        int found;
        uint64_t e, ver;
        PyObject *v = lookup_ref(self, &k, &found, &e, &ver);
        if (!v) {
            kenc_free(&k);
            Py_DECREF(key);
            if (PyErr_Occurred())
                return NULL;
            continue;            /* another process took it first */
        }
        int rc = delete_expect(self, &k, e, ver, "SharedDict.popitem");
        kenc_free(&k);
        PyObject *t = rc == 1 ? PyTuple_Pack(2, key, v) : NULL;
        Py_DECREF(key);
        Py_DECREF(v);
        if (rc != 0)             /* taken, or an error */
            return t;
    }
}

static PyObject *dict_clear(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int rc = shk_dict_clear(self->h);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.clear");
    Py_RETURN_NONE;
}

/* ---- waiting for a change (WATCH in src/dict_internal.h) ---- */

static PyObject *dict_watch(PyObject *op, PyObject *on)
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    int b = PyObject_IsTrue(on);
    if (b < 0)
        return NULL;
    shk_dict_watch(self->h, b);
    Py_RETURN_NONE;
}

static PyObject *dict_changes(PyObject *op, PyObject *Py_UNUSED(x))
{
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    return PyLong_FromUnsignedLong(shk_dict_changes(self->h));
}

/* _wait_change(seen, timeout) -> bool: False after timeout seconds (< 0:
 * none) with the counter still at seen; True when it moved or after a
 * wake-up (compare again).  The GIL is dropped with the segment retained,
 * not the handle, so close() from another thread stays immediate. */
static PyObject *dict_wait_change(PyObject *op, PyObject *args)
{
    ShkPyDict *self = (ShkPyDict *)op;
    unsigned long seen;
    double timeout;
    if (!PyArg_ParseTuple(args, "kd:_wait_change", &seen, &timeout))
        return NULL;
    CHECK_OPEN(self, NULL);
    int64_t ns = timeout < 0 ? -1 : timeout > 1e9 ? (int64_t)1e18 : (int64_t)(timeout * 1e9);
    shk_segment *seg = shk_dict_segment(self->h);
    const void *word = shk_dict_change_word(self->h);
    shk_segment_retain(seg);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = shk_dict_wait_change_at(word, (uint32_t)seen, ns);
    Py_END_ALLOW_THREADS
    shk_segment_close(seg);
    if (rc == SHK_ETIMEDOUT)
        Py_RETURN_FALSE;
    if (rc == SHK_EINTR && PyErr_CheckSignals() < 0)
        return NULL;
    if (rc != SHK_OK && rc != SHK_EINTR)
        return shk_py_raise(rc, "SharedDict.wait");
    Py_RETURN_TRUE;
}

static PyObject *dict_entry_version(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    kenc k;
    if (open_key(self, key, &k) < 0)
        return NULL;
    shk_dict_ref r;
    int rc = shk_dict_find(self->h, k.t, k.p, (size_t)k.n, &r);
    kenc_free(&k);
    if (rc == SHK_ENOTFOUND)
        return PyLong_FromLong(0);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.wait");
    return PyLong_FromUnsignedLongLong(r.ver);
}

/* ---- views ---- */

typedef struct {
    PyObject_HEAD
    shk_segment *seg;     /* retained */
    uint64_t entry;       /* pinned */
    char *ptr;
    Py_ssize_t len;
    pid_t pid;            /* the process whose pin this is */
} ShkPyPin;

static int pin_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    ShkPyPin *p = (ShkPyPin *)op;
    return PyBuffer_FillInfo(view, op, p->ptr, p->len, 1, flags);
}

static void pin_dealloc(PyObject *op)
{
    ShkPyPin *p = (ShkPyPin *)op;
    if (p->seg) {
        /* A forked child has a copy of this object but not of the pin: only
         * the process that pinned may unpin. */
        if (p->pid == getpid())
            shk_dict_unpin_seg(p->seg, p->entry);
        shk_segment_close(p->seg);
    }
    Py_TYPE(op)->tp_free(op);
}

static PyBufferProcs pin_as_buffer = {pin_getbuffer, NULL};

static PyTypeObject ShkPyPin_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmkit._shmkit._DictPin",
    .tp_basicsize = sizeof(ShkPyPin),
    .tp_dealloc = pin_dealloc,
    .tp_as_buffer = &pin_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A pinned SharedDict value: keeps its memory valid while alive.",
};

/* get_view(key): zero-copy read-only view of an array (or a memoryview of
 * a bytes/str value). */
static PyObject *dict_get_view(PyObject *op, PyObject *key)
{
    ShkPyDict *self = (ShkPyDict *)op;
    kenc k;
    if (open_key(self, key, &k) < 0)
        return NULL;
    shk_dict_ref r;
    int rc;
    for (;;) {
        rc = shk_dict_find(self->h, k.t, k.p, (size_t)k.n, &r);
        if (rc != SHK_OK)
            break;
        rc = shk_dict_pin(self->h, &r);
        if (rc == SHK_OK)
            break;
        if (rc != SHK_EAGAIN)
            break;
    }
    kenc_free(&k);
    if (rc == SHK_ENOTFOUND) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.get_view");
    /* pinned: the entry can no longer change or be reused */
    ShkPyPin *pin = PyObject_New(ShkPyPin, &ShkPyPin_Type);
    if (!pin) {
        shk_dict_unpin(self->h, r.entry);
        return NULL;
    }
    shk_segment *seg = shk_dict_segment(self->h);
    shk_segment_retain(seg);
    pin->seg = seg;
    pin->entry = r.entry;
    pin->pid = getpid();
    pin->ptr = (char *)r.val;
    pin->len = (Py_ssize_t)r.vlen;
    PyObject *res;
    if (r.vtype == 'a') {
        res = decode_array(r.val, r.vlen, (PyObject *)pin);
    } else if (r.vtype == 'b' || r.vtype == 's' || r.vtype == 'A') {
        res = PyMemoryView_FromObject((PyObject *)pin);
    } else {
        PyErr_SetString(PyExc_TypeError,
                        "get_view needs a numpy array, bytes or str value");
        res = NULL;
    }
    Py_DECREF(pin);
    return res;
}

/* ---- lifecycle ---- */

static int dict_init(PyObject *op, PyObject *args, PyObject *kw)
{
    ShkPyDict *self = (ShkPyDict *)op;
    static char *kwlist[] = {"segment", "name", "create", "capacity", "allow_pickle", NULL};
    PyObject *segobj, *name;
    int create = 1, allow_pickle = 1;
    unsigned long long cap = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|pKp", kwlist, &segobj, &name,
                                     &create, &cap, &allow_pickle))
        return -1;
    shk_segment *seg = shk_py_handle_begin(op, &dict_ops, segobj);
    if (!seg)
        return -1;
    const char *oname = shk_py_object_name(name);
    if (!oname)
        return -1;
    shk_dict *d;
    int created = 0;
    int rc = shk_dict_open_named(seg, oname, create, cap, &d, &created);
    if (rc != SHK_OK)
        return shk_py_object_error(rc, name, "SharedDict", "create=True to create it");
    self->allow_pickle = allow_pickle;
    return shk_py_handle_opened(op, &dict_ops, d, created, segobj, name);
}

/* The base's dealloc, after the weak references the base does not have. */
static void dict_dealloc(PyObject *op)
{
    if (((ShkPyDict *)op)->weakrefs)
        PyObject_ClearWeakRefs(op);
    shk_py_handle_dealloc(op);
}

static PyObject *stats_dict(const shk_dict_stats *st, shk_dict *d, int full)
{
    shk_segment_info si;
    shk_segment_info_get(shk_dict_segment(d), &si);
    PyObject *r = Py_BuildValue(
        "{s:K,s:K,s:d,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
        "entries", (unsigned long long)st->count,
        "capacity", (unsigned long long)st->capacity,
        "load_factor", st->capacity ? (double)st->used_slots / (double)st->capacity : 0.0,
        "tombstones", (unsigned long long)st->tombstones,
        "table_bytes", (unsigned long long)st->table_bytes,
        "resizes", (unsigned long long)st->resizes,
        "recoveries", (unsigned long long)st->recoveries,
        "heap_used", (unsigned long long)si.heap_used,
        "heap_free", (unsigned long long)si.heap_free,
        "segment_size", (unsigned long long)si.file_size,
        "max_size", (unsigned long long)si.max_size);
    if (r && full) {
        PyObject *x = Py_BuildValue("{s:K,s:K,s:K,s:K}",
                                    "entry_bytes", (unsigned long long)st->entry_bytes,
                                    "key_bytes", (unsigned long long)st->key_bytes,
                                    "value_bytes", (unsigned long long)st->value_bytes,
                                    "max_probe", (unsigned long long)st->max_probe);
        if (!x || PyDict_Update(r, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(r);
            return NULL;
        }
        Py_DECREF(x);
    }
    return r;
}

static PyObject *dict_stats(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    shk_dict_stats st;
    shk_dict_stats_get(self->h, &st);
    if (st.count == SHK_DICT_COUNT_CORRUPT)
        return shk_py_raise(SHK_ECORRUPT, "SharedDict.stats");
    return stats_dict(&st, self->h, 0);
}

/* The encodings check() adds to the C invariants: every key, and every
 * value but pickles (never loaded here) and arrays (not copied here; their
 * header is validated when read), decodes.  0, or -1 with
 * CorruptSegmentError (or MemoryError). */
static int check_encodings(ShkPyDict *self)
{
    uint64_t pos = 0, tw = 0;
    shk_dict_ref r;
    for (;;) {
        int rc = shk_dict_next(self->h, &pos, &tw, &r);
        if (rc == SHK_ENOTFOUND)
            return 0;
        if (rc == SHK_EAGAIN) {      /* table replaced: walk the new one */
            pos = tw = 0;
            continue;
        }
        if (rc != SHK_OK) {
            shk_py_raise(rc, "SharedDict.check");
            return -1;
        }
        PyObject *raw = NULL, *val = NULL;
        PyObject *key = decode_key(r.ktype, r.key, r.klen, 0);
        if (key)   /* arrays are decoded too (a copy): their header is checked */
            val = r.vtype == 'p' ? Py_NewRef(Py_None) : decode_value_fast(&r, &raw);
        if (!shk_dict_ref_valid(self->h, &r)) {   /* changed meanwhile */
            Py_XDECREF(key);
            Py_XDECREF(val);
            Py_XDECREF(raw);
            PyErr_Clear();
            continue;
        }
        if (val && raw) {            /* 'I': a big int's digits; 'a': an array */
            Py_DECREF(val);
            val = finish_value(self, r.vtype, raw);
        }
        Py_XDECREF(raw);
        Py_XDECREF(key);
        if (!val)
            return -1;
        Py_DECREF(val);
    }
}

static PyObject *dict_check(PyObject *op, PyObject *noargs)
{
    (void)noargs;
    ShkPyDict *self = (ShkPyDict *)op;
    CHECK_OPEN(self, NULL);
    shk_dict_stats st;
    int rc = shk_dict_check(self->h, &st);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "SharedDict.check");
    if (check_encodings(self) < 0)
        return NULL;
    return stats_dict(&st, self->h, 1);
}

static PyObject *dict_get_allow_pickle(PyObject *op, void *c)
{
    (void)c;
    return PyBool_FromLong(((ShkPyDict *)op)->allow_pickle);
}

static PyObject *estimate_size(PyObject *m, PyObject *args)
{
    (void)m;
    unsigned long long n, kl, vl;
    if (!PyArg_ParseTuple(args, "KKK", &n, &kl, &vl))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_dict_estimate_size(n, kl, vl));
}

static PyObject *entry_footprint(PyObject *m, PyObject *args)
{
    (void)m;
    unsigned long long kl, vl;
    if (!PyArg_ParseTuple(args, "KK", &kl, &vl))
        return NULL;
    return PyLong_FromUnsignedLongLong(shk_dict_entry_footprint(kl, vl));
}

static PyMethodDef dict_methods[] = {
    {"get", (PyCFunction)(void (*)(void))dict_get, METH_FASTCALL,
     "get(key, default=None): the value of key, or default."},
    {"incr", (PyCFunction)(void (*)(void))dict_incr, METH_FASTCALL,
     "incr(key, delta=1): atomically add delta to a numeric value (absent = 0); "
     "returns the new value."},
    {"compare_and_set", (PyCFunction)(void (*)(void))dict_cas, METH_FASTCALL,
     "compare_and_set(key, expected, new): atomically set key to new if its "
     "value == expected; returns True if it did."},
    {"setdefault", (PyCFunction)(void (*)(void))dict_setdefault, METH_FASTCALL,
     "setdefault(key, default=None): atomic across processes."},
    {"pop", (PyCFunction)(void (*)(void))dict_pop, METH_FASTCALL,
     "pop(key[, default]): remove key and return its value."},
    {"clear", dict_clear, METH_NOARGS, "Remove every entry."},
    {"_watch", dict_watch, METH_O, "_watch(on): (un)register as a watcher."},
    {"_changes", dict_changes, METH_NOARGS, "The change counter (while watched)."},
    {"_wait_change", dict_wait_change, METH_VARARGS,
     "_wait_change(seen, timeout) -> bool: wait for the counter to leave seen."},
    {"_entry_version", dict_entry_version, METH_O,
     "The version of key's entry (unique per write), 0 if absent."},
    {"get_view", dict_get_view, METH_O,
     "get_view(key): zero-copy read-only view of a numpy array (or a "
     "memoryview of a bytes/str value), valid as long as it lives."},
    {"_keys", dict_keys_list, METH_NOARGS, "Snapshot list of the keys."},
    {"_values", dict_values_list, METH_NOARGS, "Snapshot list of the values."},
    {"_items", dict_items_list, METH_NOARGS, "Snapshot list of (key, value)."},
    {"_snapshot", dict_snapshot, METH_O,
     "_snapshot(values): keys (a list) or items (a dict) at one instant, writers held off."},
    {"popitem", dict_popitem, METH_NOARGS,
     "popitem(): remove and return some (key, value) pair; KeyError if empty."},
    {"stats", dict_stats, METH_NOARGS, "Counters: entries, capacity, load factor, heap..."},
    {"check", dict_check, METH_NOARGS,
     "Verify every invariant (CorruptSegmentError if one fails); returns stats."},
    {"close", shk_py_handle_close, METH_NOARGS, "Close this handle (the dict stays)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dict_getset[] = {
    SHK_PY_HANDLE_GETSET,
    {"allow_pickle", dict_get_allow_pickle, NULL, "Values may be pickled.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef dict_members[] = SHK_PY_HANDLE_MEMBERS("dict");

static PyMappingMethods dict_as_mapping = {dict_mp_len, dict_mp_sub, dict_mp_ass};
static PySequenceMethods dict_as_sequence = {.sq_contains = dict_sq_contains};

/* Written out rather than SHK_PY_HANDLE_TYPE: the dealloc is its own (weak
 * references), and a second .tp_dealloc initialiser would trip
 * -Woverride-init. */
static PyTypeObject ShkPyDict_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmkit._shmkit.Dict",
    .tp_basicsize = sizeof(ShkPyDict),
    .tp_dealloc = dict_dealloc,
    .tp_as_mapping = &dict_as_mapping,
    .tp_as_sequence = &dict_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Dict(segment, name, create=True, capacity=0, allow_pickle=True): "
              "the C core of shmkit.SharedDict.",
    .tp_weaklistoffset = offsetof(ShkPyDict, weakrefs),
    .tp_methods = dict_methods,
    .tp_getset = dict_getset,
    .tp_members = dict_members,
    .tp_init = dict_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_funcs[] = {
    {"dict_entry_footprint", entry_footprint, METH_VARARGS,
     "dict_entry_footprint(key_len, value_len): heap bytes of one entry."},
    {"dict_estimate_size", estimate_size, METH_VARARGS,
     "dict_estimate_size(entries, key_len, value_len): bytes a dict of that many "
     "entries needs (shk_dict_estimate_size)."},
    {NULL, NULL, 0, NULL},
};

int shk_py_init_dict(PyObject *m)
{
    if (PyType_Ready(&ShkPyPin_Type) < 0)
        return -1;
    if (shk_py_add_type(m, &ShkPyDict_Type, "Dict") < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "DICT_SHARDS", SHK_DICT_SHARDS) < 0)
        return -1;
    return PyModule_AddFunctions(m, module_funcs);
}
