/* Unit tests of segments: create/attach/validate/grow/directory. */
#include "check.h"
#include "internal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

TEST(create_attach_close)
{
    const char *n = check_name("basic");
    shk_segment *a = NULL, *b = NULL;
    CHECK_EQ(shk_segment_create(n, 0, 0, 0600, &a), SHK_OK);
    CHECK_EQ(shk_segment_create(n, 0, 0, 0600, &b), SHK_EEXIST);
    CHECK_EQ(shk_segment_attach(n, &b), SHK_OK);
    CHECK(shk_segment_base(a) != shk_segment_base(b));
    strcpy(shk_segment_base(a) + 100000, "hello");
    CHECK(strcmp(shk_segment_base(b) + 100000, "hello") == 0);
    shk_segment_close(b);
    shk_segment_close(a);
    CHECK_EQ(shk_segment_unlink(n), SHK_OK);
    CHECK_EQ(shk_segment_attach(n, &b), SHK_ENOENT);
    CHECK_EQ(shk_segment_unlink(n), SHK_ENOENT);
}

TEST(names)
{
    shk_segment *s;
    CHECK_EQ(shk_segment_create("", 0, 0, 0600, &s), SHK_EINVAL);
    CHECK_EQ(shk_segment_create("a/b", 0, 0, 0600, &s), SHK_EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[299] = 0;
    CHECK_EQ(shk_segment_create(longname, 0, 0, 0600, &s), SHK_EINVAL);
    CHECK(shk_segment_name_valid("/ok"));
    CHECK(!shk_segment_name_valid("//x"));
}

static void write_file(const char *name, const void *data, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (n)
        CHECK(write(fd, data, n) == (ssize_t)n);
    close(fd);
}

TEST(foreign_and_truncated)
{
    const char *n = check_name("foreign");
    shk_segment *s;
    char junk[20000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(n, junk, sizeof junk);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_ECORRUPT);
    write_file(n, junk, 10);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_ECORRUPT);
    shk_segment_unlink(n);

    /* A real segment truncated below its recorded size. */
    CHECK_EQ(shk_segment_create(n, 4 << 20, 0, 0600, &s), SHK_OK);
    shk_segment_close(s);
    char path[256];
    snprintf(path, sizeof path, "/%s", n);
    int fd = shm_open(path, O_RDWR, 0);
    CHECK(ftruncate(fd, 1 << 20) == 0);
    close(fd);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_ECORRUPT);
    shk_segment_unlink(n);
}

TEST(growth_keeps_addresses)
{
    const char *n = check_name("grow");
    shk_segment *a, *b;
    CHECK_EQ(shk_segment_create(n, 0, 256ull << 20, 0600, &a), SHK_OK);
    CHECK_EQ(shk_segment_attach(n, &b), SHK_OK);
    uint64_t before = shk_segment_file_size(a);
    CHECK_EQ(shk_segment_reserve(a, 100ull << 20), SHK_OK);
    CHECK(shk_segment_file_size(b) >= (100ull << 20));
    CHECK(before < shk_segment_file_size(b));
    shk_segment_base(a)[(100ull << 20) - 1] = 42;
    CHECK_EQ(shk_segment_base(b)[(100ull << 20) - 1], 42);
    CHECK_EQ(shk_segment_reserve(a, 257ull << 20), SHK_ENOMEM);
    shk_segment_close(a);
    shk_segment_close(b);
    shk_segment_unlink(n);
}

/* The shared file_size is believed only as far as the file really reaches
 * (fstat): a forged value must not let a bounds check pass over bytes past
 * end-of-file (SIGBUS) or past the mapping (SIGSEGV).  A reserve grows the
 * real file and puts the shared value right. */
TEST(forged_file_size)
{
    const char *n = check_name("fsize");
    shk_segment *a, *b;
    CHECK_EQ(shk_segment_create(n, 1 << 20, 64ull << 20, 0600, &a), SHK_OK);
    CHECK_EQ(shk_segment_attach(n, &b), SHK_OK);
    _Atomic uint64_t *fs = (_Atomic uint64_t *)(shk_segment_base(a) + 32);
    CHECK_EQ(atomic_load(fs), 1 << 20);   /* the layout this test assumes */
    uint64_t forged[] = {1ull << 62, 64ull << 30, 64ull << 20, (1 << 20) + 4096};
    for (int i = 0; i < 4; i++) {
        atomic_store(fs, forged[i]);
        CHECK_EQ(shk_segment_file_size(a), 1 << 20);
        CHECK_EQ(shk_segment_file_size(b), 1 << 20);
        CHECK(shk_segment_contains(b, 0, 1 << 20));
        CHECK(!shk_segment_contains(b, (1 << 20) - 8, 16));
        CHECK(!shk_segment_contains(b, 1ull << 40, 1));
        shk_segment_info info;
        CHECK_EQ(shk_segment_info_get(b, &info), SHK_OK);
        CHECK_EQ(info.file_size, 1 << 20);
    }
    /* Growing starts from what the file holds, and stores the truth. */
    CHECK_EQ(shk_segment_reserve(b, 2 << 20), SHK_OK);
    CHECK(atomic_load(fs) >= (2u << 20) && atomic_load(fs) <= (64u << 20));
    CHECK_EQ(shk_segment_file_size(a), atomic_load(fs));
    shk_segment_base(a)[(2 << 20) - 1] = 7;   /* backed: no SIGBUS */
    CHECK_EQ(shk_segment_base(b)[(2 << 20) - 1], 7);
    /* Legitimate growth by another handle is still seen. */
    CHECK_EQ(shk_segment_reserve(a, 9 << 20), SHK_OK);
    CHECK(shk_segment_contains(b, (9 << 20) - 16, 16));
    shk_segment_close(a);
    shk_segment_close(b);
    shk_segment_unlink(n);
}

static int init_blob(shk_segment *seg, void *arg, uint64_t *off, uint64_t *size)
{
    uint64_t n = *(uint64_t *)arg;
    int rc = shk_freelist_alloc(shk_segment_heap(seg), n, off);
    if (rc == SHK_OK)
        *size = n;
    return rc;
}

TEST(directory)
{
    const char *n = check_name("dir");
    shk_segment *s;
    CHECK_EQ(shk_segment_create(n, 0, 0, 0600, &s), SHK_OK);
    uint64_t sz = 100, off1 = 0, off2 = 0;
    int created = -1;
    CHECK_EQ(shk_segment_object(s, "a", SHK_TYPE_FREELIST, init_blob, &sz, &off1, &created), SHK_OK);
    CHECK_EQ(created, 1);
    CHECK_EQ(shk_segment_object(s, "a", SHK_TYPE_FREELIST, init_blob, &sz, &off2, &created), SHK_OK);
    CHECK_EQ(created, 0);
    CHECK_EQ(off1, off2);
    CHECK_EQ(shk_segment_object(s, "a", SHK_TYPE_DICT, NULL, NULL, &off2, NULL), SHK_ETYPE);
    CHECK_EQ(shk_segment_object(s, "b", SHK_TYPE_DICT, NULL, NULL, &off2, NULL), SHK_ENOENT);
    CHECK_EQ(shk_segment_object(s, "", SHK_TYPE_DICT, init_blob, &sz, &off2, NULL), SHK_EINVAL);
    char nm[16];
    for (int i = 1; i < SHK_DIR_CAPACITY; i++) {
        snprintf(nm, sizeof nm, "o%d", i);
        CHECK_EQ(shk_segment_object(s, nm, SHK_TYPE_SLAB, init_blob, &sz, &off2, NULL), SHK_OK);
    }
    CHECK_EQ(shk_segment_object(s, "onemore", SHK_TYPE_SLAB, init_blob, &sz, &off2, NULL), SHK_EFULL);
    CHECK_EQ(shk_segment_object_count(s), SHK_DIR_CAPACITY);
    shk_object_info info;
    CHECK_EQ(shk_segment_object_at(s, 0, &info), SHK_OK);
    CHECK(strcmp(info.name, "a") == 0);
    shk_segment_close(s);
    /* The directory survives re-attach and validation. */
    CHECK_EQ(shk_segment_attach(n, &s), SHK_OK);
    CHECK_EQ(shk_segment_lookup(s, "o5", &info), SHK_OK);
    shk_segment_close(s);
    shk_segment_unlink(n);
}

TEST(header_fuzz_never_crashes)
{
    /* Random mutations of a valid header must validate or be rejected,
     * never read out of bounds (ASan checks the latter). */
    const char *n = check_name("fuzz");
    shk_segment *s;
    CHECK_EQ(shk_segment_create(n, 0, 0, 0600, &s), SHK_OK);
    size_t len = 8192 + 16384;
    char *copy = malloc(len);
    unsigned seed = 12345;
    int rejected = 0;
    for (int i = 0; i < 2000; i++) {
        memcpy(copy, shk_segment_base(s), len);
        int flips = 1 + (int)(rand_r(&seed) % 8);
        for (int f = 0; f < flips; f++)
            copy[rand_r(&seed) % 16384] ^= (char)(1 + rand_r(&seed) % 255);
        size_t cut = (i % 5 == 0) ? (size_t)(rand_r(&seed) % len) : len;
        rejected += shk_segment_validate_header(copy, cut, 1 << 20) != SHK_OK;
    }
    CHECK(rejected > 0);
    free(copy);
    shk_segment_close(s);
    shk_segment_unlink(n);
}

/* Make the segment's file owned by uid:gid with `mode`. */
static void set_owner(const char *name, uid_t uid, gid_t gid, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR, 0);
    CHECK(fd >= 0);
    CHECK(fchown(fd, uid, gid) == 0);
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

TEST(trust)
{
    if (geteuid() != 0) {
        fprintf(stderr, "trust: skipped (needs root to chown and setuid)\n");
        return;
    }
    const char *n = check_name("trust");
    const uid_t nobody = 65534;
    shk_segment *s = NULL;
    shk_segment_owner who = {0, 0, 0};
    int created = -1;

    /* A segment another user created, as a squatter would: mode 0644 and
     * data of their choosing.  Refused by default, even by root. */
    pid_t pid = fork();
    if (pid == 0) {
        shk_segment *mine;
        _exit(setgid(nobody) != 0 || setuid(nobody) != 0 ||
              shk_segment_create(n, 0, 64 << 20, 0644, &mine) != SHK_OK);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_EFOREIGN);
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_OWNER, &who, &s), SHK_EFOREIGN);
    CHECK_EQ(who.uid, nobody);
    CHECK_EQ(who.mode, 0644);
    CHECK_EQ(shk_segment_open(n, 0, 0, 0600, &s, &created), SHK_EFOREIGN);
    CHECK_EQ(created, -1);          /* neither created nor attached */
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_GROUP, NULL, &s), SHK_EFOREIGN);
    /* the explicit opt-in */
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_ANY, &who, &s), SHK_OK);
    shk_segment_info info;
    CHECK_EQ(shk_segment_info_get(s, &info), SHK_OK);
    CHECK_EQ(info.owner.uid, nobody);
    shk_segment_close(s);
    CHECK_EQ(shk_segment_open_ex(n, 0, 0, 0600, SHK_TRUST_ANY, NULL, &s, &created), SHK_OK);
    CHECK_EQ(created, 0);
    shk_segment_close(s);
    CHECK_EQ(shk_segment_attach_ex(n, 3, NULL, &s), SHK_EINVAL);

    /* Our own, but writable by group or world. */
    set_owner(n, 0, 0, 0620);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_EFOREIGN);
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_GROUP, NULL, &s), SHK_OK);  /* gid 0 is ours */
    shk_segment_close(s);
    set_owner(n, 0, nobody, 0660);  /* group-writable by a group we are not in */
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_GROUP, NULL, &s), SHK_EFOREIGN);
    set_owner(n, 0, 0, 0602);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_EFOREIGN);
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_GROUP, NULL, &s), SHK_EFOREIGN);
    /* Shared on purpose: another user's 0660 segment of one of our groups. */
    set_owner(n, nobody, 0, 0660);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_EFOREIGN);
    CHECK_EQ(shk_segment_attach_ex(n, SHK_TRUST_GROUP, NULL, &s), SHK_OK);
    shk_segment_close(s);
    /* Ours, owner-only: accepted at every level. */
    set_owner(n, 0, 0, 0600);
    CHECK_EQ(shk_segment_attach(n, &s), SHK_OK);
    shk_segment_close(s);
    shk_segment_unlink(n);

    /* create sets exactly the mode asked, whatever the umask. */
    mode_t old = umask(0077);
    CHECK_EQ(shk_segment_create(n, 0, 64 << 20, 0640, &s), SHK_OK);
    CHECK_EQ(shk_segment_info_get(s, &info), SHK_OK);
    CHECK_EQ(info.owner.mode, 0640);
    CHECK_EQ(info.owner.uid, geteuid());
    shk_segment_close(s);
    shk_segment_unlink(n);
    umask(0);
    CHECK_EQ(shk_segment_create(n, 0, 64 << 20, 0600, &s), SHK_OK);
    CHECK_EQ(shk_segment_info_get(s, &info), SHK_OK);
    CHECK_EQ(info.owner.mode, 0600);
    shk_segment_close(s);
    shk_segment_unlink(n);
    umask(old);
}

int main(void)
{
    RUN(create_attach_close);
    RUN(names);
    RUN(foreign_and_truncated);
    RUN(trust);
    RUN(growth_keeps_addresses);
    RUN(forged_file_size);
    RUN(directory);
    RUN(header_fuzz_never_crashes);
    return check_summary();
}
