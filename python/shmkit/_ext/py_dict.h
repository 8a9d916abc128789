/*
 * py_dict.h -- private to the SharedDict binding files: the handle
 * (ShkPyDict), the helpers every operation on it shares (py_dict_core.c),
 * and the methods that py_dict_map.c and py_dict_scan.c give the type in
 * py_dict.c.  The layers (each calls only files below it):
 *   py_dict.c                       the type, its method table, lifecycle
 *   py_dict_map.c, py_dict_scan.c   the methods (they never call each other)
 *   py_dict_core.c                  closed check, lookup, value decoding,
 *                                   building and deleting entries
 */
#ifndef SHMKIT_PY_DICT_H
#define SHMKIT_PY_DICT_H

#include "shmkit_py.h"

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

typedef struct {
    SHK_PY_HANDLE_HEAD /* h: the shk_dict */
        int allow_pickle;
    uint64_t pop_hint; /* where popitem looks first */
    PyObject *weakrefs;
} ShkPyDict;

/* ---- py_dict_core.c ---- */

/* The structure-handle operations of SharedDict (py_handle.c). */
extern const ShkPyHandleOps *const shk_py_dict_ops;

/* Raise "operation on a closed SharedDict" (the base's message) and
 * return -1; only called with h == NULL. */
int shk_py_dict_closed_error(ShkPyDict *self);

/* No call of this type drops the GIL, so `waiting` stays 0 and close()
 * releases h at once: h == NULL alone means closed (or never opened), one
 * load on the hot path. */
#define CHECK_OPEN(self, ret)                                                                  \
    do {                                                                                       \
        if (SHK_UNLIKELY((self)->h == NULL)) {                                                 \
            shk_py_dict_closed_error(self);                                                    \
            return ret;                                                                        \
        }                                                                                      \
    } while (0)

/* Second stage for values copied to `raw` (validated): a pickle is
 * refused unless this handle allows pickle (shk_py_unpickle, the one
 * place the extension unpickles), whoever wrote the value. */
PyObject *shk_py_dict_finish_value(const ShkPyDict *self, uint8_t vtype, PyObject *raw);

/* Find key and decode its value: the full loop of find, decode, validate,
 * retry.  Returns a new reference; NULL with no error and *found = 0 if
 * absent; NULL with an error otherwise.  entry/ver (may be NULL) identify
 * the entry the value came from, for compare-and-set style commits. */
PyObject *shk_py_dict_fetch(ShkPyDict *self, const ShkPyKey *k, int *found, uint64_t *entry,
                            uint64_t *ver);

static inline PyObject *lookup(ShkPyDict *self, const ShkPyKey *k, int *found)
{
    return shk_py_dict_fetch(self, k, found, NULL, NULL);
}

static inline PyObject *lookup_ref(ShkPyDict *self, const ShkPyKey *k, int *found,
                                   uint64_t *entry, uint64_t *ver)
{
    return shk_py_dict_fetch(self, k, found, entry, ver);
}

/* Prepare + fill an entry for (key, value).  0 ok (txn ready), -1 error. */
int shk_py_dict_build_entry(ShkPyDict *self, const ShkPyKey *k, PyObject *value,
                            shk_dict_txn *txn);

/* Delete key only if it still is (entry, ver).  1 deleted, 0 lost the race
 * (changed or already gone), -1 error. */
int shk_py_dict_delete_expect(ShkPyDict *self, const ShkPyKey *k, uint64_t entry, uint64_t ver,
                              const char *context);

/* The start of every operation on one key: the closed check, then the key
 * encoded into *k (shk_py_key_free it).  0, or -1 with ValueError (closed)
 * or the key's TypeError/ValueError. */
static inline int open_key(ShkPyDict *self, PyObject *key, ShkPyKey *k)
{
    CHECK_OPEN(self, -1);
    return shk_py_key_encode(key, k);
}

/* ---- py_dict_map.c: one key at a time ---- */

/* mp_length, mp_subscript, mp_ass_subscript; sq_contains */
extern PyMappingMethods shk_py_dict_as_mapping;
extern PySequenceMethods shk_py_dict_as_sequence;
/* get, and the atomic read-modify-write methods (METH_FASTCALL) */
PyObject *shk_py_dict_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *shk_py_dict_incr(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *shk_py_dict_cas(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *shk_py_dict_setdefault(PyObject *op, PyObject *const *args, Py_ssize_t nargs);
PyObject *shk_py_dict_pop(PyObject *op, PyObject *const *args, Py_ssize_t nargs);

/* ---- py_dict_scan.c: every entry, and pinned views ---- */

PyObject *shk_py_dict_keys_list(PyObject *op, PyObject *noargs);
PyObject *shk_py_dict_values_list(PyObject *op, PyObject *noargs);
PyObject *shk_py_dict_items_list(PyObject *op, PyObject *noargs);
PyObject *shk_py_dict_snapshot(PyObject *op, PyObject *want_values);
PyObject *shk_py_dict_popitem(PyObject *op, PyObject *noargs);
PyObject *shk_py_dict_clear(PyObject *op, PyObject *noargs);
PyObject *shk_py_dict_get_view(PyObject *op, PyObject *key);
/* PyType_Ready of the _DictPin type get_view uses: 0, or -1 with an
 * exception. */
int shk_py_dict_pin_ready(void);

#endif
