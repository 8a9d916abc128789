/*
 * py_segment.c -- shmkit._shmkit.Segment and the module functions on
 * segment names.  Calls only py_common.c.
 *
 * Lifetime: a Segment object holds one reference on its shk_segment; every
 * structure handle and every exported view holds another.  close() drops
 * the Segment's own reference only, so a view or handle that outlives it
 * keeps the memory mapped and can never dangle.  Nothing here unlinks a
 * segment except unlink() (or __exit__ of a creator asked to).
 */
#include "shmkit_py.h"

#include "structmember.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#ifdef SHK_TEST_HOOKS
/* the crash-point switch of libshmkit, for the torture tests (built with
 * SHMKIT_TEST_HOOKS=1 only: src/crash.c) */
void shk_crash_arm(const char *spec);
#endif

/* ------------------------------------------------------------- names */

static int name_arg(PyObject *name, const char **out)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "segment name must be a str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (!s)
        return -1;
    if ((Py_ssize_t)strlen(s) != n || !shk_segment_name_valid(s)) {
        PyErr_Format(PyExc_ValueError,
                     "invalid segment name %R: use 1 to %d bytes, no '/' "
                     "(except one leading '/'), no NUL",
                     name, SHK_SEGMENT_NAME_MAX);
        return -1;
    }
    *out = s;
    return 0;
}

/* ------------------------------------------------------------- trust */


static int trust_arg(PyObject *o, int *out)
{
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError,
                     "trust must be \"owner\", \"group\" or \"any\", not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    for (int t = SHK_TRUST_OWNER; t <= SHK_TRUST_ANY; t++)
        if (PyUnicode_CompareWithASCIIString(o, shk_py_trust_name(t)) == 0) {
            *out = t;
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "trust must be \"owner\", \"group\" or \"any\", not %R", o);
    return -1;
}

/* ForeignSegmentError for segment `name` whose file fstat saw as `o`:
 * who owns it, its mode, what is wrong with it and how to open it anyway. */
static void raise_foreign(PyObject *name, const shk_segment_owner *o, int trust)
{
    struct passwd *pw = getpwuid((uid_t)o->uid);
    struct group *gr = getgrgid((gid_t)o->gid);
    char user[64], grp[64], mode[16];
    snprintf(user, sizeof user, "%s", pw ? pw->pw_name : "?");
    snprintf(grp, sizeof grp, "%s", gr ? gr->gr_name : "?");
    snprintf(mode, sizeof mode, "0o%03o", (unsigned)(o->mode & 07777));
    unsigned euid = (unsigned)geteuid();
    const char *why = o->mode & 0002 ? "anyone may write it"
                      : trust == SHK_TRUST_GROUP
                          ? "its group is not one of this process's groups"
                      : o->uid != euid ? "it belongs to another user"
                                       : "its group may write it";
    PyErr_Format(ShkPy_ForeignSegmentError,
                 "refusing shared memory segment %R: owned by uid %u (%s), group %u "
                 "(%s), mode %s: %s (this process: uid %u, trust=\"%s\"). Whoever can "
                 "write a segment controls what its readers see, and runs code in any "
                 "reader that unpickles. If you trust its writers, open it with "
                 "trust=\"group\" (accepted when its group is one of yours and it is "
                 "not world-writable) or trust=\"any\"; if not, remove it (shmkit rm "
                 "%U) and create it yourself.",
                 name, (unsigned)o->uid, user, (unsigned)o->gid, grp, mode, why, euid,
                 shk_py_trust_name(trust), name);
}

shk_segment *shk_py_open_segment(PyObject *name, PyObject *create, unsigned long long size,
                                 unsigned long long max_size, int mode, int trust, int *created)
{
    const char *s;
    if (name_arg(name, &s) < 0)
        return NULL;
    if (create != Py_None && !PyBool_Check(create)) {
        PyErr_SetString(PyExc_TypeError, "create must be None, True or False");
        return NULL;
    }
    if (mode < 0 || mode > 0777) {
        PyErr_SetString(PyExc_ValueError, "mode must be permission bits (0 to 0o777)");
        return NULL;
    }
    if (max_size > SHK_MAX_MAX_SIZE || (max_size && size > max_size)) {
        PyErr_Format(PyExc_ValueError, "size must be <= max_size <= %llu bytes (64 GiB)",
                     (unsigned long long)SHK_MAX_MAX_SIZE);
        return NULL;
    }
    shk_segment *seg = NULL;
    shk_segment_owner owner = {0, 0, 0};
    int rc, made = 0;
    if (create == Py_True) {
        rc = shk_segment_create(s, size, max_size, (mode_t)mode, &seg);
        made = 1;
    } else if (create == Py_False) {
        rc = shk_segment_attach_ex(s, trust, &owner, &seg);
    } else {
        rc = shk_segment_open_ex(s, size, max_size, (mode_t)mode, trust, &owner, &seg, &made);
    }
    if (rc != SHK_OK) {
        if (rc == SHK_EEXIST)
            PyErr_Format(PyExc_FileExistsError,
                         "shared memory segment %R already exists "
                         "(attach with create=False, or unlink it first)",
                         name);
        else if (rc == SHK_ENOENT)
            PyErr_Format(PyExc_FileNotFoundError, "no shared memory segment named %R", name);
        else if (rc == SHK_ECORRUPT)
            PyErr_Format(ShkPy_CorruptSegmentError,
                         "%R is not a valid shmkit segment (foreign, corrupt, "
                         "truncated or of another layout version)",
                         name);
        else if (rc == SHK_EFOREIGN)
            raise_foreign(name, &owner, trust);
        else
            shk_py_raise(rc, s);
        return NULL;
    }
    if (created)
        *created = made;
    return seg;
}

/* ------------------------------------------------- objects in segments */

/* ------------------------------------------------------------ Segment */

shk_segment *shk_py_segment_arg(PyObject *o)
{
    if (!PyObject_TypeCheck(o, &ShkPySegment_Type)) {
        PyErr_Format(PyExc_TypeError, "expected a shmkit.Segment, not %.100s",
                     Py_TYPE(o)->tp_name);
        return NULL;
    }
    ShkPySegment *s = (ShkPySegment *)o;
    if (!s->seg) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed Segment");
        return NULL;
    }
    return s->seg;
}

static int seg_init(PyObject *self, PyObject *args, PyObject *kw)
{
    ShkPySegment *s = (ShkPySegment *)self;
    static char *kwlist[] = {"name",     "size",           "create", "mode",
                             "max_size", "unlink_on_exit", "trust",  NULL};
    PyObject *name, *create = Py_None, *size_arg = NULL, *max_arg = NULL, *trust_obj = NULL;
    uint64_t size = 0, max_size = 0;
    int mode = 0600, unlink_on_exit = 0, trust = SHK_TRUST_OWNER;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|O$OiOpO:Segment", kwlist, &name, &size_arg,
                                     &create, &mode, &max_arg, &unlink_on_exit, &trust_obj))
        return -1;
    if (trust_obj && trust_arg(trust_obj, &trust) < 0)
        return -1;
    if ((size_arg && shk_py_u64_max(size_arg, "size", SHK_MAX_MAX_SIZE, &size) < 0) ||
        (max_arg && shk_py_u64_max(max_arg, "max_size", SHK_MAX_MAX_SIZE, &max_size) < 0))
        return -1;
    if (s->seg) {
        PyErr_SetString(PyExc_RuntimeError, "Segment already initialised");
        return -1;
    }
    int created = 0;
    shk_segment *seg = shk_py_open_segment(name, create, size, max_size, mode, trust, &created);
    if (!seg)
        return -1;
    s->seg = seg;
    s->created = created;
    s->trust = trust;
    s->unlink_on_exit = unlink_on_exit;
    Py_INCREF(name);
    Py_XSETREF(s->name, name);
    return 0;
}

static void seg_dealloc(PyObject *self)
{
    ShkPySegment *s = (ShkPySegment *)self;
    if (s->weakrefs)
        PyObject_ClearWeakRefs(self);
    shk_segment_close(s->seg);
    Py_XDECREF(s->name);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *seg_close(PyObject *self, PyObject *Py_UNUSED(a))
{
    ShkPySegment *s = (ShkPySegment *)self;
    shk_segment_close(s->seg);
    s->seg = NULL;
    Py_RETURN_NONE;
}

static PyObject *unlink_name(PyObject *name)
{
    const char *n;
    if (name_arg(name, &n) < 0)
        return NULL;
    int rc = shk_segment_unlink(n);
    if (rc == SHK_ENOENT) {
        PyErr_Format(PyExc_FileNotFoundError, "no shared memory segment named %R", name);
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, n);
    Py_RETURN_NONE;
}

static PyObject *seg_unlink(PyObject *self, PyObject *Py_UNUSED(a))
{
    return unlink_name(((ShkPySegment *)self)->name);
}

static PyObject *seg_enter(PyObject *self, PyObject *Py_UNUSED(a))
{
    if (!shk_py_segment_arg(self))
        return NULL;
    Py_INCREF(self);
    return self;
}

static PyObject *seg_exit(PyObject *self, PyObject *Py_UNUSED(args))
{
    ShkPySegment *s = (ShkPySegment *)self;
    shk_segment_close(s->seg);
    s->seg = NULL;
    if (s->created && s->unlink_on_exit) {
        /* ENOENT is fine: someone else removed it already. */
        const char *n = PyUnicode_AsUTF8(s->name);
        if (n)
            (void)shk_segment_unlink(n);
    }
    Py_RETURN_FALSE;
}

static PyObject *object_info_dict(const shk_object_info *oi)
{
    /* names are stored from Python str, so bytes that are not UTF-8 mean
     * the directory is corrupt */
    PyObject *name = PyUnicode_DecodeUTF8(oi->name, (Py_ssize_t)strlen(oi->name), NULL);
    if (!name) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            PyErr_SetString(ShkPy_CorruptSegmentError,
                            "segment directory: an object name is not UTF-8 "
                            "(the segment is corrupt)");
        }
        return NULL;
    }
    return Py_BuildValue("{s:N,s:s,s:K,s:K}", "name", name, "type", shk_type_name(oi->type),
                         "offset", (unsigned long long)oi->offset, "size",
                         (unsigned long long)oi->size);
}

static PyObject *seg_objects(PyObject *self, PyObject *Py_UNUSED(a))
{
    shk_segment *seg = shk_py_segment_arg(self);
    if (!seg)
        return NULL;
    PyObject *list = PyList_New(0);
    uint32_t n = shk_segment_object_count(seg);
    for (uint32_t i = 0; list && i < n; i++) {
        shk_object_info oi;
        int rc = shk_segment_object_at(seg, i, &oi);
        if (rc == SHK_ENOENT)
            continue;
        if (rc != SHK_OK) {
            Py_DECREF(list);
            return shk_py_raise(rc, "objects()");
        }
        PyObject *d = object_info_dict(&oi);
        if (!d || PyList_Append(list, d) < 0) {
            Py_XDECREF(d);
            Py_CLEAR(list);
        }
        Py_XDECREF(d);
    }
    return list;
}

static PyObject *seg_lookup(PyObject *self, PyObject *arg)
{
    shk_segment *seg = shk_py_segment_arg(self);
    if (!seg)
        return NULL;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "object name must be a str");
        return NULL;
    }
    const char *name = shk_py_object_name(arg);
    if (!name)
        return NULL;
    shk_object_info oi;
    int rc = shk_segment_lookup(seg, name, &oi);
    if (rc == SHK_ENOENT || rc == SHK_EINVAL) {
        PyErr_Format(PyExc_KeyError, "no object named %R in this segment", arg);
        return NULL;
    }
    if (rc != SHK_OK)
        return shk_py_raise(rc, name);
    return object_info_dict(&oi);
}

static PyObject *seg_info(PyObject *self, PyObject *Py_UNUSED(a))
{
    ShkPySegment *s = (ShkPySegment *)self;
    shk_segment *seg = shk_py_segment_arg(self);
    if (!seg)
        return NULL;
    shk_segment_info si;
    int rc = shk_segment_info_get(seg, &si);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "info()");
    PyObject *objs = seg_objects(self, NULL);
    if (!objs)
        return NULL;
    PyObject *d = Py_BuildValue(
        "{s:O,s:K,s:K,s:K,s:K,s:L,s:K,s:K,s:I,s:I,s:I,s:I,s:N}", "name", s->name, "file_size",
        (unsigned long long)si.file_size, "max_size", (unsigned long long)si.max_size,
        "heap_used", (unsigned long long)si.heap_used, "heap_free",
        (unsigned long long)si.heap_free, "creator_pid", (long long)si.creator_pid,
        "creator_start_ticks", (unsigned long long)si.creator_start_ticks, "created_unix_ns",
        (unsigned long long)si.created_unix_ns, "version", (unsigned int)si.version,
        "owner_uid", (unsigned int)si.owner.uid, "owner_gid", (unsigned int)si.owner.gid,
        "mode", (unsigned int)si.owner.mode, "objects", objs);
    return d;
}

static PyObject *seg_heap_check(PyObject *self, PyObject *Py_UNUSED(a))
{
    shk_segment *seg = shk_py_segment_arg(self);
    if (!seg)
        return NULL;
    return shk_py_freelist_check(shk_segment_heap(seg), "segment heap check");
}

static PyObject *seg_check(PyObject *self, PyObject *Py_UNUSED(a))
{
    shk_segment *seg = shk_py_segment_arg(self);
    if (!seg)
        return NULL;
    int rc = shk_segment_check(seg);
    if (rc != SHK_OK)
        return shk_py_raise(rc, "Segment.check");
    return shk_py_freelist_check(shk_segment_heap(seg), "segment heap check");
}

static PyObject *seg_get_closed(PyObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((ShkPySegment *)self)->seg == NULL);
}

static PyObject *seg_get_size(PyObject *self, void *Py_UNUSED(c))
{
    shk_segment *seg = shk_py_segment_arg(self);
    return seg ? PyLong_FromUnsignedLongLong(shk_segment_file_size(seg)) : NULL;
}

static PyObject *seg_get_max_size(PyObject *self, void *Py_UNUSED(c))
{
    shk_segment *seg = shk_py_segment_arg(self);
    return seg ? PyLong_FromUnsignedLongLong(shk_segment_max_size(seg)) : NULL;
}

static PyObject *seg_get_trust(PyObject *self, void *Py_UNUSED(c))
{
    return PyUnicode_FromString(shk_py_trust_name(((ShkPySegment *)self)->trust));
}

static PyObject *seg_repr(PyObject *self)
{
    ShkPySegment *s = (ShkPySegment *)self;
    if (!s->seg)
        return PyUnicode_FromFormat("<shmkit.Segment %R closed>", s->name);
    return PyUnicode_FromFormat("<shmkit.Segment %R size=%llu objects=%u>", s->name,
                                (unsigned long long)shk_segment_file_size(s->seg),
                                (unsigned)shk_segment_object_count(s->seg));
}

static PyMethodDef seg_methods[] = {
    {"close", seg_close, METH_NOARGS,
     "Unmap this handle.  The segment stays for other processes; views and "
     "object handles opened from it stay valid."},
    {"unlink", seg_unlink, METH_NOARGS,
     "Remove the segment's name from the system.  Processes that have it "
     "mapped keep working; the memory is freed when the last one closes."},
    {"objects", seg_objects, METH_NOARGS,
     "The named objects in the segment: list of {name, type, offset, size}."},
    {"lookup", seg_lookup, METH_O,
     "lookup(name) -> {name, type, offset, size}; KeyError if absent."},
    {"info", seg_info, METH_NOARGS,
     "Facts about the segment: sizes, heap use, creator, the file's owner_uid, "
     "owner_gid and mode, objects."},
    {"check", seg_check, METH_NOARGS,
     "check(): verify the segment's own locks and walk its heap; the heap's "
     "statistics, or CorruptSegmentError."},
    {"heap_check", seg_heap_check, METH_NOARGS,
     "Walk the segment heap and verify its invariants; returns its stats or "
     "raises CorruptSegmentError.  Meaningful when no process is writing."},
    {"__enter__", seg_enter, METH_NOARGS, NULL},
    {"__exit__", seg_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef seg_getset[] = {
    {"closed", seg_get_closed, NULL, "True once close() was called.", NULL},
    {"size", seg_get_size, NULL, "Bytes currently backed by memory.", NULL},
    {"max_size", seg_get_max_size, NULL, "The most the segment may grow to.", NULL},
    {"trust", seg_get_trust, NULL,
     "Whose segment this handle accepted: \"owner\", \"group\" or \"any\".", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef seg_members[] = {
    {"name", T_OBJECT, offsetof(ShkPySegment, name), READONLY, "Segment name."},
    {"created", T_BOOL, offsetof(ShkPySegment, created), READONLY,
     "True if this handle created the segment."},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject ShkPySegment_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmkit._shmkit.Segment",
    .tp_basicsize = sizeof(ShkPySegment),
    .tp_dealloc = seg_dealloc,
    .tp_repr = seg_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Segment(name, size=0, *, create=None, mode=0o600, max_size=0, "
              "unlink_on_exit=False, trust=\"owner\")\n\n"
              "A named POSIX shared-memory segment holding named objects.",
    .tp_weaklistoffset = offsetof(ShkPySegment, weakrefs),
    .tp_methods = seg_methods,
    .tp_members = seg_members,
    .tp_getset = seg_getset,
    .tp_init = seg_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------- module functions */

static PyObject *mod_unlink(PyObject *Py_UNUSED(m), PyObject *name)
{
    return unlink_name(name);
}

static PyObject *mod_name_valid(PyObject *Py_UNUSED(m), PyObject *name)
{
    if (!PyUnicode_Check(name))
        Py_RETURN_FALSE;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (!s) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong((Py_ssize_t)strlen(s) == n && shk_segment_name_valid(s));
}

#ifdef SHK_TEST_HOOKS
static PyObject *mod_arm_crash_point(PyObject *Py_UNUSED(m), PyObject *arg)
{
    if (arg == Py_None) {
        shk_crash_arm(NULL);
        Py_RETURN_NONE;
    }
    const char *spec = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!spec) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "spec must be a str or None");
        return NULL;
    }
    shk_crash_arm(spec);
    Py_RETURN_NONE;
}
#endif

static PyMethodDef module_functions[] = {
#ifdef SHK_TEST_HOOKS
    {"_arm_crash_point", mod_arm_crash_point, METH_O,
     "_arm_crash_point('name[:N]' or None): TEST ONLY. The N-th time this "
     "process passes the named crash point, it kills itself with SIGKILL."},
#endif
    {"unlink", mod_unlink, METH_O,
     "unlink(name): remove a segment's name (FileNotFoundError if absent)."},
    {"name_valid", mod_name_valid, METH_O,
     "name_valid(name) -> bool: is this an acceptable segment name?"},
    {NULL, NULL, 0, NULL},
};

int shk_py_init_segment(PyObject *m)
{
    if (shk_py_add_type(m, &ShkPySegment_Type, "Segment") < 0)
        return -1;
    if (PyModule_AddFunctions(m, module_functions) < 0)
        return -1;
    if (PyModule_AddObject(m, "DEFAULT_MAX_SIZE",
                           PyLong_FromUnsignedLongLong(SHK_DEFAULT_MAX_SIZE)) < 0)
        return -1;
    return PyModule_AddObject(m, "MAX_MAX_SIZE", PyLong_FromUnsignedLongLong(SHK_MAX_MAX_SIZE));
}
