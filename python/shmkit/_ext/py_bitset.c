/* py_bitset.c -- placeholder until the bitset binding lands (owned by its issue). */
#include "shmkit_py.h"

int shk_py_init_bitset(PyObject *m)
{
    (void)m;
    return 0;
}
