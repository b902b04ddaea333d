/*
 * test_atomic.c - outputs appear complete or not at all (src/core/atomic.c): a write replaces
 * the target whole; a process killed (SIGKILL) while writing, or a write that fails for
 * lack of space (RLIMIT_FSIZE), leaves the previous file byte-identical and no other file
 * behind; a missing folder is a clear UF_ERR_IO. What may be replaced (issue 12): a FIFO,
 * socket or directory target is refused and left as it was; a symbolic link is written
 * through (its target replaced, the link kept); a dangling link and a hard-linked file are
 * refused; a replaced file keeps its mode; uf_output_check refuses an input; and an input
 * that is a FIFO is refused by uf_open_input without blocking.
 */
#include "harness.h"
#include "core/internal.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
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

static void dir_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* Targets that are not regular files are refused, one line naming them and what they are,
 * and stay what they were. */
static void test_non_regular_targets(void)
{
    char fifo[160], dir[160], sock[160];
    dir_path(fifo, sizeof fifo, "fifo.ufm");
    dir_path(dir, sizeof dir, "dir.ufm");
    dir_path(sock, sizeof sock, "sock.ufm");
    REQUIRE(mkfifo(fifo, 0644) == 0);
    REQUIRE(mkdir(dir, 0755) == 0);
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    REQUIRE(strlen(sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    REQUIRE(sfd >= 0 && bind(sfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    const char *paths[3] = {fifo, dir, sock}, *kinds[3] = {"a FIFO", "a directory", "a socket"};
    for (int i = 0; i < 3; i++) {
        CHECKF(uf_write_file_atomic(paths[i], "x", 1) == UF_ERR_IO &&
                   strstr(uf_errmsg(), paths[i]) && strstr(uf_errmsg(), kinds[i]),
               "%s: %s", paths[i], uf_errmsg());
        CHECK(uf_output_check(paths[i], NULL) == UF_ERR_IO);
        uf_image *img = NULL;
        REQUIRE_OK(uf_image_new(2, 2, &img));
        CHECK(uf_image_write_png(img, paths[i]) == UF_ERR_IO);
        uf_image_free(img);
    }
    struct stat st;
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK(count_files() == 3); /* no temporary file left */
    close(sfd);
    unlink(fifo);
    rmdir(dir);
    unlink(sock);
}

/* A symbolic link is written through; a dangling one is refused; a hard-linked file is
 * refused (both names keep the old bytes); an existing file keeps its mode. */
static void test_links_and_modes(void)
{
    char real[160], lnk[160], dangling[160], hard1[160], hard2[160];
    dir_path(real, sizeof real, "real.ufm");
    dir_path(lnk, sizeof lnk, "link.ufm");
    dir_path(dangling, sizeof dangling, "dangling.ufm");
    dir_path(hard1, sizeof hard1, "hard1.ufm");
    dir_path(hard2, sizeof hard2, "hard2.ufm");
    REQUIRE_OK(uf_write_file_atomic(real, "old", 3));
    REQUIRE(chmod(real, 0600) == 0);
    REQUIRE(symlink("real.ufm", lnk) == 0);
    REQUIRE_OK(uf_write_file_atomic(lnk, "through", 7));
    struct stat st;
    CHECK(lstat(lnk, &st) == 0 && S_ISLNK(st.st_mode)); /* the link stays */
    CHECK(file_equals(real, "through", 7));
    CHECK(stat(real, &st) == 0 && (st.st_mode & 07777) == 0600); /* mode kept */
    REQUIRE(symlink("missing.ufm", dangling) == 0);
    CHECKF(uf_write_file_atomic(dangling, "x", 1) == UF_ERR_IO &&
               strstr(uf_errmsg(), "missing file"), "%s", uf_errmsg());
    CHECK(lstat(dangling, &st) == 0 && S_ISLNK(st.st_mode));
    REQUIRE_OK(uf_write_file_atomic(hard1, "both", 4));
    REQUIRE(link(hard1, hard2) == 0);
    CHECKF(uf_write_file_atomic(hard1, "new", 3) == UF_ERR_IO &&
               strstr(uf_errmsg(), "hard links"), "%s", uf_errmsg());
    CHECK(file_equals(hard1, "both", 4) && file_equals(hard2, "both", 4));
    CHECK(stat(hard1, &st) == 0 && st.st_nlink == 2);
    CHECK(count_files() == 5);
    unlink(lnk), unlink(real), unlink(dangling), unlink(hard1), unlink(hard2);
}

/* uf_output_check refuses the same file as an input, however it is spelled. */
static void test_output_is_input(void)
{
    char w[160], other[160], alias[160];
    dir_path(w, sizeof w, "w.safetensors");
    dir_path(other, sizeof other, "other.ufm");
    dir_path(alias, sizeof alias, "alias.safetensors");
    REQUIRE_OK(uf_write_file_atomic(w, "weights", 7));
    REQUIRE(symlink(w, alias) == 0);
    uf_inputs *in = NULL;
    REQUIRE_OK(uf_inputs_new(&in));
    char missing[160];
    dir_path(missing, sizeof missing, "not-there.png");
    REQUIRE_OK(uf_inputs_add(in, missing)); /* ignored */
    for (int i = 0; i < 200; i++) { /* enough to make the set grow */
        char p[200];
        snprintf(p, sizeof p, "%s/img%03d.png", g_dir, i);
        REQUIRE_OK(uf_write_file_atomic(p, "i", 1));
        REQUIRE_OK(uf_inputs_add(in, p));
    }
    REQUIRE_OK(uf_inputs_add(in, w));
    CHECKF(uf_output_check(w, in) == UF_ERR_IO && strstr(uf_errmsg(), "is the input"), "%s",
           uf_errmsg());
    CHECK(uf_output_check(alias, in) == UF_ERR_IO); /* a link to it */
    char img[200];
    snprintf(img, sizeof img, "%s/./img117.png", g_dir);
    CHECK(uf_output_check(img, in) == UF_ERR_IO);
    CHECK(uf_output_check(other, in) == UF_OK); /* missing: fine */
    REQUIRE_OK(uf_write_file_atomic(other, "m", 1));
    CHECK(uf_output_check(other, in) == UF_OK); /* not an input */
    CHECK(file_equals(w, "weights", 7));
    uf_inputs_free(in);
    for (int i = 0; i < 200; i++) {
        char p[200];
        snprintf(p, sizeof p, "%s/img%03d.png", g_dir, i);
        unlink(p);
    }
    unlink(w), unlink(other), unlink(alias);
}

/* An input that is a FIFO without a writer: refused at once (an alarm turns a hang into
 * a failure of this binary). */
static void test_fifo_input(void)
{
    char fifo[160];
    dir_path(fifo, sizeof fifo, "in.png");
    REQUIRE(mkfifo(fifo, 0644) == 0);
    alarm(20);
    int fd = -1;
    CHECKF(uf_open_input(fifo, &fd) == UF_ERR_IO && strstr(uf_errmsg(), "a FIFO"), "%s",
           uf_errmsg());
    CHECK(fd == -1);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(uf__read_file(fifo, 100, &buf, &len) == UF_ERR_IO);
    uf_image *img = NULL;
    CHECK(uf_image_load(fifo, &img) == UF_ERR_IO && strstr(uf_errmsg(), fifo));
    uf_backbone *bb = NULL;
    CHECK(uf_backbone_load(fifo, NULL, &bb) != UF_OK && strstr(uf_errmsg(), "FIFO"));
    alarm(0);
    char reg[160];
    dir_path(reg, sizeof reg, "reg.bin");
    REQUIRE_OK(uf_write_file_atomic(reg, "abc", 3));
    REQUIRE_OK(uf_open_input(reg, &fd));
    char b[4];
    CHECK(read(fd, b, 4) == 3); /* blocking mode restored, plain reads */
    close(fd);
    unlink(reg);
    unlink(fifo);
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
    RUN(test_non_regular_targets);
    RUN(test_links_and_modes);
    RUN(test_output_is_input);
    RUN(test_fifo_input);
    rmdir(g_dir);
    return TEST_DONE();
}
