/*
 * test_atomic.c - outputs appear complete or not at all (src/core/atomic.c): a write replaces
 * the target whole; a process killed (SIGKILL) while writing, or a write that fails for
 * lack of space (RLIMIT_FSIZE), leaves the previous file byte-identical and no other file
 * behind; a missing folder is a clear UF_ERR_IO.
 */
#include "harness.h"
#include "core/internal.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[] = "/tmp/uf_atomic_XXXXXX";

static int count_files(void)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static bool file_equals(const char *path, const void *data, size_t len)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    if (uf__read_file(path, 1 << 30, &buf, &n) != UF_OK) return false;
    bool eq = n == len && !memcmp(buf, data, len);
    free(buf);
    return eq;
}

static void test_write_and_replace(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/a.bin", g_dir);
    REQUIRE_OK(uf_write_file_atomic(path, "first", 5));
    CHECK(file_equals(path, "first", 5));
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    REQUIRE_OK(uf_write_file_atomic(path, "second version", 14));
    CHECK(file_equals(path, "second version", 14));
    REQUIRE_OK(uf_write_file_atomic(path, "", 0));
    CHECK(file_equals(path, "", 0));
    CHECK(count_files() == 1);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.bin", g_dir);
    CHECK(uf_write_file_atomic(bad, "x", 1) == UF_ERR_IO);
    CHECK(strstr(uf_errmsg(), "no/such/dir/x.bin") != NULL);
    CHECK(uf_write_file_atomic(NULL, "x", 1) == UF_ERR_ARG);
    unlink(path);
}

/* A child writes 8 MB into a new version of the file and is killed before committing. */
static void test_kill_while_writing(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/keep.bin", g_dir);
    REQUIRE_OK(uf_write_file_atomic(path, "precious", 8));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        uf__afile a;
        if (uf__afile_open(&a, path) != UF_OK) _exit(3);
        static uint8_t junk[1 << 20];
        memset(junk, 0xAB, sizeof junk);
        for (int i = 0; i < 8; i++) uf__write_all(a.fd, junk, sizeof junk);
        raise(SIGKILL);
        _exit(4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    CHECK(file_equals(path, "precious", 8));
    CHECKF(count_files() == 1, "%d files in %s after the kill", count_files(), g_dir);
    unlink(path);
}

/* A write beyond RLIMIT_FSIZE fails (SIGXFSZ ignored): error, old file intact, no litter. */
static void test_disk_full(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/full.bin", g_dir);
    REQUIRE_OK(uf_write_file_atomic(path, "old", 3));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        static uint8_t big[1 << 16];
        uf_status s = uf_write_file_atomic(path, big, sizeof big);
        _exit(s == UF_ERR_IO && strstr(uf_errmsg(), "full.bin") ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    CHECK(file_equals(path, "old", 3));
    CHECK(count_files() == 1);
    unlink(path);
}

int main(void)
{
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_write_and_replace);
    RUN(test_kill_while_writing);
    RUN(test_disk_full);
    rmdir(g_dir);
    return TEST_DONE();
}
