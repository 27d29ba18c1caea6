/*
 * file.c: atomic file replacement and ipc directory creation (see file.h
 * for the policies: no fsync, .tmp beside the target, private modes).
 * Stateless; any thread.
 */
#include "file.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes all of data to fd, across partial writes and EINTR. */
static int file_write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return QB_EIO;
        }
        data += w;
        n -= (size_t)w;
    }
    return QB_OK;
}

int qb_file_write_atomic(const char *path, const void *data, size_t n)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + sizeof ".tmp");
    if (tmp == NULL) {
        return QB_ENOMEM;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", sizeof ".tmp");
    int rc = QB_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd >= 0) {
        rc = file_write_all(fd, data, n);
        if (close(fd) != 0 && rc == QB_OK) {
            rc = QB_EIO;
        }
        if (rc == QB_OK && rename(tmp, path) != 0) {
            rc = QB_EIO;
        }
        if (rc != QB_OK) {
            int e = errno; /* the caller reports the write's errno, not unlink's */
            unlink(tmp);
            errno = e;
        }
    }
    free(tmp);
    return rc;
}

int qb_file_mkdir_parents(const char *file, mode_t mode)
{
    char path[512];
    if (snprintf(path, sizeof path, "%s", file) >= (int)sizeof path) {
        return QB_EINVAL;
    }
    char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path) {
        return QB_OK;
    }
    *slash = '\0';
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, c == '\0' ? mode : 0755) != 0 && errno != EEXIST) {
                return QB_EIO;
            }
            *p = c;
            if (c == '\0') {
                break;
            }
        }
    }
    if (mode != 0755) {
        /* An existing directory of ours gets the private mode too; one we
         * do not own keeps its own (the broker's lock decides who listens). */
        struct stat sb;
        if (stat(path, &sb) == 0 && sb.st_uid == geteuid() && (sb.st_mode & 0777) != mode) {
            (void)chmod(path, mode);
        }
    }
    return QB_OK;
}
