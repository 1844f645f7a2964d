/* jitter: three physical sources of run-to-run jitter on this machine, measured from user
 * space, for sizing the simulator's jitter terms.
 *
 *  a. CPU time stolen from a running thread (the timer tick, other interrupts, and in a
 *     VM the host): one thread pinned to each CPU in turn spins for --spin-s seconds
 *     (default 2) reading the TSC (calibrated against CLOCK_MONOTONIC) and records every
 *     gap between two reads longer than --gap-ns (default 1000). After each gap,
 *     getrusage(RUSAGE_THREAD) tells whether the thread was switched out (a "sched" gap:
 *     another task ran) or not (an interrupt, or in a VM the host). Prints the gaps' rate,
 *     stolen fraction, median/p90/p99/max, for both kinds; the periodic rate of the
 *     non-sched gaps (phase test at 100/250/300/1000 Hz), the duration of the in-phase
 *     ("periodic") gaps and the rate and duration of the others ("aperiodic"); and the
 *     /proc/interrupts and /proc/stat steal deltas of that CPU over the spin.
 *  b. Wake-up latency through a futex: thread A stamps CLOCK_MONOTONIC and wakes thread B,
 *     which was asleep in FUTEX_WAIT; B reads the clock when it runs. Cases: A on CPU0,
 *     B on CPU1 idle, A pausing 100 us or 1 ms between wake-ups (how long the target CPU
 *     has been idle); B on CPU1 shared with a spinning thread (busy target); A and B both
 *     on CPU0 (A blocks right after the wake). --samples wake-ups per case (default 3000,
 *     each case capped at 5 s). Prints median/p90/p99/max and a lognormal fit.
 *  c. Per-4KiB-page cost variation: an anonymous --mb MB region (default 256, 8x this
 *     machine's 32 MiB L3; MADV_HUGEPAGE asked before it is written once in full, so that
 *     no fault is timed and TLB misses stay as rare as on the kernel's direct map;
 *     c.anon_huge_kb says how much THP was granted) visited page by page in a random
 *     permutation; each page's operation is timed alone with fenced rdtsc: memset 4 KiB
 *     (clear_page), memcpy 4 KiB from it into a hot buffer (copy), one-byte read. For
 *     contrast, memset of one hot 4 KiB buffer. Prints median, mean, CV (std/mean), CV of
 *     the samples at or below p99, p10/p90/p99/max and the lognormal sigma (std of ln,
 *     and a robust one from p10/p90).
 *
 * No root, no settings changed, no cgroups; sets only its own threads' CPU affinity.
 * Needs at least 2 CPUs for b (cross-CPU cases are skipped otherwise). About 15 s.
 *
 * Build: gcc -std=c11 -O2 -pthread -o jitter jitter.c
 * Run:   ./jitter [--spin-s S] [--gap-ns N] [--samples N] [--mb MB] [--only abc]
 * Prints one "name value unit" line per figure (lines starting with # are comments).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

static double spin_s = 2.0, gap_ns = 1000.0;
static int n_samples = 3000;
static size_t region_mb = 256;
static const char *only = "abc";
static const char *dump;          /* --dump FILE: every gap of a. as "cpu start_us len_us sw" */

/* ------------------------------------------------------------------ clocks */
static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static double ns_per_tick = 1.0;
#ifdef HAVE_TSC
static inline uint64_t ticks(void) { return __rdtsc(); }
/* Fenced reads for timing a short operation (start / end). */
static inline uint64_t tstart(void) { _mm_mfence(); _mm_lfence(); uint64_t t = __rdtsc(); _mm_lfence(); return t; }
static inline uint64_t tend(void) { unsigned a; _mm_mfence(); uint64_t t = __rdtscp(&a); _mm_lfence(); return t; }
static void calibrate(void) {
    uint64_t n0 = mono_ns(), t0 = ticks();
    struct timespec d = {0, 100000000};
    nanosleep(&d, NULL);
    uint64_t n1 = mono_ns(), t1 = ticks();
    ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
}
#else
static inline uint64_t ticks(void) { return mono_ns(); }
static inline uint64_t tstart(void) { atomic_thread_fence(memory_order_seq_cst); return mono_ns(); }
static inline uint64_t tend(void) { atomic_thread_fence(memory_order_seq_cst); return mono_ns(); }
static void calibrate(void) { ns_per_tick = 1.0; }
#endif

/* ------------------------------------------------------------------ statistics */
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/* Nearest-rank percentile of a sorted array. */
static double pct(const double *s, size_t n, double p) {
    if (!n) return NAN;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return s[k - 1];
}
static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set))
        fprintf(stderr, "# could not pin to CPU %d\n", cpu);
}
static void out(const char *name, double v, const char *unit) { printf("%s %.6g %s\n", name, v, unit); }
static void outf(const char *pre, const char *name, double v, const char *unit) {
    printf("%s.%s %.6g %s\n", pre, name, v, unit);
}

/* Median, percentiles and a lognormal fit of n positive samples (sorted in place). */
static void summary(const char *pre, double *x, size_t n, const char *unit, int full) {
    qsort(x, n, sizeof *x, cmp_d);
    double sum = 0, sum2 = 0, sl = 0, sl2 = 0, sum99 = 0, sum299 = 0;
    size_t n99 = 0, nl = 0;
    double p99 = pct(x, n, 99);
    for (size_t i = 0; i < n; i++) {
        sum += x[i]; sum2 += x[i] * x[i];
        if (x[i] > 0) { double l = log(x[i]); sl += l; sl2 += l * l; nl++; }
        if (x[i] <= p99) { sum99 += x[i]; sum299 += x[i] * x[i]; n99++; }
    }
    double mean = sum / n, sd = sqrt(fmax(0, sum2 / n - mean * mean));
    double m99 = sum99 / n99, sd99 = sqrt(fmax(0, sum299 / n99 - m99 * m99));
    double mul = nl ? sl / nl : NAN, sigl = nl ? sqrt(fmax(0, sl2 / nl - mul * mul)) : NAN;
    outf(pre, "n", (double)n, "samples");
    outf(pre, "median", pct(x, n, 50), unit);
    if (full) {
        outf(pre, "mean", mean, unit);
        outf(pre, "cv", sd / mean, "ratio");
        outf(pre, "cv_le_p99", sd99 / m99, "ratio");
        outf(pre, "p10", pct(x, n, 10), unit);
    }
    outf(pre, "p90", pct(x, n, 90), unit);
    outf(pre, "p99", pct(x, n, 99), unit);
    outf(pre, "p999", pct(x, n, 99.9), unit);
    outf(pre, "max", x[n - 1], unit);
    outf(pre, "lognorm_median", exp(mul), unit);
    outf(pre, "lognorm_sigma", sigl, "ln");
    double p10 = pct(x, n, 10), p90 = pct(x, n, 90);
    if (p10 > 0) outf(pre, "lognorm_sigma_p10p90", (log(p90) - log(p10)) / (2 * 1.2815516), "ln");
}

/* ------------------------------------------------------------------ a. stolen time */
#define MAXIRQ 96
struct irqrow { char name[32]; unsigned long long c[8]; };
static int read_irqs(struct irqrow *r, int max, int ncpu) {
    FILE *f = fopen("/proc/interrupts", "r");
    if (!f) return 0;
    char line[1024];
    int n = 0;
    if (!fgets(line, sizeof line, f)) { fclose(f); return 0; }
    while (n < max && fgets(line, sizeof line, f)) {
        char *p = line, *colon = strchr(line, ':');
        if (!colon) continue;
        while (*p == ' ') p++;
        size_t l = (size_t)(colon - p);
        if (l >= sizeof r[n].name) l = sizeof r[n].name - 1;
        memcpy(r[n].name, p, l); r[n].name[l] = 0;
        p = colon + 1;
        for (int c = 0; c < ncpu && c < 8; c++) r[n].c[c] = strtoull(p, &p, 10);
        n++;
    }
    fclose(f);
    return n;
}
static long long steal_ticks(int cpu) {     /* /proc/stat steal, USER_HZ units */
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512], want[16];
    snprintf(want, sizeof want, "cpu%d ", cpu);
    long long v[8] = {0};
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, want, strlen(want))) {
            sscanf(line + strlen(want), "%lld %lld %lld %lld %lld %lld %lld %lld",
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
            break;
        }
    fclose(f);
    return v[7];
}

struct gap { uint64_t at, len; int sw; };
static void stolen_time(int cpu, int ncpu) {
    pin(cpu);
    size_t cap = 1 << 20, ng = 0;
    struct gap *g = malloc(cap * sizeof *g);
    uint64_t thr = (uint64_t)(gap_ns / ns_per_tick);
    static struct irqrow r0[MAXIRQ], r1[MAXIRQ];
    int nr0 = read_irqs(r0, MAXIRQ, ncpu);
    long long st0 = steal_ticks(cpu);
    uint64_t dur = (uint64_t)(spin_s * 1e9 / ns_per_tick), iters = 0, mind = UINT64_MAX;
    /* After each gap, getrusage(RUSAGE_THREAD) says whether this thread was switched out
     * (another task of this machine ran: a scheduler gap, not an interrupt); the call's own
     * time is taken out of the spin. */
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    long csw = ru.ru_nvcsw + ru.ru_nivcsw;
    uint64_t excl = 0;
    uint64_t start = ticks(), prev = start, end = start + dur;
    while (prev < end) {
        uint64_t t = ticks(), d = t - prev;
        if (d > thr) {
            getrusage(RUSAGE_THREAD, &ru);
            long c = ru.ru_nvcsw + ru.ru_nivcsw;
            if (ng < cap) { g[ng].at = prev - start; g[ng].len = d; g[ng].sw = c != csw; ng++; }
            csw = c;
            uint64_t t2 = ticks();
            excl += t2 - t;
            t = t2;
        } else if (d < mind) mind = d;
        prev = t;
        iters++;
    }
    double total_ns = (double)(prev - start - excl) * ns_per_tick;
    int nr1 = read_irqs(r1, MAXIRQ, ncpu);
    long long st1 = steal_ticks(cpu);
    char pre[32];
    snprintf(pre, sizeof pre, "a.cpu%d", cpu);
    outf(pre, "spin", total_ns / 1e9, "s");
    outf(pre, "loop_min", mind * ns_per_tick, "ns");
    outf(pre, "loop_mean", total_ns / iters, "ns");
    if (dump) {
        FILE *df = fopen(dump, cpu ? "a" : "w");
        if (df) {
            for (size_t i = 0; i < ng; i++)
                fprintf(df, "%d %.3f %.3f %d\n", cpu, g[i].at * ns_per_tick / 1e3, g[i].len * ns_per_tick / 1e3, g[i].sw);
            fclose(df);
        }
    }
    outf(pre, "gaps", (double)ng, "count");
    outf(pre, "gap_rate", ng / (total_ns / 1e9), "per_s");
    double stolen = 0, st_sw = 0;
    size_t nsw = 0;
    double *len = malloc((ng + 1) * sizeof *len);
    for (size_t i = 0; i < ng; i++) {
        len[i] = g[i].len * ns_per_tick / 1000.0;
        stolen += len[i];
        if (g[i].sw) { st_sw += len[i]; nsw++; }
    }
    outf(pre, "stolen_fraction", stolen * 1000.0 / total_ns, "ratio");
    /* Gaps in which this thread was switched out: other tasks of this machine ran. */
    outf(pre, "sched_gap_rate", nsw / (total_ns / 1e9), "per_s");
    outf(pre, "sched_stolen_fraction", st_sw * 1000.0 / total_ns, "ratio");
    /* The rest: interrupts (and, in a VM, the host running something else). */
    size_t ni = 0;
    double *il = malloc((ng + 1) * sizeof *il), *ia = malloc((ng + 1) * sizeof *ia);
    for (size_t i = 0; i < ng; i++) if (!g[i].sw) { il[ni] = len[i]; ia[ni] = g[i].at * ns_per_tick; ni++; }
    outf(pre, "irq_gap_rate", ni / (total_ns / 1e9), "per_s");
    outf(pre, "irq_stolen_fraction", (stolen - st_sw) * 1000.0 / total_ns, "ratio");
    char p2[64];
    if (ni) {
        double *tmp = malloc(ni * sizeof *tmp);
        memcpy(tmp, il, ni * sizeof *tmp);
        snprintf(p2, sizeof p2, "%s.irq_gap", pre);
        summary(p2, tmp, ni, "us", 0);
        free(tmp);
    }
    /* Which tick rate do the interrupt gaps follow? For each candidate HZ, find the phase
     * (mod 1/HZ) holding the most gap starts within +-50 us, and count the gaps there above
     * what a random phase would hold; coverage = those gaps per period. A tick at rate R
     * shows the same coverage at every candidate whose period is a multiple of 1/R, and a
     * smaller one at faster candidates, so the inferred rate is the highest candidate whose
     * coverage is at least 0.8 of the best. In a VM the host's own tick (a VM exit each
     * host jiffy) is such a periodic source too; /proc/interrupts LOC is the guest's. */
    static const int cand[] = {100, 250, 300, 1000};
    double covs[4] = {0}, phs[4] = {0}, maxcov = 0;
    for (int ci = 0; ci < 4 && ni > 10; ci++) {
        double period = 1e9 / cand[ci];
        enum { PB = 2000 };
        static unsigned ph[PB];
        memset(ph, 0, sizeof ph);
        for (size_t i = 0; i < ni; i++) ph[(int)(fmod(ia[i], period) / period * PB) % PB]++;
        int w = (int)ceil(50000.0 / (period / PB));
        unsigned best = 0; int pb = 0;
        for (int b = 0; b < PB; b++) {
            unsigned c = 0;
            for (int j = -w; j <= w; j++) c += ph[(b + j + PB) % PB];
            if (c > best) { best = c; pb = b; }
        }
        double chance = ni * (2.0 * w + 1) / PB;
        covs[ci] = (best - chance) / (total_ns / period);
        phs[ci] = pb * period / PB;
        if (covs[ci] > maxcov) maxcov = covs[ci];
        snprintf(p2, sizeof p2, "%s.hz%d", pre, cand[ci]);
        outf(p2, "coverage", covs[ci], "ratio");
    }
    int best_hz = 0;
    double best_phase = 0;
    for (int ci = 0; ci < 4; ci++)
        if (maxcov > 0.05 && covs[ci] >= 0.8 * maxcov) { best_hz = cand[ci]; best_phase = phs[ci]; }
    if (best_hz) {
        double period = 1e9 / best_hz;
        outf(pre, "periodic_hz_inferred", best_hz, "Hz");
        double *tk = malloc(ni * sizeof *tk), *ot = malloc(ni * sizeof *ot);
        size_t ntk = 0, not_ = 0;
        double so = 0;
        for (size_t i = 0; i < ni; i++) {
            double d = fabs(fmod(ia[i], period) - best_phase);
            if (d > period / 2) d = period - d;
            if (d <= 50000.0) tk[ntk++] = il[i]; else { ot[not_++] = il[i]; so += il[i]; }
        }
        outf(pre, "periodic_gaps_per_period", ntk / (total_ns / period), "ratio");
        if (ntk) { snprintf(p2, sizeof p2, "%s.periodic", pre); summary(p2, tk, ntk, "us", 0); }
        outf(pre, "aperiodic_rate", not_ / (total_ns / 1e9), "per_s");
        outf(pre, "aperiodic_stolen_fraction", so * 1000.0 / total_ns, "ratio");
        if (not_) { snprintf(p2, sizeof p2, "%s.aperiodic", pre); summary(p2, ot, not_, "us", 0); }
        free(tk); free(ot);
    }
    free(il); free(ia);
    for (int i = 0; i < nr0 && i < nr1; i++)
        if (!strcmp(r0[i].name, r1[i].name) && cpu < 8 && r1[i].c[cpu] > r0[i].c[cpu]) {
            snprintf(p2, sizeof p2, "%s.irq_%.20s", pre, r1[i].name);
            outf(p2, "rate", (r1[i].c[cpu] - r0[i].c[cpu]) / (total_ns / 1e9), "per_s");
        }
    if (st0 >= 0) outf(pre, "steal_proc_stat", (double)(st1 - st0) / sysconf(_SC_CLK_TCK) / (total_ns / 1e9), "ratio");
    free(len); free(g);
}

/* ------------------------------------------------------------------ b. wake-up latency */
static long futex(atomic_uint *a, int op, unsigned v) {
    return syscall(SYS_futex, a, op, v, NULL, NULL, 0);
}
struct wake {
    atomic_uint seq, ack, stop;
    _Atomic uint64_t stamp;
    int a_cpu, b_cpu, same, n;
    long pause_ns;
    double *lat;
};
static void *waiter(void *arg) {
    struct wake *w = arg;
    pin(w->b_cpu);
    unsigned last = 0;
    for (;;) {
        unsigned s;
        while ((s = atomic_load(&w->seq)) == last && !atomic_load(&w->stop))
            futex(&w->seq, FUTEX_WAIT_PRIVATE, last);
        uint64_t t = mono_ns();
        if (atomic_load(&w->stop)) break;
        last = s;
        if (s <= (unsigned)w->n) w->lat[s - 1] = (t - atomic_load(&w->stamp)) / 1000.0;
        atomic_store(&w->ack, s);
        if (w->same) futex(&w->ack, FUTEX_WAKE_PRIVATE, 1);
    }
    return NULL;
}
static atomic_int hog_stop;
static void *hog(void *arg) {
    pin(*(int *)arg);
    volatile uint64_t x = 0;
    while (!atomic_load_explicit(&hog_stop, memory_order_relaxed)) x++;
    return NULL;
}
static void wake_case(const char *name, int a_cpu, int b_cpu, long pause_ns, int busy) {
    struct wake w;
    memset(&w, 0, sizeof w);
    w.a_cpu = a_cpu; w.b_cpu = b_cpu; w.same = a_cpu == b_cpu; w.n = n_samples; w.pause_ns = pause_ns;
    w.lat = calloc(n_samples, sizeof *w.lat);
    pthread_t th, hg;
    atomic_store(&hog_stop, 0);
    if (busy) pthread_create(&hg, NULL, hog, &b_cpu);
    pin(a_cpu);
    pthread_create(&th, NULL, waiter, &w);
    struct timespec d = {0, 20000000};
    nanosleep(&d, NULL);
    uint64_t t_end = mono_ns() + 5000000000ull;
    unsigned rs = 12345;
    int i;
    for (i = 1; i <= n_samples && mono_ns() < t_end; i++) {
        if (!w.same) {    /* let B fall asleep and its CPU go idle: pause +- 25% */
            rs = rs * 1103515245u + 12345u;
            long p = pause_ns * 3 / 4 + (long)((rs >> 8) % (unsigned)(pause_ns / 2 + 1));
            struct timespec ps = {0, p};
            nanosleep(&ps, NULL);
        }
        atomic_store(&w.stamp, mono_ns());
        atomic_store(&w.seq, (unsigned)i);
        futex(&w.seq, FUTEX_WAKE_PRIVATE, 1);
        if (w.same) {
            unsigned a;
            while ((a = atomic_load(&w.ack)) != (unsigned)i) futex(&w.ack, FUTEX_WAIT_PRIVATE, a);
        } else {
            uint64_t lim = mono_ns() + 100000000ull;
            while (atomic_load(&w.ack) != (unsigned)i && mono_ns() < lim) sched_yield();
        }
    }
    int got = i - 1;
    atomic_store(&w.stop, 1);
    atomic_fetch_add(&w.seq, 1000000);
    futex(&w.seq, FUTEX_WAKE_PRIVATE, 1);
    pthread_join(th, NULL);
    if (busy) { atomic_store(&hog_stop, 1); pthread_join(hg, NULL); }
    size_t n = 0;
    for (int k = 0; k < got; k++) if (w.lat[k] > 0) w.lat[n++] = w.lat[k];
    char pre[64];
    snprintf(pre, sizeof pre, "b.%s", name);
    if (n) summary(pre, w.lat, n, "us", 0);
    free(w.lat);
}

/* ------------------------------------------------------------------ c. per-page cost */
static void page_case(const char *name, int op, char *reg, size_t npages, const uint32_t *perm,
                      char *hot) {
    double *x = malloc(npages * sizeof *x);
    volatile unsigned sink = 0;
    for (size_t i = 0; i < npages; i++) {
        char *p = reg + (size_t)perm[i] * 4096;
        uint64_t t0, t1;
        switch (op) {
        case 0: t0 = tstart(); memset(p, (int)i, 4096); t1 = tend(); break;
        case 1: t0 = tstart(); memcpy(hot, p, 4096); t1 = tend(); break;
        case 2: t0 = tstart(); sink += *(volatile char *)(p + ((i * 64) & 4095)); t1 = tend(); break;
        default: t0 = tstart(); memset(hot, (int)i, 4096); t1 = tend(); break;
        }
        x[i] = (t1 - t0) * ns_per_tick;
    }
    (void)sink;
    char pre[64];
    snprintf(pre, sizeof pre, "c.%s", name);
    summary(pre, x, npages, "ns", 1);
    free(x);
}
static void page_cost(void) {
    size_t sz = region_mb << 20, np = sz >> 12;
    /* 2 MiB-aligned, MADV_HUGEPAGE before the first touch (THP "madvise" mode), then
     * MAP_POPULATE's job done by hand: every page present and written before timing. */
    char *raw = mmap(NULL, sz + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) { perror("mmap"); return; }
    char *reg = (char *)(((uintptr_t)raw + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1));
    madvise(reg, sz, MADV_HUGEPAGE);
    memset(reg, 1, sz);
    static char hot[4096] __attribute__((aligned(4096)));
    memset(hot, 0, sizeof hot);
    uint32_t *perm = malloc(np * sizeof *perm);
    for (size_t i = 0; i < np; i++) perm[i] = (uint32_t)i;
    uint64_t s = 88172645463325252ull;
    for (size_t i = np - 1; i > 0; i--) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t j = s % (i + 1);
        uint32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    /* timer overhead: an empty fenced interval */
    double *e = malloc(20000 * sizeof *e);
    for (int i = 0; i < 20000; i++) { uint64_t t0 = tstart(), t1 = tend(); e[i] = (t1 - t0) * ns_per_tick; }
    qsort(e, 20000, sizeof *e, cmp_d);
    out("c.timer_overhead_median", pct(e, 20000, 50), "ns");
    free(e);
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "AnonHugePages:", 14)) out("c.anon_huge_kb", atof(line + 14), "kB");
        fclose(f);
    }
    out("c.region", (double)region_mb, "MB");
    page_case("cold_clear", 0, reg, np, perm, hot);
    page_case("cold_copy", 1, reg, np, perm, hot);
    page_case("cold_read1", 2, reg, np, perm, hot);
    page_case("hot_clear", 3, reg, np, perm, hot);
    free(perm);
    munmap(raw, sz + (2u << 20));
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--spin-s")) spin_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--gap-ns")) gap_ns = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--samples")) n_samples = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mb")) region_mb = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
        else if (!strcmp(argv[i], "--dump")) dump = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    calibrate();
    out("ncpu", ncpu, "cpus");
    out("ns_per_tick", ns_per_tick, "ns");
    out("gap_threshold", gap_ns, "ns");
    if (strchr(only, 'a'))
        for (int c = 0; c < ncpu && c < 8; c++) stolen_time(c, ncpu);
    if (strchr(only, 'b')) {
        if (ncpu >= 2) {
            wake_case("cross_idle_100us", 0, 1, 100000, 0);
            wake_case("cross_idle_1ms", 0, 1, 1000000, 0);
            wake_case("cross_busy_1ms", 0, 1, 1000000, 1);
        }
        wake_case("same_cpu", 0, 0, 0, 0);
    }
    if (strchr(only, 'c')) { pin(0); page_cost(); }
    return 0;
}
