/* fork_cost.c: what fork() costs the parent here, per VMA and per mapped PTE (issue 18).
 *
 * Not a workload: run by hand. The parent maps N one-page VMAs (holes between them, so
 * that none merge) of one kind, touches each page, then times fork() from the call to its
 * return in the parent (the child _exits at once; the parent then reaps it), R times, and
 * prints the median. The kinds:
 *   anon   private anonymous, written: dup_mmap copies its page table entries
 *          (copy_page_range: vma_needs_copy is true with an anon_vma) and anon_vma_fork;
 *   shared MAP_SHARED of a file, read: dup_mmap skips copy_page_range (no anon_vma);
 *   pte    one private anonymous VMA of N pages, all written: the per-PTE copy alone.
 * Every kind starts from the same small process, so the differences between N are the
 * per-VMA (or per-PTE) cost of dup_mmap on this kernel.
 *
 *   cc -O2 -o fork_cost fork_cost.c && ./fork_cost [--dir /tmp] [--reps 15]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096L

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int count_vmas(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    if (!f)
        return -1;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static double time_fork(int reps)
{
    double t[64];
    if (reps > 64)
        reps = 64;
    for (int r = 0; r < reps; r++) {
        double t0 = now_us();
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        t[r] = now_us() - t0;
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        waitpid(pid, NULL, 0);
    }
    qsort(t, reps, sizeof t[0], cmp);
    return t[reps / 2];
}

/* One row: map n VMAs (or one VMA of n pages) of `kind`, time fork, unmap. */
static void run(const char *kind, long n, int fd, int reps)
{
    int pte = strcmp(kind, "pte") == 0, shared = strcmp(kind, "shared") == 0;
    long span = pte ? n * PAGE : 2 * n * PAGE;
    if (n == 0) {                        /* the small process alone */
        printf("{\"kind\": \"%s\", \"n\": 0, \"vmas\": %d, \"fork_us\": %.1f}\n",
               kind, count_vmas(), time_fork(reps));
        return;
    }
    char *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap reserve");
        exit(1);
    }
    munmap(base, span);
    volatile char sink = 0;
    if (pte) {
        char *p = mmap(base, span, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            exit(1);
        }
        madvise(p, span, MADV_NOHUGEPAGE);   /* 4 KiB PTEs, as the model's anon heaps */
        for (long i = 0; i < n; i++)
            p[i * PAGE] = 1;
    } else {
        for (long i = 0; i < n; i++) {
            char *at = base + 2 * i * PAGE;
            char *p = shared
                ? mmap(at, PAGE, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, i * PAGE)
                : mmap(at, PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p == MAP_FAILED) {
                perror("mmap");
                exit(1);
            }
            if (shared)
                sink += p[0];
            else
                p[0] = 1;
        }
    }
    int vmas = count_vmas();
    double us = time_fork(reps);
    printf("{\"kind\": \"%s\", \"n\": %ld, \"vmas\": %d, \"fork_us\": %.1f}\n",
           kind, n, vmas, us);
    fflush(stdout);
    munmap(base, span);
    (void)sink;
}

int main(int argc, char **argv)
{
    const char *dir = "/tmp";
    int reps = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--dir D] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    static const long counts[] = {0, 1000, 2000, 4000, 8000};
    char path[4096];
    snprintf(path, sizeof path, "%s/fork_cost.XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, 8000 * PAGE) < 0) {
        perror("file");
        return 1;
    }
    unlink(path);
    for (int k = 0; k < 3; k++) {
        const char *kind = k == 0 ? "anon" : k == 1 ? "shared" : "pte";
        for (unsigned j = 0; j < sizeof counts / sizeof counts[0]; j++)
            run(kind, k == 2 ? counts[j] * 8 : counts[j], fd, reps);
    }
    return 0;
}
