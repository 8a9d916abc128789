/*
 * shmkit_py.h -- what every binding file of the extension module
 * shmkit._shmkit shares: exceptions, status-to-exception mapping, the
 * Segment type, and zero-copy memoryviews that keep a mapping alive.
 *
 * Files in layers; each calls only files below it (checked by
 * tests/python/test_ext_layers.py on the built objects):
 *   module.c      module init: shk_py_init_common, then each file's
 *                 `int shk_py_init_<thing>(PyObject *module)`
 *   py_dict.c, py_queue.c, py_stack.c, py_bitset.c, py_array.c,
 *   py_counter.c, py_alloc.c   one type (or family) each
 *   py_dict_map.c, py_dict_scan.c   SharedDict methods on one key, and
 *                 over every entry and pinned views (for py_dict.c)
 *   py_dict_core.c  what those two share (py_dict.h, private to the
 *                 py_dict*.c files, declares the dict's cross-file names)
 *   py_handle.c   what the structure handles share (the handle head,
 *                 close/dealloc, sequences, buffer exports)
 *   py_codec.c    Python objects <-> tagged bytes: dict keys and values,
 *                 queue and stack items (one set of tags)
 *   py_segment.c  the Segment type, opening segments
 *   py_common.c   exceptions, status -> exception, argument parsing,
 *                 object-open errors, memoryviews that keep a mapping alive
 */
#ifndef SHMKIT_PY_H
#define SHMKIT_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

#include "shmkit.h"

/* ---- py_common.c ----
 * Exceptions.  OutOfMemoryError is also a MemoryError;
 * SegmentFullError is another name for it.  ForeignSegmentError (a
 * refused trust check, SHK_EFOREIGN) is also a PermissionError. */
extern PyObject *ShkPy_Error;
extern PyObject *ShkPy_CorruptSegmentError;
extern PyObject *ShkPy_OutOfMemoryError;
extern PyObject *ShkPy_ForeignSegmentError;

/* Set the exception that matches an SHK_* status and return NULL.
 * `context` (may be NULL) prefixes the message, e.g. "allocate(100)". */
PyObject *shk_py_raise(int status, const char *context);

/* Create the exceptions and add them to the module (module init calls it
 * first).  0, or -1 with an exception. */
int shk_py_init_common(PyObject *m);

/* Helper: add a ready type to the module under its tp_name tail. */
int shk_py_add_type(PyObject *m, PyTypeObject *t, const char *name);

/* ---- Segment (py_segment.c) ---- */
typedef struct {
    PyObject_HEAD shk_segment *seg; /* NULL once closed */
    int created;                    /* this handle created the segment */
    int unlink_on_exit;             /* __exit__ also unlinks (creator only) */
    int trust;                      /* enum shk_trust it was opened with */
    PyObject *name;                 /* str, without leading '/' */
    PyObject *weakrefs;
} ShkPySegment;

extern PyTypeObject ShkPySegment_Type;

/* The shk_segment of a Segment object; NULL with TypeError / ValueError
 * (closed) set otherwise.  Borrowed: retain it if you keep it. */
shk_segment *shk_py_segment_arg(PyObject *seg_obj);

/* Open a segment for a standalone object.  create: Py_None = open or
 * create, Py_True = must create (FileExistsError), Py_False = must exist
 * (FileNotFoundError).  trust: an enum shk_trust; a segment it refuses is
 * ForeignSegmentError naming the owner and mode.  Returns a new handle
 * (shk_segment_close it), or NULL with an exception set.  *created says
 * whether this call created it. */
shk_segment *shk_py_open_segment(PyObject *name, PyObject *create, unsigned long long size,
                                 unsigned long long max_size, int mode, int trust,
                                 int *created);

/* ---- py_common.c, continued ---- */

/* The name of an enum shk_trust, as trust= takes it. */
const char *shk_py_trust_name(int trust);

/* A memoryview over [ptr, ptr+len) of `seg` that retains the segment until
 * the buffer is released, so unmapping can never leave it dangling. */
PyObject *shk_py_memoryview(shk_segment *seg, void *ptr, Py_ssize_t len, int readonly);

/* Set the exception for a failed open of object `name`, a `what` (e.g.
 * "Queue"), in a segment, and return -1: missing -> FileNotFoundError (with
 * `hint`, e.g. "give size= to create it", may be NULL), another type ->
 * TypeError, a bad name -> ValueError, anything else via shk_py_raise. */
int shk_py_object_error(int rc, PyObject *name, const char *what, const char *hint);

/* Store `name` and the name of `segobj` into a handle's object_name and
 * segment_name fields (new references).  0, or -1 with an exception. */
int shk_py_set_names(PyObject *segobj, PyObject *name, PyObject **object_name,
                     PyObject **segment_name);

/* Parse an offset/size argument: an int (not a bool) from 0 to 2**63-1,
 * or to `max` for shk_py_u64_max.  Returns 0 on success, -1 with TypeError
 * (not an int) or ValueError (out of range, the range in the message). */
int shk_py_u64(PyObject *o, const char *what, uint64_t *out);
int shk_py_u64_max(PyObject *o, const char *what, uint64_t max, uint64_t *out);

/* A validated object name: the UTF-8 of `name` (borrowed from it), or NULL
 * with ValueError unless it is 1..SHK_OBJECT_NAME_MAX bytes without NUL. */
const char *shk_py_object_name(PyObject *name);

/* check() of a free list as a dict of its stats. */
PyObject *shk_py_freelist_check(shk_freelist *fl, const char *context);

/* The figures check() and stats() return: a dict of name -> int. */
typedef struct {
    const char *name;
    unsigned long long value;
} shk_py_figure;
PyObject *shk_py_figures(const shk_py_figure *f, size_t n);
#define SHK_PY_FIGURES(arr) shk_py_figures((arr), sizeof(arr) / sizeof((arr)[0]))

/* ---- Structure handles (py_handle.c) ----
 * Every handle on a structure in a segment (Array, Bitset, Queue, Stack,
 * SharedDict, the allocators) starts with SHK_PY_HANDLE_HEAD, so one set of functions serves
 * close(), dealloc, the `closed` attribute, the segment_name/object_name/
 * created members and the "operation on a closed X" check.  A type adopts
 * it by:
 *   - putting SHK_PY_HANDLE_HEAD first in its object struct and keeping
 *     its libshmkit handle in `h` (void *: each file passes it to its own
 *     typed functions);
 *   - a static ShkPyHandleOps {"Array", release} whose release() closes h
 *     (SHK_PY_HANDLE_OPS(array, "Array", shk_array_close) writes both);
 *   - starting tp_init with shk_py_handle_begin() and storing ops, h and
 *     the names (shk_py_handle_opened()) once the open succeeded;
 *   - SHK_PY_HANDLE_TYPE(...) in its PyTypeObject, SHK_PY_HANDLE_GETSET in
 *     its getset table, SHK_PY_HANDLE_MEMBERS(...) as its member table, and
 *     shk_py_handle_close as its close() method.
 */
typedef struct ShkPyHandle ShkPyHandle;

typedef struct {
    const char *what;                   /* type name for messages: "Array" */
    void (*release)(ShkPyHandle *self); /* close self->h (never NULL here) */
} ShkPyHandleOps;

/* The ops `p##_ops` of a handle type whose libshmkit handle is closed by
 * close_fn (with a release function `p##_release` calling it). */
#define SHK_PY_HANDLE_OPS(p, what, close_fn)                                                   \
    static void p##_release(ShkPyHandle *self) { close_fn(self->h); }                          \
    static const ShkPyHandleOps p##_ops = {what, p##_release}

#define SHK_PY_HANDLE_HEAD                                                                     \
    PyObject_HEAD void *h;     /* libshmkit handle; NULL until opened and  */                  \
                               /* once released                            */                  \
    const ShkPyHandleOps *ops; /* set with h, kept after its release       */                  \
    int closed;                /* close() called (h lives on while waiting) */                 \
    int waiting;               /* threads of this handle inside a blocking */                  \
                               /* call that dropped the GIL: they still use */                 \
                               /* h, so close() defers the release to them  */                 \
    int created;               /* this handle created the object           */                  \
    int trust;                 /* of the Segment it was opened from, so    */                  \
                               /* that pickling re-attaches with it        */                  \
    PyObject *segment_name;                                                                    \
    PyObject *object_name;

struct ShkPyHandle {
    SHK_PY_HANDLE_HEAD
};

/* The start of every tp_init: refuse __init__ on a handle that is open or
 * was closed (RuntimeError "<what> already initialised": a closed handle
 * stays closed) and return the shk_segment of segobj, or NULL with an
 * exception set. */
shk_segment *shk_py_handle_begin(PyObject *self, const ShkPyHandleOps *ops, PyObject *segobj);

/* Record a successful open: ops, h, created, the names and the trust of
 * segobj.  0, or -1 with an exception (the handle stays open and is
 * released by dealloc). */
int shk_py_handle_opened(PyObject *self, const ShkPyHandleOps *ops, void *h, int created,
                         PyObject *segobj, PyObject *name);

/* 1 if the handle is open, else 0 with ValueError "operation on a closed
 * <ops->what>".  ops is passed, not read from self, because a handle that
 * was never initialised has none. */
int shk_py_handle_alive(PyObject *self, const ShkPyHandleOps *ops);

/* Release h now unless a thread of this handle is still waiting in it (it
 * will call this again on its way out). */
void shk_py_handle_release(ShkPyHandle *self);

/* close(): mark closed and release (deferred while waiting).  Buffers
 * exported from the handle hold their own segment reference, so they stay
 * valid. */
PyObject *shk_py_handle_close(PyObject *self, PyObject *unused);

/* tp_dealloc: release and drop the names. */
void shk_py_handle_dealloc(PyObject *self);

/* The `closed` and `trust` getters. */
PyObject *shk_py_handle_get_closed(PyObject *self, void *unused);
PyObject *shk_py_handle_get_trust(PyObject *self, void *unused);

/* Two entries of a getset table. */
#define SHK_PY_HANDLE_GETSET                                                                   \
    {"closed", shk_py_handle_get_closed, NULL, "True once closed.", NULL},                     \
    {                                                                                          \
        "trust", shk_py_handle_get_trust, NULL,                                                \
            "Whose segment this handle accepted: \"owner\", \"group\" or \"any\" "             \
            "(see Segment).",                                                                  \
            NULL                                                                               \
    }

/* The member table of a handle type; `noun` names the object in the docs
 * ("array"). */
#define SHK_PY_HANDLE_MEMBERS(noun)                                                            \
    {                                                                                          \
        {"segment_name", T_OBJECT, offsetof(ShkPyHandle, segment_name), READONLY,              \
         "Name of the segment holding the " noun "."},                                         \
        {"object_name", T_OBJECT, offsetof(ShkPyHandle, object_name), READONLY,                \
         "Name of the " noun " inside its segment."},                                          \
        {"created", T_BOOL, offsetof(ShkPyHandle, created), READONLY,                          \
         "True if this handle created the " noun "."},                                         \
        {NULL, 0, 0, 0, NULL},                                                                 \
    }

/* The PyTypeObject fields every handle type sets alike. */
#define SHK_PY_HANDLE_TYPE(pyname, ctype)                                                      \
    .tp_name = "shmkit._shmkit." pyname, .tp_basicsize = sizeof(ctype),                        \
    .tp_dealloc = shk_py_handle_dealloc, .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, \
    .tp_new = PyType_GenericNew

/* ---- Fixed-length sequence handles (Array, Bitset; py_handle.c) ---- */
typedef struct {
    const ShkPyHandleOps *handle;                 /* what + closed check */
    const char *index_msg;                        /* TypeError text for a bad index */
    PyObject *(*get)(PyObject *self, uint64_t i); /* element i < len */
} ShkPySeqOps;

/* A Python index into a sequence of `len` items (negative counts from the
 * end).  0, or -1 with TypeError "<index_msg>, not <type>" for a non-index
 * or IndexError "<what> index out of range". */
int shk_py_seq_index(PyObject *o, uint64_t len, const ShkPySeqOps *so, uint64_t *out);

/* sq_item (i >= 0: iteration) and mp_subscript (an index or a slice, which
 * is a list of the elements) of a sequence of `len` elements. */
PyObject *shk_py_seq_item(PyObject *self, Py_ssize_t i, uint64_t len, const ShkPySeqOps *so);
PyObject *shk_py_seq_subscript(PyObject *self, PyObject *key, uint64_t len,
                               const ShkPySeqOps *so);

/* The type object of a fixed-length sequence handle (Array, Bitset) from
 * the functions and tables of prefix `p`: p##_len, p##_item,
 * p##_subscript, p##_ass_subscript, p##_getbuffer, p##_methods,
 * p##_members, p##_getset and p##_init. */
#define SHK_PY_SEQUENCE_TYPE(var, p, pyname, ctype, doc)                                       \
    static PySequenceMethods p##_as_sequence = {                                               \
        .sq_length = p##_len,                                                                  \
        .sq_item = p##_item,                                                                   \
    };                                                                                         \
    static PyMappingMethods p##_as_mapping = {                                                 \
        .mp_length = p##_len,                                                                  \
        .mp_subscript = p##_subscript,                                                         \
        .mp_ass_subscript = p##_ass_subscript,                                                 \
    };                                                                                         \
    static PyBufferProcs p##_as_buffer = {p##_getbuffer, shk_py_release_export};               \
    static PyTypeObject var = {                                                                \
        PyVarObject_HEAD_INIT(NULL, 0) SHK_PY_HANDLE_TYPE(pyname, ctype),                      \
        .tp_as_sequence = &p##_as_sequence,                                                    \
        .tp_as_mapping = &p##_as_mapping,                                                      \
        .tp_as_buffer = &p##_as_buffer,                                                        \
        .tp_doc = doc,                                                                         \
        .tp_methods = p##_methods,                                                             \
        .tp_members = p##_members,                                                             \
        .tp_getset = p##_getset,                                                               \
        .tp_init = p##_init,                                                                   \
    }

/* Export [buf, buf + shape[0] * itemsize) of `seg` as a writable 1-D buffer
 * of `self`, retaining the segment until shk_py_release_export (use both
 * as the PyBufferProcs of the type).  shape/strides must live in self. */
int shk_py_export_1d(PyObject *self, Py_buffer *view, int flags, shk_segment *seg, void *buf,
                     Py_ssize_t itemsize, const char *format, Py_ssize_t *shape,
                     Py_ssize_t *strides);
void shk_py_release_export(PyObject *self, Py_buffer *view);

/* ---- Python objects <-> tagged bytes (py_codec.c) ----
 * One encoding (the tags are listed in py_codec.c): dict keys and values,
 * and queue and stack items, which are values of two tags only: `bytes`
 * stored as they are (SHK_PY_TAG_BYTES), anything else pickled with the
 * highest protocol (SHK_PY_TAG_PICKLE) when the handle allows pickle. */
#define SHK_PY_TAG_BYTES ((uint32_t)'b')
#define SHK_PY_TAG_PICKLE ((uint32_t)'p')

/* Import pickle once.  0, or -1 with an exception. */
int shk_py_pickle_init(void);

/* The one call of pickle.loads in the extension: the object pickled in
 * the bytes `raw` (borrowed), or NULL with TypeError `refuse_msg` and
 * nothing run when !allow_pickle. */
PyObject *shk_py_unpickle(PyObject *raw, int allow_pickle, const char *refuse_msg);

/* An encoded key: tag t, bytes [p, p+n).  shk_py_key_free releases it. */
typedef struct {
    uint8_t t;
    const char *p;
    Py_ssize_t n;
    char buf[8];
    char *heap; /* PyMem_Malloc'd (tuples, big ints) */
} ShkPyKey;

/* Encode a key (str, bytes, int, tuples of those).  0, or -1 with
 * TypeError naming the type. */
int shk_py_key_encode(PyObject *k, ShkPyKey *e);
void shk_py_key_free(ShkPyKey *e);
/* The key for tag t and bytes [p, p+n); CorruptSegmentError if malformed. */
PyObject *shk_py_key_decode(uint8_t t, const char *p, uint64_t n);

#define SHK_PY_ARR_DTYPE_LEN 32
#define SHK_PY_ARR_MAX_NDIM 64

/* An encoded value: tag t, bytes [p, p+n) then [p2, p2+n2) (an array's
 * data).  shk_py_value_free releases it. */
typedef struct {
    uint8_t t;
    const char *p; /* first part */
    Py_ssize_t n;
    const char *p2; /* second part (array data) */
    Py_ssize_t n2;
    char small[8];
    PyObject *owner; /* keeps p alive (utf-8 cache owner, pickle bytes) */
    Py_buffer view;
    int has_view;
    char hdr[16 + SHK_PY_ARR_DTYPE_LEN + 8 * SHK_PY_ARR_MAX_NDIM + 16];
} ShkPyValue;

/* Encode a value; anything without a tag of its own is pickled, or a
 * TypeError when !allow_pickle.  0, or -1 with an exception. */
int shk_py_value_encode(PyObject *o, int allow_pickle, ShkPyValue *v);
void shk_py_value_free(ShkPyValue *v);

/* Decode a value read from shared memory that is still to be validated.
 * str, bytes and numbers are decoded at once (one read); big ints,
 * pickles and arrays are copied to a new bytes object in *raw and
 * Py_Ellipsis returned: validate the read, then shk_py_value_finish(raw).
 * NULL with CorruptSegmentError for a malformed value. */
PyObject *shk_py_value_decode(uint8_t t, const char *p, uint64_t n, PyObject **raw);
/* The value of a stable copy `raw` (borrowed) of tag t: a pickle goes
 * through shk_py_unpickle (refused unless allow_pickle). */
PyObject *shk_py_value_finish(uint8_t t, PyObject *raw, int allow_pickle,
                              const char *refuse_msg);
/* An array value from stable bytes [p, p+n); with view_owner, a read-only
 * array over that memory whose buffer comes from view_owner. */
PyObject *shk_py_array_decode(const char *p, uint64_t n, PyObject *view_owner);

/* The bytes to store for queue or stack `item`: a borrowed bytes object,
 * or a new pickle in *holder (to DECREF).  -1 with TypeError "this <what>
 * takes bytes only ..." if it is not bytes and pickle is not allowed. */
int shk_py_item_encode(PyObject *item, int allow_pickle, const char *what, PyObject **holder,
                       const char **data, Py_ssize_t *len, uint32_t *tag);

/* A new, unfilled bytes object for a stored item of `len` bytes and `tag`
 * (the buffer provider of a get/pop).  NULL with CorruptSegmentError for an
 * unknown tag ("<noun> item with unknown tag"), TypeError `refuse_msg` for a
 * pickle when !allow_pickle, or MemoryError. */
PyObject *shk_py_item_new(uint64_t len, uint32_t tag, int allow_pickle, const char *noun,
                          const char *refuse_msg);

/* The object for a raw item: bytes as is, a pickle loaded through
 * shk_py_unpickle.  Steals raw. */
PyObject *shk_py_item_decode(PyObject *raw, uint32_t tag, int allow_pickle,
                             const char *refuse_msg);

/* Module-level init of each binding file. */
int shk_py_init_segment(PyObject *m);
int shk_py_init_alloc(PyObject *m);
int shk_py_init_dict(PyObject *m);
int shk_py_init_queue(PyObject *m);
int shk_py_init_stack(PyObject *m);
int shk_py_init_bitset(PyObject *m);
int shk_py_init_array(PyObject *m);
int shk_py_init_counter(PyObject *m);

#endif
