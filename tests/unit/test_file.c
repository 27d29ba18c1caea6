/*
 * test_file.c: common/file.c. qb_file_write_atomic replaces a file whole
 * (new content, no .tmp left, the old file kept when the write fails, an
 * empty write) and qb_file_mkdir_parents makes an ipc path's directories
 * (parents 0755, the last with its mode, an existing private directory of
 * ours re-moded, no work without a '/'). Files under a fresh directory in
 * $TMPDIR or /tmp, removed at the end.
 */
#include "harness.h"

#include "err.h"
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char t_dir[256];

static void t_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(t_dir, sizeof t_dir, "%s/qb-test-file-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(t_dir) == NULL) {
        QB_SKIP_ALL("mkdtemp failed");
    }
}

/* The whole content of path in out (NUL-terminated); its length, or -1. */
static long t_read(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    return (long)n;
}

QB_TEST(write_atomic_replaces_whole)
{
    char path[512], tmp[520], got[64];
    snprintf(path, sizeof path, "%s/stats.json", t_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    QB_CHECK_EQ_INT(qb_file_write_atomic(path, "{\"a\": 1}\n", 9), QB_OK);
    QB_CHECK(t_read(path, got, sizeof got) == 9 && strcmp(got, "{\"a\": 1}\n") == 0);
    QB_CHECK_EQ_INT(qb_file_write_atomic(path, "{}\n", 3), QB_OK);
    QB_CHECK(t_read(path, got, sizeof got) == 3 && strcmp(got, "{}\n") == 0);
    QB_CHECK(access(tmp, F_OK) != 0);
    QB_CHECK_EQ_INT(qb_file_write_atomic(path, "", 0), QB_OK);
    QB_CHECK(t_read(path, got, sizeof got) == 0);
    unlink(path);
}

QB_TEST(write_atomic_failure_keeps_old)
{
    char path[512], got[64];
    /* the .tmp cannot be created (no such directory): QB_EIO, errno set */
    snprintf(path, sizeof path, "%s/missing/port", t_dir);
    errno = 0;
    QB_CHECK_EQ_INT(qb_file_write_atomic(path, "1\n", 2), QB_EIO);
    QB_CHECK(errno == ENOENT);
    /* the rename fails (the target is a non-empty directory): the old
     * target stays and no .tmp is left behind */
    char dir[512], inner[600], tmp[520];
    snprintf(dir, sizeof dir, "%s/adir", t_dir);
    snprintf(inner, sizeof inner, "%s/x", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    QB_CHECK(mkdir(dir, 0755) == 0);
    QB_CHECK_EQ_INT(qb_file_write_atomic(inner, "x", 1), QB_OK);
    QB_CHECK_EQ_INT(qb_file_write_atomic(dir, "new", 3), QB_EIO);
    QB_CHECK(access(tmp, F_OK) != 0);
    QB_CHECK(t_read(inner, got, sizeof got) == 1);
    unlink(inner);
    rmdir(dir);
}

QB_TEST(mkdir_parents_modes)
{
    char file[512], d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/quotebus", t_dir);
    snprintf(d2, sizeof d2, "%s/quotebus/private", t_dir);
    snprintf(file, sizeof file, "%s/quotebus/private/snapshot", t_dir);
    mode_t old = umask(022);
    QB_CHECK_EQ_INT(qb_file_mkdir_parents(file, 0700), QB_OK);
    struct stat sb;
    QB_CHECK(stat(d1, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == 0755);
    QB_CHECK(stat(d2, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == 0700);
    /* again: nothing to do; an existing one of ours that lost its private
     * mode gets it back */
    QB_CHECK(chmod(d2, 0755) == 0);
    QB_CHECK_EQ_INT(qb_file_mkdir_parents(file, 0700), QB_OK);
    QB_CHECK(stat(d2, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    /* a public one is left as it is */
    snprintf(file, sizeof file, "%s/quotebus/pub", t_dir);
    QB_CHECK_EQ_INT(qb_file_mkdir_parents(file, 0755), QB_OK);
    QB_CHECK(stat(d1, &sb) == 0 && (sb.st_mode & 0777) == 0755);
    umask(old);
    /* no directory part; too long */
    QB_CHECK_EQ_INT(qb_file_mkdir_parents("file", 0700), QB_OK);
    QB_CHECK_EQ_INT(qb_file_mkdir_parents("/file", 0700), QB_OK);
    char lng[600];
    memset(lng, 'a', sizeof lng - 1);
    lng[0] = '/';
    lng[sizeof lng - 1] = '\0';
    QB_CHECK_EQ_INT(qb_file_mkdir_parents(lng, 0700), QB_EINVAL);
    /* a file where a directory should be */
    char blocker[512];
    snprintf(blocker, sizeof blocker, "%s/blocker", t_dir);
    QB_CHECK_EQ_INT(qb_file_write_atomic(blocker, "", 0), QB_OK);
    snprintf(file, sizeof file, "%s/blocker/sub/x", t_dir);
    QB_CHECK_EQ_INT(qb_file_mkdir_parents(file, 0755), QB_EIO);
    unlink(blocker);
    rmdir(d2);
    rmdir(d1);
}

int main(void)
{
    t_setup();
    int rc = qb_test_run_all();
    rmdir(t_dir);
    return rc;
}
