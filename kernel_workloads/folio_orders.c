/* folio_orders: which folio sizes does this kernel put in the page cache of a file read
 * through mmap faults, as file_thrash reads it?
 *
 * Creates a sparse file (--file-mb, default 16) in --dir (default /tmp), drops its cache,
 * maps it read-only and shared, reads one byte per 4 KiB page in order, then looks up each
 * page's PFN in /proc/self/pagemap and its flags in /proc/kpageflags (needs root):
 * KPF_COMPOUND_HEAD (bit 15) starts a large folio, KPF_COMPOUND_TAIL (bit 16) continues it.
 * Prints one JSON line: pages, order-0 pages, large folios, and the size of each run of
 * equal-sized large folios with its first page. Changes no kernel setting; removes its file.
 *
 * Build: cc -O2 -o folio_orders folio_orders.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "probe_common.h"

int main(int argc, char **argv) {
    const char *dir = "/tmp";
    long file_mb = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--file-mb")) file_mb = atol(argv[i + 1]);
        else { fprintf(stderr, "usage: folio_orders [--dir D] [--file-mb N]\n"); return 2; }
    }
    if (file_mb < 1) { fprintf(stderr, "folio_orders: --file-mb must be >= 1\n"); return 2; }
    size_t sz = (size_t)file_mb << 20, n = sz / 4096;
    volatile const char *p;
    unsigned sum = 0;
    int pm, kf;
    if (read_fresh_sparse_file(dir, "folio_orders", sz, &p, &sum) < 0) return 1;
    if (open_page_flags(&pm, &kf) < 0) return 1;
    size_t small = 0, folios = 0, absent = 0, cur = 0, cur_start = 0;
    size_t run_size = 0, run_start = 0, run_count = 0;
    printf("{\"file_mb\": %ld, \"pages\": %zu, \"runs\": [", file_mb, n);
    int first = 1;
    /* cur: pages of the large folio being walked; a run groups consecutive folios of one size */
#define END_FOLIO() do { \
        if (cur) { \
            if (cur != run_size) { \
                if (run_count) { printf("%s{\"folio_pages\": %zu, \"first_page\": %zu, \"folios\": %zu}", \
                                        first ? "" : ", ", run_size, run_start, run_count); first = 0; } \
                run_size = cur; run_start = cur_start; run_count = 0; \
            } \
            run_count++; folios++; cur = 0; \
        } } while (0)
    for (size_t i = 0; i < n; i++) {
        uint64_t e = 0, fl = 0;
        if (pread(pm, &e, 8, (off_t)(((uintptr_t)p / 4096 + i) * 8)) != 8 || !(e >> 63)) {
            END_FOLIO(); absent++; continue;
        }
        if (pread(kf, &fl, 8, (off_t)((e & ((1ULL << 55) - 1)) * 8)) != 8) { perror("kpageflags"); return 1; }
        if (fl & (1ULL << KPF_COMPOUND_HEAD)) { END_FOLIO(); cur = 1; cur_start = i; }
        else if (fl & (1ULL << KPF_COMPOUND_TAIL)) cur++;
        else { END_FOLIO(); small++; }
    }
    END_FOLIO();
    if (run_count) printf("%s{\"folio_pages\": %zu, \"first_page\": %zu, \"folios\": %zu}",
                          first ? "" : ", ", run_size, run_start, run_count);
    printf("], \"order0_pages\": %zu, \"large_folios\": %zu, \"not_mapped\": %zu, \"sum\": %u}\n",
           small, folios, absent, sum);
    return 0;
}
