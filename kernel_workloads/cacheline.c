/*
 * cacheline.c - what an atomic read-modify-write on a shared cache line costs on this
 * machine, for the lock-word costs of the model (mmap_lock's count, the per-VMA lock
 * refcount, lru_lock, memcg counters): the line's own cost, and the cost of moving it
 * between two CPUs.
 *
 * Every figure is a loop of about 0.25 s (--seconds) timed with
 * clock_gettime(CLOCK_MONOTONIC), repeated 5 times; two-thread figures pin one thread to
 * each of the first two CPUs this process may run on (sched_setaffinity). Lines are
 * 128-byte aligned, so no figure shares a line (or its adjacent-line-prefetch buddy) with
 * another variable.
 *   xadd_own          lock xadd on a line only this CPU touches (1 thread), ns per op
 *   cmpxchg_pair_own  spinlock acquire (lock cmpxchg 0->1) + release (store 0) on a private
 *                     line (1 thread): the uncontended spin_lock/spin_unlock pair
 *   xadd_private2     2 threads, each lock xadd on its own line (control: should equal
 *                     xadd_own; a difference is the VM or the host, not the line)
 *   xadd_shared2      2 threads lock xadd the same line back to back: ns per op per thread;
 *                     the line's time per op (window / all ops: the line does one op at a
 *                     time); that minus xadd_own (the transfer share per op, small because
 *                     a CPU does several ops each time it holds the line); and the line's
 *                     time per handover. A handover is counted when a thread's xadd returns
 *                     a value the other thread wrote (the line left and came back).
 *   xadd_spaced2      the kernel's pattern: one lock xadd, then about 0.5 us of work that
 *                     depends on its result, on private lines and then on one shared line;
 *                     the difference per iteration is the cost of an xadd that finds the
 *                     line on the other CPU (the fraction that did is printed)
 *   pingpong_store    two threads alternately wait (plain loads) for their value and store
 *                     the next one; window / number of stores = one-way handover latency
 *                     (a read miss, then a write upgrade): a lock word handed over
 *   pingpong_cas      the same, spinning with lock cmpxchg (the Chips and Cheese /
 *                     AnandTech "core-to-core latency" method): one-way latency. Both
 *                     ping-pongs also print *_chunkmed: the median over chunks of 2048
 *                     handovers of the time per handover, which leaves out the chunks in
 *                     which another task took one of the two CPUs
 *   spinlock2         2 threads take and release one test-and-test-and-set spinlock (lock
 *                     cmpxchg acquire, pause while waiting, store release, a counter on the
 *                     lock's line): ns per acquisition, ns per change of owner
 *
 * Output: one line per figure, "name value_ns" first (median of the 5 runs), then min=,
 * max=, ivcsw= (involuntary context switches of the measuring threads over the 5 runs: not
 * 0 means another task took the CPU during the loop, and the figure includes that) and a
 * label after "#", e.g.
 *   pingpong_cas_oneway_ns 28.52 min=28.47 max=28.69 ivcsw=0 # one-way handover, ...
 * Comment lines start with "#": CPUs used, load, steal time, handovers per op, and a short
 * CAS ping-pong at the start and at the end of the run. In a VM the two virtual CPUs may
 * sit on cores that share an L3 or not, and the hypervisor may move them: the figures hold
 * for the placement of that run only, and the two placement checks show whether it moved.
 * Takes about 12 s. Changes no system setting, needs no privilege; with one CPU allowed,
 * the two-CPU figures are skipped.
 *
 * Written for this project (faultsim). Build: cc -O2 -pthread -o cacheline cacheline.c
 * Run: ./cacheline  [--seconds S]   (S = loop length, default 0.25)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define REPS 5
#define CHUNK 1024      /* ops between clock / stop-flag checks */
#define SPACE_ITERS 300 /* dependent multiply-adds after each xadd in xadd_spaced2 */

struct line {
    _Alignas(128) _Atomic long v;
    long data[15];
};

static struct line own[2], shared_line, lockline;
static _Alignas(128) _Atomic int stop_flag;
static _Alignas(128) _Atomic int ready;
static double loop_s = 0.25;
static int cpus[2];
static volatile unsigned long sink; /* keeps the results of the loops alive */

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static long ivcsw(void) { /* involuntary context switches of the calling thread */
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nivcsw;
}

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s)) { perror("sched_setaffinity"); exit(1); }
}

static long steal_ticks(void) { /* system-wide steal time, USER_HZ ticks */
    long f[8] = {0};
    FILE *fp = fopen("/proc/stat", "r");
    if (!fp) return -1;
    int n = fscanf(fp, "cpu %ld %ld %ld %ld %ld %ld %ld %ld", &f[0], &f[1], &f[2], &f[3], &f[4],
                   &f[5], &f[6], &f[7]);
    fclose(fp);
    return n == 8 ? f[7] : -1;
}

struct worker {
    int id, cpu;
    _Atomic long *line;
    double t0, t1;
    long ops, switches, ivcsw;
};

/* Both threads leave together. */
static void barrier2(void) {
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&ready) < 2) ;
}

/* Called every CHUNK ops: thread 0 keeps the time and raises the stop flag. */
static int should_stop(struct worker *w, double deadline) {
    if (w->id == 0 && now_ns() >= deadline) atomic_store(&stop_flag, 1);
    return atomic_load_explicit(&stop_flag, memory_order_relaxed);
}

/* ---------------- the loops ---------------- */

static void lock_acquire(_Atomic long *l) {
    for (;;) {
        long exp = 0;
        if (atomic_compare_exchange_weak_explicit(l, &exp, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        while (atomic_load_explicit(l, memory_order_relaxed)) __builtin_ia32_pause();
    }
}

static void lock_release(_Atomic long *l) { atomic_store_explicit(l, 0, memory_order_release); }

/* lock xadd back to back. A switch is counted when the value returned is not one more
 * than the previous: the other thread added in between, so the line went there and back. */
static void *hammer(void *arg) {
    struct worker *w = arg;
    unsigned long s = 0;
    long ops = 0, sw = 0, prev = -2;
    pin(w->cpu);
    long c0 = ivcsw();
    barrier2();
    w->t0 = now_ns();
    double deadline = w->t0 + loop_s * 1e9;
    do {
        for (int i = 0; i < CHUNK; i++) {
            long v = atomic_fetch_add_explicit(w->line, 1, memory_order_relaxed);
            sw += (v != prev + 1);
            prev = v;
            s += v;
        }
        ops += CHUNK;
    } while (!should_stop(w, deadline));
    w->t1 = now_ns();
    w->ops = ops;
    w->switches = sw;
    w->ivcsw = ivcsw() - c0;
    sink += s;
    return NULL;
}

/* Spinlock acquire + release pairs; owner changes counted on the lock's line. */
static void *locker(void *arg) {
    struct worker *w = arg;
    _Atomic long *l = w->line;
    struct line *ln = (struct line *)l;
    long ops = 0, sw = 0;
    pin(w->cpu);
    long c0 = ivcsw();
    barrier2();
    w->t0 = now_ns();
    double deadline = w->t0 + loop_s * 1e9;
    do {
        for (int i = 0; i < CHUNK; i++) {
            lock_acquire(l);
            ln->data[0]++; /* the protected data */
            if (ln->data[1] != w->id) { sw++; ln->data[1] = w->id; }
            lock_release(l);
        }
        ops += CHUNK;
    } while (!should_stop(w, deadline));
    w->t1 = now_ns();
    w->ops = ops;
    w->switches = sw;
    w->ivcsw = ivcsw() - c0;
    return NULL;
}

/* One lock xadd, then SPACE_ITERS dependent multiply-adds on its result; the next add's
 * increment (1 or 2) depends on that work, so nothing overlaps the xadd. A handover is
 * counted when the value returned is not the one this thread left. */
static void *spaced(void *arg) {
    struct worker *w = arg;
    unsigned long x = 12345;
    long ops = 0, sw = 0, expect = -1;
    pin(w->cpu);
    long c0 = ivcsw();
    barrier2();
    w->t0 = now_ns();
    double deadline = w->t0 + loop_s * 1e9;
    do {
        for (int i = 0; i < CHUNK / 16; i++) {
            long inc = 1 + (long)(x >> 63);
            long v = atomic_fetch_add_explicit(w->line, inc, memory_order_relaxed);
            sw += (v != expect);
            expect = v + inc;
            x ^= (unsigned long)v;
            for (int k = 0; k < SPACE_ITERS; k++)
                x = x * 6364136223846793005UL + 1442695040888963407UL;
        }
        ops += CHUNK / 16;
    } while (!should_stop(w, deadline));
    w->t1 = now_ns();
    w->ops = ops;
    w->switches = sw;
    w->ivcsw = ivcsw() - c0;
    sink += x;
    return NULL;
}

/* Ping-pong: thread id waits for the values id, id+2, ... and stores value+1. With cas,
 * it spins with lock cmpxchg(want -> want+1) instead of loads. The waits also watch the
 * stop flag, so neither thread waits for a partner that has stopped; the number of
 * handovers is the final value of the line. */
static int pp_use_cas;
#define MAXCHUNKS 65536
static double chunk_ns[MAXCHUNKS]; /* thread 0's time per chunk of CHUNK waits */
static long nchunks;
static void *pingpong(void *arg) {
    struct worker *w = arg;
    _Atomic long *x = w->line;
    long want = w->id;
    int cas = pp_use_cas;
    pin(w->cpu);
    long c0 = ivcsw();
    barrier2();
    w->t0 = now_ns();
    double deadline = w->t0 + loop_s * 1e9, tc = w->t0;
    if (w->id == 0) nchunks = 0;
    do {
        for (int i = 0; i < CHUNK; i++, want += 2) {
            if (cas) {
                long exp = want;
                while (!atomic_compare_exchange_strong_explicit(x, &exp, want + 1,
                                                                memory_order_acq_rel,
                                                                memory_order_relaxed)) {
                    if (atomic_load_explicit(&stop_flag, memory_order_relaxed)) goto out;
                    exp = want;
                }
            } else {
                while (atomic_load_explicit(x, memory_order_acquire) != want)
                    if (atomic_load_explicit(&stop_flag, memory_order_relaxed)) goto out;
                atomic_store_explicit(x, want + 1, memory_order_release);
            }
        }
        if (w->id == 0 && nchunks < MAXCHUNKS) {
            double t = now_ns();
            chunk_ns[nchunks++] = t - tc;
            tc = t;
        }
    } while (!should_stop(w, deadline));
out:
    w->t1 = now_ns();
    w->ivcsw = ivcsw() - c0;
    return NULL;
}

/* Single thread (worker 0 only): xadd, or spinlock pairs, on a private line. */
static int single_mode;
static void *single(void *arg) {
    struct worker *w = arg;
    _Atomic long *l = w->line;
    struct line *ln = (struct line *)l;
    unsigned long s = 0;
    long ops = 0;
    pin(w->cpu);
    long c0 = ivcsw();
    w->t0 = now_ns();
    double deadline = w->t0 + loop_s * 1e9;
    do {
        if (single_mode == 0)
            for (int i = 0; i < CHUNK; i++) s += atomic_fetch_add_explicit(l, 1, memory_order_relaxed);
        else
            for (int i = 0; i < CHUNK; i++) { lock_acquire(l); ln->data[0]++; lock_release(l); }
        ops += CHUNK;
    } while (!should_stop(w, deadline));
    w->t1 = now_ns();
    w->ops = ops;
    w->ivcsw = ivcsw() - c0;
    sink += s;
    return NULL;
}

/* ---------------- running and reporting ---------------- */

static void run(int nthreads, void *(*fn)(void *), struct worker w[2], _Atomic long *l0,
                _Atomic long *l1) {
    pthread_t th[2];
    atomic_store(&ready, 0);
    atomic_store(&stop_flag, 0);
    atomic_store(l0, 0);
    atomic_store(l1, 0);
    ((struct line *)l0)->data[1] = -1;
    for (int i = 0; i < nthreads; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].cpu = cpus[i];
        w[i].line = i ? l1 : l0;
        if (pthread_create(&th[i], NULL, fn, &w[i])) { perror("pthread_create"); exit(1); }
    }
    for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
}

static double window(struct worker w[2]) { /* from the first start to the last stop */
    double a = w[0].t0 < w[1].t0 ? w[0].t0 : w[1].t0;
    double b = w[0].t1 > w[1].t1 ? w[0].t1 : w[1].t1;
    return b - a;
}

static double per_thread(struct worker w[2]) { /* mean over the 2 threads of ns per op */
    return 0.5 * ((w[0].t1 - w[0].t0) / w[0].ops + (w[1].t1 - w[1].t0) / w[1].ops);
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double v[REPS]) {
    double s[REPS];
    memcpy(s, v, sizeof s);
    qsort(s, REPS, sizeof s[0], cmpd);
    return s[REPS / 2];
}

static void report(const char *name, const double v[REPS], long csw, const char *label) {
    double s[REPS];
    memcpy(s, v, sizeof s);
    qsort(s, REPS, sizeof s[0], cmpd);
    printf("%s %.2f min=%.2f max=%.2f ivcsw=%ld # %s\n", name, s[REPS / 2], s[0], s[REPS - 1],
           csw, label);
    fflush(stdout);
}

/* One ping-pong run: returns window / handovers; *chunk_med gets the median over
 * thread 0's chunks of the time per handover (a chunk is 2 x CHUNK handovers), which
 * leaves out the chunks in which a thread was descheduled. */
static double pingpong_run(struct worker w[2], int cas, double *chunk_med) {
    pp_use_cas = cas;
    run(2, pingpong, w, &shared_line.v, &shared_line.v);
    if (chunk_med) {
        qsort(chunk_ns, nchunks, sizeof chunk_ns[0], cmpd);
        *chunk_med = nchunks ? chunk_ns[nchunks / 2] / (2.0 * CHUNK) : 0;
    }
    return window(w) / atomic_load(&shared_line.v);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) loop_s = atof(argv[++i]);
        else { fprintf(stderr, "usage: cacheline [--seconds S]\n"); return 2; }
    }
    if (loop_s <= 0 || loop_s > 1) { fprintf(stderr, "cacheline: --seconds in (0, 1]\n"); return 2; }
    alarm(120); /* watchdog: never spin forever (SIGALRM ends the process) */

    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed)) { perror("sched_getaffinity"); return 1; }
    int ncpu = 0;
    for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
        if (CPU_ISSET(c, &allowed)) cpus[ncpu++] = c;
    double la = 0;
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp) { if (fscanf(fp, "%lf", &la) != 1) la = 0; fclose(fp); }
    long steal0 = steal_ticks();
    double tstart = now_ns();
    printf("# cpus used: %d%s%d; loop %.2f s, %d runs each: median min max; loadavg(1 min) "
           "at start %.2f\n", cpus[0], ncpu > 1 ? "," : "", ncpu > 1 ? cpus[1] : -1, loop_s,
           REPS, la);

    struct worker w[2];
    double v[REPS], v2[REPS], v3[REPS], v4[REPS];
    long c1, c2;

    c1 = 0;
    for (int r = 0; r < REPS; r++) {
        single_mode = 0;
        run(1, single, w, &own[0].v, &own[1].v);
        v[r] = (w[0].t1 - w[0].t0) / w[0].ops;
        c1 += w[0].ivcsw;
    }
    report("xadd_own_ns", v, c1, "lock xadd, line only this CPU touches, ns per op");
    double own_med = median(v);
    c1 = 0;
    for (int r = 0; r < REPS; r++) {
        single_mode = 1;
        run(1, single, w, &own[0].v, &own[1].v);
        v[r] = (w[0].t1 - w[0].t0) / w[0].ops;
        c1 += w[0].ivcsw;
    }
    report("cmpxchg_pair_own_ns", v, c1,
           "spinlock acquire (lock cmpxchg) + release (store), private line, ns per pair");

    if (ncpu < 2) {
        printf("# only one CPU allowed: two-CPU figures skipped\n");
        return 0;
    }

    double pm0, place0 = pingpong_run(w, 1, &pm0);

    c1 = 0;
    for (int r = 0; r < REPS; r++) {
        run(2, hammer, w, &own[0].v, &own[1].v);
        v[r] = per_thread(w);
        c1 += w[0].ivcsw + w[1].ivcsw;
    }
    report("xadd_private2_ns", v, c1,
           "2 threads, lock xadd each on its own line, ns per op per thread (control)");

    long tot_ops = 0, tot_sw = 0;
    c1 = 0;
    for (int r = 0; r < REPS; r++) {
        run(2, hammer, w, &shared_line.v, &shared_line.v);
        double t = window(w);
        long ops = w[0].ops + w[1].ops, sw = w[0].switches + w[1].switches;
        v[r] = per_thread(w);
        v2[r] = t / ops;
        v3[r] = t / ops - own_med;
        v4[r] = sw ? t / sw : 0;
        tot_ops += ops;
        tot_sw += sw;
        c1 += w[0].ivcsw + w[1].ivcsw;
    }
    report("xadd_shared2_per_thread_ns", v, c1, "2 threads lock xadd one line, ns per op per thread");
    report("xadd_shared2_line_ns", v2, c1, "same, the line's time per op (window / all ops)");
    report("xadd_shared2_extra_ns", v3, c1,
           "same, line time per op minus xadd_own: transfer share per op");
    report("xadd_shared2_per_handover_ns", v4, c1,
           "same, line time per handover (window / handovers), ops included");
    printf("# xadd_shared2: %.2f ops per handover (all runs)\n", (double)tot_ops / (tot_sw ? tot_sw : 1));

    double fr[REPS];
    c1 = c2 = 0;
    for (int r = 0; r < REPS; r++) {
        run(2, spaced, w, &own[0].v, &own[1].v);
        v[r] = per_thread(w);
        c1 += w[0].ivcsw + w[1].ivcsw;
        run(2, spaced, w, &shared_line.v, &shared_line.v);
        v2[r] = per_thread(w);
        v3[r] = v2[r] - v[r];
        fr[r] = (double)(w[0].switches + w[1].switches) / (w[0].ops + w[1].ops);
        c2 += w[0].ivcsw + w[1].ivcsw;
    }
    report("xadd_spaced2_private_iter_ns", v, c1,
           "1 xadd + ~0.5 us dependent work per iteration, own lines, ns per iteration");
    report("xadd_spaced2_shared_iter_ns", v2, c2, "same on one shared line, ns per iteration");
    report("xadd_spaced2_extra_ns", v3, c1 + c2,
           "shared - private (paired runs): cost of an xadd that finds the line on the other CPU");
    printf("# xadd_spaced2: fraction of xadds that found the line moved: median %.3f\n", median(fr));

    for (int cas = 0; cas < 2; cas++) {
        c1 = 0;
        for (int r = 0; r < REPS; r++) {
            v[r] = pingpong_run(w, cas, &v2[r]);
            c1 += w[0].ivcsw + w[1].ivcsw;
        }
        if (cas) {
            report("pingpong_cas_oneway_ns", v, c1,
                   "one-way handover, spinning lock cmpxchg (core-to-core latency method)");
            report("pingpong_cas_chunkmed_ns", v2, c1,
                   "same, median over chunks of 2048 handovers (robust to preemption)");
        } else {
            report("pingpong_store_oneway_ns", v, c1,
                   "one-way handover, wait with loads + store (a lock word handed over)");
            report("pingpong_store_chunkmed_ns", v2, c1,
                   "same, median over chunks of 2048 handovers (robust to preemption)");
        }
    }

    tot_ops = tot_sw = 0;
    c1 = 0;
    for (int r = 0; r < REPS; r++) {
        run(2, locker, w, &lockline.v, &lockline.v);
        double t = window(w);
        long ops = w[0].ops + w[1].ops, sw = w[0].switches + w[1].switches;
        v[r] = t / ops;
        v2[r] = sw ? t / sw : 0;
        tot_ops += ops;
        tot_sw += sw;
        c1 += w[0].ivcsw + w[1].ivcsw;
    }
    report("spinlock2_per_acquire_ns", v, c1,
           "2 CPUs, one TTAS spinlock (cmpxchg/pause/store), ns per acquisition");
    report("spinlock2_per_handover_ns", v2, c1, "same, ns per change of owner");
    printf("# spinlock2: %.2f acquisitions per change of owner (all runs)\n",
           (double)tot_ops / (tot_sw ? tot_sw : 1));

    double pm1, place1 = pingpong_run(w, 1, &pm1);
    long steal1 = steal_ticks();
    double el = (now_ns() - tstart) / 1e9;
    printf("# placement check, pingpong_cas one-way (window, chunk median): %.1f, %.1f ns at "
           "start; %.1f, %.1f ns at end (a change in the chunk median means the hypervisor "
           "moved a CPU during the run; a window far above it, that another task ran)\n",
           place0, pm0, place1, pm1);
    if (steal0 >= 0 && steal1 >= 0)
        printf("# steal time during the run: %.1f%% of %d CPUs x %.1f s\n",
               100.0 * (steal1 - steal0) / sysconf(_SC_CLK_TCK) / (ncpu * el), ncpu, el);
    return 0;
}
