/* map_cost: what does mapping a cached file cost per page, by folio size, on this kernel?
 *
 * Creates a sparse file (--file-mb, default 128) in --dir (default /tmp), drops its cache
 * and reads it once through an mmap, one byte per page in order, so that readahead fills
 * the cache as file_thrash's would: the read-around window in order-0 folios, then each
 * async window in folios two orders larger (kernel_workloads/folio_orders.c). Then, for
 * --rounds rounds and each region of --region-pages pages (default 2048, one 8 MB
 * read-ahead window), it maps --map-mb MB of the file from the region's first page
 * (default 16, file_thrash's mapping; a larger mapping made every fault slower here),
 * times touching every page of the region (the faults: fault-around, filemap_map_pages,
 * finish_fault), then the munmap (zap). Folio sizes come from /proc/self/pagemap and
 * /proc/kpageflags (root). One JSON line: for each region its folio size, minor faults per
 * round, ns per page touched, ns per page of the munmap. Changes no kernel setting; removes
 * its file. The file stays cached (nothing else runs), so every fault is minor.
 *
 * Build: cc -O2 -o map_cost map_cost.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "probe_common.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static long minflt(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Pages of the folio holding page i of the mapping at p (1 for order 0, 0 if unmapped). */
static size_t folio_pages(int pm, int kf, const char *p, size_t i, size_t n) {
    uint64_t e = 0, fl = 0;
    if (pread(pm, &e, 8, (off_t)(((uintptr_t)p / 4096 + i) * 8)) != 8 || !(e >> 63)) return 0;
    if (pread(kf, &fl, 8, (off_t)((e & ((1ULL << 55) - 1)) * 8)) != 8) return 0;
    if (!(fl & (1ULL << KPF_COMPOUND_HEAD)) && !(fl & (1ULL << KPF_COMPOUND_TAIL))) return 1;
    size_t head = i;                 /* walk back to the head, then forward to the end */
    while (head > 0) {
        if (pread(pm, &e, 8, (off_t)(((uintptr_t)p / 4096 + head) * 8)) != 8) return 0;
        if (pread(kf, &fl, 8, (off_t)((e & ((1ULL << 55) - 1)) * 8)) != 8) return 0;
        if (fl & (1ULL << KPF_COMPOUND_HEAD)) break;
        head--;
    }
    size_t end = head + 1;
    while (end < n) {
        if (pread(pm, &e, 8, (off_t)(((uintptr_t)p / 4096 + end) * 8)) != 8 || !(e >> 63)) break;
        if (pread(kf, &fl, 8, (off_t)((e & ((1ULL << 55) - 1)) * 8)) != 8) break;
        if (!(fl & (1ULL << KPF_COMPOUND_TAIL))) break;
        end++;
    }
    return end - head;
}

int main(int argc, char **argv) {
    const char *dir = "/tmp";
    long file_mb = 128, rounds = 200, region = 2048, map_mb = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--file-mb")) file_mb = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--region-pages")) region = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--map-mb")) map_mb = atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: map_cost [--dir D] [--file-mb N] [--rounds R] "
                            "[--region-pages P] [--map-mb M]\n");
            return 2;
        }
    }
    if (file_mb < 1 || rounds < 1 || region < 1 || map_mb < 1) {
        fprintf(stderr, "map_cost: --file-mb, --rounds, --region-pages and --map-mb must be "
                        ">= 1\n");
        return 2;
    }
    size_t sz = (size_t)file_mb << 20, n = sz / 4096;
    if ((size_t)region > n) region = (long)n;
    size_t nreg = n / (size_t)region;
    volatile const char *p;
    unsigned sum = 0;
    int pm, kf;
    int fd = read_fresh_sparse_file(dir, "map_cost", sz, &p, &sum);
    if (fd < 0 || open_page_flags(&pm, &kf) < 0) return 1;
    size_t *fp = calloc(nreg, sizeof *fp);
    double *touch = calloc(nreg, sizeof *touch), *unmap = calloc(nreg, sizeof *unmap);
    long *faults = calloc(nreg, sizeof *faults);
    for (size_t r = 0; r < nreg; r++)
        fp[r] = folio_pages(pm, kf, (const char *)p, r * region + region / 2, n);
    munmap((void *)p, sz);
    for (long k = 0; k < rounds; k++) {
        for (size_t r = 0; r < nreg; r++) {
            size_t off = r * region * 4096, len = (size_t)map_mb << 20;
            if (len < (size_t)region * 4096) len = (size_t)region * 4096;
            if (len > sz - off) len = sz - off;
            volatile const char *q = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
            if (q == MAP_FAILED) { perror("mmap"); return 1; }
            long f0 = minflt();
            double t0 = now_ns();
            for (size_t i = 0; i < (size_t)region; i++) sum += (unsigned char)q[i * 4096];
            double t1 = now_ns();
            faults[r] += minflt() - f0;
            munmap((void *)q, len);
            double t2 = now_ns();
            touch[r] += t1 - t0;
            unmap[r] += t2 - t1;
        }
    }
    printf("{\"file_mb\": %ld, \"map_mb\": %ld, \"rounds\": %ld, \"region_pages\": %ld, "
           "\"regions\": [", file_mb, map_mb, rounds, region);
    for (size_t r = 0; r < nreg; r++)
        printf("%s{\"first_page\": %zu, \"folio_pages\": %zu, \"faults_per_round\": %.2f, "
               "\"touch_ns_per_page\": %.1f, \"munmap_ns_per_page\": %.1f}", r ? ", " : "",
               r * region, fp[r], (double)faults[r] / rounds, touch[r] / rounds / region,
               unmap[r] / rounds / region);
    printf("], \"sum\": %u}\n", sum);
    return 0;
}
