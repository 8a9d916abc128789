/*
 * c_example.c -- libshmkit from a plain C program (no Python involved).
 *
 *   make example      # builds build/libshmkit.a and this program, runs it
 *
 * A parent creates a segment with a free-list allocator, forks a child that
 * attaches by name and writes a message into a block the parent allocated.
 */
#define _GNU_SOURCE
#include <shmkit.h>

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int die(const char *what, int rc)
{
    fprintf(stderr, "%s: %s\n", what, shk_strerror(rc));
    return 1;
}

static int init_heap(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    *size = *(uint64_t *)arg;
    return shk_freelist_create_in(seg, *size, off);
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "shmkit-c-example-%d", (int)getpid());
    shk_segment *seg;
    int rc = shk_segment_create(name, 0, 0, 0600, &seg);
    if (rc != SHK_OK)
        return die("create", rc);

    uint64_t cap = 1 << 20, heap_off, block;
    rc = shk_segment_object(seg, "heap", SHK_TYPE_FREELIST, init_heap, &cap, &heap_off, NULL);
    if (rc != SHK_OK)
        return die("object", rc);
    shk_freelist *heap;
    if ((rc = shk_freelist_open(seg, heap_off, &heap)) != SHK_OK)
        return die("open", rc);
    if ((rc = shk_freelist_alloc(heap, 64, &block)) != SHK_OK)
        return die("alloc", rc);

    pid_t pid = fork();
    if (pid == 0) {
        /* A fresh attach by name, as an unrelated process would do. */
        shk_segment *mine;
        if (shk_segment_attach(name, &mine) != SHK_OK)
            _exit(1);
        snprintf(shk_segment_base(mine) + block, 64, "hello from pid %d", (int)getpid());
        shk_segment_close(mine);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("parent read at offset %llu: \"%s\"\n", (unsigned long long)block,
           shk_segment_base(seg) + block);
    shk_freelist_free(heap, block);
    shk_freelist_stats st;
    rc = shk_freelist_check(heap, &st);
    printf("heap check: %s, %llu live blocks, %llu bytes available\n", shk_strerror(rc),
           (unsigned long long)st.live_blocks,
           (unsigned long long)shk_freelist_available(heap));
    shk_freelist_close(heap);
    shk_segment_close(seg);
    shk_segment_unlink(name);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && rc == SHK_OK ? 0 : 1;
}
