/*
 * file.h: the project's two small file-system mechanisms, each defined
 * once: replacing a file atomically (stats files, exsim's port and dump
 * files), and creating the directory of an ipc path (the broker's
 * /tmp/quotebus and /tmp/quotebus/private).
 *
 * Atomic means "a reader sees the old or the new content, never a part":
 * the bytes go to "<path>.tmp", which rename(2) then puts in place. There
 * is no fsync: these files are read by live observers (tests, monitoring)
 * and rewritten every second or so, and after a crash the next rewrite
 * replaces them; an fsync would put disk latency on the writer's thread
 * (an adapter's lws service thread). Stateless; any thread, but two
 * writers of the same path must not run at once (they share the .tmp).
 */
#ifndef QB_FILE_H
#define QB_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Replaces path with data[0..n): writes "<path>.tmp" (mode 0666 less the
 * umask, like fopen), then renames it over path. QB_OK; QB_ENOMEM; QB_EIO
 * with errno set (the temporary file is removed, path is untouched).
 * data is only read. */
int qb_file_write_atomic(const char *path, const void *data, size_t n);

/* mkdir -p of the directory part of file (everything before its last '/';
 * nothing to do without one). Missing parents are made 0755, the last
 * directory mode; an existing last directory owned by this user is
 * chmod'ed to mode when mode is not 0755 (a private directory stays
 * private), one owned by another user keeps its own. QB_OK; QB_EINVAL
 * (file longer than 511 bytes); QB_EIO with errno set. */
int qb_file_mkdir_parents(const char *file, mode_t mode);

#endif
