/* py_stack.c -- placeholder until the stack binding lands (owned by its issue). */
#include "shmkit_py.h"

int shk_py_init_stack(PyObject *m)
{
    (void)m;
    return 0;
}
