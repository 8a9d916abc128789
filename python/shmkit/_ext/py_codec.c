/*
 * py_codec.c -- Python objects <-> tagged bytes: one encoding for every
 * structure that stores Python objects.  Dict keys and values, and queue
 * and stack items, are a one-byte tag and bytes; a queue or stack item is a
 * value restricted to bytes ('b') and pickles ('p'), so one stored item
 * means the same in a dict, a queue, a stack and the Redis backend
 * (python/shmkit/_codec.py mirrors this file).
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
 *     'p' pickle.
 *
 * allow_pickle: shk_py_unpickle is the one place the extension calls
 * pickle.loads, and it refuses (TypeError, nothing run) unless the caller
 * passes allow_pickle; every decoder of a 'p' goes through it.  Anyone who
 * can write a segment can make unpickling run code (docs/dict.md).
 *
 * Decoders treat their input as hostile: lengths are checked, invalid
 * UTF-8 or digits are CorruptSegmentError, never a crash.
 */
#include "shmkit_py.h"

#include <string.h>

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* cached lazily */
static PyObject *np_module, *np_ndarray, *np_empty, *np_dtype, *np_frombuffer;

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

/* ================================================================ pickle */

static PyObject *pickle_dumps, *pickle_loads, *pickle_protocol;

int shk_py_pickle_init(void)
{
    if (pickle_dumps)
        return 0;
    PyObject *pk = PyImport_ImportModule("pickle");
    if (!pk)
        return -1;
    PyObject *dumps = PyObject_GetAttrString(pk, "dumps");
    PyObject *loads = PyObject_GetAttrString(pk, "loads");
    PyObject *protocol = PyObject_GetAttrString(pk, "HIGHEST_PROTOCOL");
    Py_DECREF(pk);
    if (!dumps || !loads || !protocol) {
        Py_XDECREF(dumps);
        Py_XDECREF(loads);
        Py_XDECREF(protocol);
        return -1;
    }
    pickle_dumps = dumps;
    pickle_loads = loads;
    pickle_protocol = protocol;
    return 0;
}

/* A new pickle of o (highest protocol), or NULL with an exception. */
static PyObject *pickle_dump(PyObject *o)
{
    if (shk_py_pickle_init() < 0)
        return NULL;
    PyObject *p = PyObject_CallFunctionObjArgs(pickle_dumps, o, pickle_protocol, NULL);
    if (p && !PyBytes_Check(p)) {
        Py_DECREF(p);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        return NULL;
    }
    return p;
}

PyObject *shk_py_unpickle(PyObject *raw, int allow_pickle, const char *refuse_msg)
{
    if (!allow_pickle) {
        PyErr_SetString(PyExc_TypeError, refuse_msg);
        return NULL;
    }
    if (shk_py_pickle_init() < 0)
        return NULL;
    return PyObject_CallOneArg(pickle_loads, raw);
}


/* ================================================================== keys */


void shk_py_key_free(ShkPyKey *k)
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

static int encode_key(PyObject *k, ShkPyKey *e, int depth);

static int encode_tuple(PyObject *k, ShkPyKey *e, int depth)
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
        ShkPyKey sub = {0};
        if (encode_key(PyTuple_GET_ITEM(k, i), &sub, depth + 1) < 0)
            goto fail;
        if ((uint64_t)sub.n > UINT32_MAX) {
            shk_py_key_free(&sub);
            PyErr_SetString(PyExc_ValueError, "tuple key element too long");
            goto fail;
        }
        unsigned char hdr[5] = {sub.t, (unsigned char)sub.n, (unsigned char)(sub.n >> 8),
                                (unsigned char)(sub.n >> 16), (unsigned char)(sub.n >> 24)};
        int rc = gb_put(&g, hdr, 5) < 0 || gb_put(&g, sub.p, (size_t)sub.n) < 0;
        shk_py_key_free(&sub);
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

static int encode_key(PyObject *k, ShkPyKey *e, int depth)
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
    if (PyLong_Check(k)) { /* int and bool (True == 1, as in dict) */
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
        PyObject *s = PyObject_Str(k); /* canonical decimal text */
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
    case 'b': return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
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
        if (r && end != z + n) { /* an embedded NUL ended the digits early */
            Py_CLEAR(r);
            PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: malformed big int");
        }
        PyMem_Free(z);
        return r;
    }
    case 't': return decode_tuple(p, n, depth);
    }
    PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: unknown key type");
    return NULL;
}

int shk_py_key_encode(PyObject *k, ShkPyKey *e) { return encode_key(k, e, 0); }

PyObject *shk_py_key_decode(uint8_t t, const char *p, uint64_t n)
{
    return decode_key(t, p, n, 0);
}

/* ================================================================ values */

void shk_py_value_free(ShkPyValue *v)
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
static int encode_array(PyObject *o, ShkPyValue *v)
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
        goto out; /* object / structured / subarray dtypes: pickle */
    Py_ssize_t dl;
    const char *ds = PyUnicode_AsUTF8AndSize(dstr, &dl);
    if (!ds) {
        rc = -1;
        goto out;
    }
    if (dl >= SHK_PY_ARR_DTYPE_LEN)
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
    if (ndim > SHK_PY_ARR_MAX_NDIM) {
        PyBuffer_Release(&v->view);
        v->has_view = 0;
        goto out;
    }
    size_t h = align16(8 + SHK_PY_ARR_DTYPE_LEN + 8 * (size_t)ndim);
    memset(v->hdr, 0, h);
    put_u32(v->hdr, (uint32_t)h);
    put_u32(v->hdr + 4, (uint32_t)ndim);
    memcpy(v->hdr + 8, ds, (size_t)dl);
    for (int i = 0; i < ndim; i++)
        put_u64(v->hdr + 8 + SHK_PY_ARR_DTYPE_LEN + 8 * i, (uint64_t)v->view.shape[i]);
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

int shk_py_value_encode(PyObject *o, int allow_pickle, ShkPyValue *v)
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
    if (!allow_pickle) {
        PyErr_Format(PyExc_TypeError,
                     "SharedDict(allow_pickle=False) cannot store a %.100s "
                     "(it would need pickle)",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    v->owner = pickle_dump(o);
    if (!v->owner)
        return -1;
    v->t = SHK_PY_TAG_PICKLE;
    v->p = PyBytes_AS_STRING(v->owner);
    v->n = PyBytes_GET_SIZE(v->owner);
    return 0;
}

/* Decode an array value from a stable (validated or pinned) copy.
 * If `view_owner` is given, return a read-only array over the shared memory
 * itself whose buffer comes from view_owner. */
PyObject *shk_py_array_decode(const char *p, uint64_t n, PyObject *view_owner)
{
    if (load_numpy() < 0)
        return NULL;
    if (n < 8 + SHK_PY_ARR_DTYPE_LEN)
        goto bad;
    uint32_t h = get_u32(p), ndim = get_u32(p + 4);
    if (ndim > SHK_PY_ARR_MAX_NDIM || h < 8 + SHK_PY_ARR_DTYPE_LEN + 8 * ndim || h > n ||
        h % 16)
        goto bad;
    if (memchr(p + 8, 0, SHK_PY_ARR_DTYPE_LEN) == NULL)
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
        uint64_t s = get_u64(p + 8 + SHK_PY_ARR_DTYPE_LEN + 8 * i);
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
 * caller validates, then finishes with shk_py_value_finish). */
PyObject *shk_py_value_decode(uint8_t t, const char *p, uint64_t n, PyObject **raw)
{
    *raw = NULL;
    switch (t) {
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
            PyErr_SetString(ShkPy_CorruptSegmentError,
                            "SharedDict: non-ASCII bytes in an ASCII value");
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
    case 'b': return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    case 'f': {
        if (n != 8)
            break;
        double x;
        memcpy(&x, p, 8);
        return PyFloat_FromDouble(x);
    }
    case 'n': Py_RETURN_NONE;
    case 'T': Py_RETURN_TRUE;
    case 'F': Py_RETURN_FALSE;
    case 'I':
    case 'p':
    case 'a': {
        PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        if (!b)
            return NULL;
        *raw = b;
        Py_INCREF(Py_Ellipsis);
        return Py_Ellipsis; /* placeholder: shk_py_value_finish decodes raw */
    }
    }
    PyErr_SetString(ShkPy_CorruptSegmentError, "SharedDict: malformed value");
    return NULL;
}

/* ========================================================= finishing */

PyObject *shk_py_value_finish(uint8_t t, PyObject *raw, int allow_pickle,
                              const char *refuse_msg)
{
    const char *p = PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw);
    if (t == SHK_PY_TAG_PICKLE)
        return shk_py_unpickle(raw, allow_pickle, refuse_msg);
    if (t == 'I')
        return decode_key('I', p, (uint64_t)n, 0);
    return shk_py_array_decode(p, (uint64_t)n, NULL);
}

/* ================================================ queue and stack items */

int shk_py_item_encode(PyObject *item, int allow_pickle, const char *what, PyObject **holder,
                       const char **data, Py_ssize_t *len, uint32_t *tag)
{
    *holder = NULL;
    if (PyBytes_CheckExact(item)) {
        *data = PyBytes_AS_STRING(item);
        *len = PyBytes_GET_SIZE(item);
        *tag = SHK_PY_TAG_BYTES;
        return 0;
    }
    if (!allow_pickle) {
        PyErr_Format(PyExc_TypeError,
                     "this %s takes bytes only (allow_pickle=False), not %.100s", what,
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    PyObject *p = pickle_dump(item);
    if (!p)
        return -1;
    *holder = p;
    *data = PyBytes_AS_STRING(p);
    *len = PyBytes_GET_SIZE(p);
    *tag = SHK_PY_TAG_PICKLE;
    return 0;
}

PyObject *shk_py_item_new(uint64_t len, uint32_t tag, int allow_pickle, const char *noun,
                          const char *refuse_msg)
{
    if (tag != SHK_PY_TAG_BYTES && tag != SHK_PY_TAG_PICKLE) {
        PyErr_Format(ShkPy_CorruptSegmentError, "%s item with unknown tag %u", noun, tag);
        return NULL;
    }
    if (tag == SHK_PY_TAG_PICKLE && !allow_pickle) {
        PyErr_SetString(PyExc_TypeError, refuse_msg);
        return NULL;
    }
    if (len > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return NULL;
    }
    return PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
}

PyObject *shk_py_item_decode(PyObject *raw, uint32_t tag, int allow_pickle,
                             const char *refuse_msg)
{
    if (tag == SHK_PY_TAG_BYTES)
        return raw;
    PyObject *obj = shk_py_unpickle(raw, allow_pickle, refuse_msg);
    Py_DECREF(raw);
    return obj;
}
