/*
 * module.c -- the extension module shmkit._shmkit: the top layer.  Module
 * init calls shk_py_init_common (exceptions, py_common.c) and then each
 * binding file's shk_py_init_<thing>(), which adds its types.  Nothing
 * calls into this file.
 */
#include "shmkit_py.h"

static struct PyModuleDef shmkit_module = {
    PyModuleDef_HEAD_INIT,
    "shmkit._shmkit",
    "C core of shmkit: shared-memory segments and data structures.",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__shmkit(void)
{
    PyObject *m = PyModule_Create(&shmkit_module);
    if (!m)
        return NULL;
    if (shk_py_init_common(m) < 0 ||
        PyModule_AddStringConstant(m, "C_VERSION", SHMKIT_VERSION) < 0 ||
        shk_py_init_segment(m) < 0 || shk_py_init_alloc(m) < 0 || shk_py_init_dict(m) < 0 ||
        shk_py_init_queue(m) < 0 || shk_py_init_stack(m) < 0 || shk_py_init_bitset(m) < 0 ||
        shk_py_init_array(m) < 0 || shk_py_init_counter(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
