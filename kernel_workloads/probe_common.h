/*
 * What the two page-cache probes of this folder (folio_orders.c, map_cost.c) share: a fresh
 * sparse file read once through mmap faults, one byte per 4 KiB page in order, as
 * file_thrash reads it, so that readahead lays out its folios; and the files that say which
 * pages are parts of large folios (/proc/self/pagemap, /proc/kpageflags: root).
 */
#ifndef PROBE_COMMON_H
#define PROBE_COMMON_H

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16

/* Create <dir>/<tag>.<pid> (unlinked at once: gone when the process exits, whatever
 * happens), make it file_mb MB of holes, drop its cache, map it read-only and shared and
 * read every page. Returns the fd, or -1 after printing why; *map and *sum get the mapping
 * (sz bytes, still mapped) and the sum of the bytes read. */
static int read_fresh_sparse_file(const char *dir, const char *tag, size_t sz,
                                  volatile const char **map, unsigned *sum)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%d", dir, tag, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) { perror(path); return -1; }
    unlink(path);
    if (ftruncate(fd, (off_t)sz)) { perror("ftruncate"); return -1; }
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    volatile const char *p = mmap(NULL, sz, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return -1; }
    for (size_t i = 0; i < sz / 4096; i++) *sum += (unsigned char)p[i * 4096];
    *map = p;
    return fd;
}

/* Open /proc/self/pagemap and /proc/kpageflags; 0, or -1 after printing why. */
static int open_page_flags(int *pm, int *kf)
{
    *pm = open("/proc/self/pagemap", O_RDONLY);
    *kf = open("/proc/kpageflags", O_RDONLY);
    if (*pm < 0 || *kf < 0) { perror("/proc/self/pagemap or /proc/kpageflags (root?)"); return -1; }
    return 0;
}

#endif
