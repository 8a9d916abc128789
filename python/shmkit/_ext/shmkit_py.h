/*
 * shmkit_py.h -- what every binding file of the extension module
 * shmkit._shmkit shares: exceptions, status-to-exception mapping, the
 * Segment type, and zero-copy memoryviews that keep a mapping alive.
 *
 * One binding file per concept: module.c (module, exceptions), py_segment.c,
 * py_alloc.c, py_dict.c, py_queue.c, py_stack.c, py_bitset.c, py_array.c.
 * Each py_<thing>.c exports `int shk_py_init_<thing>(PyObject *module)`.
 */
#ifndef SHMKIT_PY_H
#define SHMKIT_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "shmkit.h"

/* Exceptions (module.c).  OutOfMemoryError is also a MemoryError;
 * SegmentFullError is another name for it. */
extern PyObject *ShkPy_Error;
extern PyObject *ShkPy_CorruptSegmentError;
extern PyObject *ShkPy_OutOfMemoryError;

/* Set the exception that matches an SHK_* status and return NULL.
 * `context` (may be NULL) prefixes the message, e.g. "allocate(100)". */
PyObject *shk_py_raise(int status, const char *context);

/* ---- Segment (py_segment.c) ---- */
typedef struct {
    PyObject_HEAD
    shk_segment *seg;        /* NULL once closed */
    int created;             /* this handle created the segment */
    int unlink_on_exit;      /* __exit__ also unlinks (creator only) */
    PyObject *name;          /* str, without leading '/' */
    PyObject *weakrefs;
} ShkPySegment;

extern PyTypeObject ShkPySegment_Type;

/* The shk_segment of a Segment object; NULL with TypeError / ValueError
 * (closed) set otherwise.  Borrowed: retain it if you keep it. */
shk_segment *shk_py_segment_arg(PyObject *seg_obj);

/* Open a segment for a standalone object.  create: Py_None = open or
 * create, Py_True = must create (FileExistsError), Py_False = must exist
 * (FileNotFoundError).  Returns a new handle (shk_segment_close it), or NULL
 * with an exception set.  *created says whether this call created it. */
shk_segment *shk_py_open_segment(PyObject *name, PyObject *create,
                                 unsigned long long size,
                                 unsigned long long max_size, int mode,
                                 int *created);

/* A memoryview over [ptr, ptr+len) of `seg` that retains the segment until
 * the buffer is released, so unmapping can never leave it dangling. */
PyObject *shk_py_memoryview(shk_segment *seg, void *ptr, Py_ssize_t len,
                            int readonly);

/* Set the exception for a failed open of object `name`, a `what` (e.g.
 * "Queue"), in a segment, and return -1: missing -> FileNotFoundError (with
 * `hint`, e.g. "give size= to create it", may be NULL), another type ->
 * TypeError, a bad name -> ValueError, anything else via shk_py_raise. */
int shk_py_object_error(int rc, PyObject *name, const char *what, const char *hint);

/* Store `name` and the name of `segobj` into a handle's object_name and
 * segment_name fields (new references).  0, or -1 with an exception. */
int shk_py_set_names(PyObject *segobj, PyObject *name, PyObject **object_name,
                     PyObject **segment_name);

/* Parse an offset/size argument: a non-negative int fitting uint64.
 * Returns 0 on success, -1 with TypeError/ValueError set. */
int shk_py_u64(PyObject *o, const char *what, uint64_t *out);

/* check() of a free list as a dict of its stats (py_alloc.c). */
PyObject *shk_py_freelist_check(shk_freelist *fl, const char *context);

/* Module-level init of each binding file. */
int shk_py_init_segment(PyObject *m);
int shk_py_init_alloc(PyObject *m);
int shk_py_init_dict(PyObject *m);
int shk_py_init_queue(PyObject *m);
int shk_py_init_stack(PyObject *m);
int shk_py_init_bitset(PyObject *m);
int shk_py_init_array(PyObject *m);

/* Helper: add a ready type to the module under its tp_name tail. */
int shk_py_add_type(PyObject *m, PyTypeObject *t, const char *name);

#endif
