/* py_dict.c -- placeholder until the dict binding lands (owned by its issue). */
#include "shmkit_py.h"

int shk_py_init_dict(PyObject *m)
{
    (void)m;
    return 0;
}
