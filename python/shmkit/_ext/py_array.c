/* py_array.c -- placeholder until the array binding lands (owned by its issue). */
#include "shmkit_py.h"

int shk_py_init_array(PyObject *m)
{
    (void)m;
    return 0;
}
