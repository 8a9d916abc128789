/* py_queue.c -- placeholder until the queue binding lands (owned by its issue). */
#include "shmkit_py.h"

int shk_py_init_queue(PyObject *m)
{
    (void)m;
    return 0;
}
