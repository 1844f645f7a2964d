/*
 * file_thrash.c - the mmap/read/munmap file-fault stress test of docs/model.md, Workloads.
 *
 * Reproduces the seed's stress test ("mm: reduce mmap_lock contention and improve page
 * fault performance", Kunwu Chan and Wang Lian): N threads of one process, each owning a
 * file, loop
 *     mmap(PROT_READ, MAP_SHARED) the whole file -> read one byte per 4 KiB page in
 *     order -> munmap
 * One loop is a round. Every fault on the file mapping goes through filemap_fault /
 * fault-around; every munmap takes mmap_lock for write, so readers and writers of one mm
 * contend the way the published test makes them contend (run it in a memcg with
 * memory.high / memory.max to get the reclaim-driven RETRY_IO_MISS regime).
 *
 * Files are sparse by default (created and ftruncate'd, so reads fault in zero-filled
 * holes, no device I/O), as in the published reproducer. --no-sparse writes real data once
 * at setup, fsyncs it and drops the file's own page cache (POSIX_FADV_DONTNEED), so the
 * first round reads from the device.
 *
 * Options: --open-close opens and closes the file each round (the reproducer's variant);
 * --noise starts one spinner per online CPU, pinned, that spins --noise-busy-us then sleeps
 * --noise-sleep-us (the ioretry_noise reproducer), SCHED_FIFO priority 1 if allowed so it
 * preempts the workers on its CPU as in the model, plain SCHED_OTHER otherwise.
 * --start-fd FD: block until one byte (or EOF) is read from FD before doing anything, so a
 * parent can move the process into a cgroup first.
 * --warmup-s W: the run lasts --duration-s in total; at W seconds it prints
 * {"event": "warm", ...} on its own line (so a parent can snapshot /proc/vmstat) and the
 * final figures (rounds, per_thread_rounds, pages_touched, wall_s) cover only the time after
 * it; rounds_total counts from the start. Without it the warm line comes before the workers
 * start.
 * --cpus N: restrict the process to the first N CPUs it may run on (sched_setaffinity), to
 * emulate a smaller machine; cores_used reports the CPUs actually used.
 *
 * At the end it prints ONE JSON line on stdout and removes its files and temp directory.
 * A round still running when the duration ends is abandoned and not counted (so one slow
 * round cannot stretch the run); the pages it touched still count in pages_touched.
 *
 * Written for this project (faultsim). Build: cc -O2 -pthread -o file_thrash file_thrash.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "workload_common.h"

#define PAGE 4096UL
/* Check the stop flag every this many pages inside a round. */
#define STOP_CHECK_PAGES 256

struct worker;

static int opt_threads = 1;
static long opt_file_mb = 16;
static double opt_duration_s = 2.0;
static int opt_open_close;
static int opt_noise;
static double opt_noise_busy_us = 500.0;
static double opt_noise_sleep_us = 500.0;
static const char *opt_dir;
static int opt_sparse = 1;
static int opt_start_fd = -1;
static double opt_warmup_s;
static int opt_cpus;            /* 0: every CPU the process may run on */
/* For the atexit cleanup: a failure during setup still removes what was created. */
static char g_dir[4096];
static struct worker *g_workers;
static int g_nworkers;

struct worker {
	pthread_t tid;
	int idx;
	int fd;                 /* open file when !open_close */
	char path[4096];
	unsigned long rounds;
	unsigned long pages_touched;
	unsigned long aborted;
	unsigned long sum;      /* keeps the reads from being optimised away */
	int err;                /* errno of the first failure, 0 if none */
	const char *err_what;
};

struct noise {
	pthread_t tid;
	int cpu;
	int fifo;               /* 1 if SCHED_FIFO was granted */
};

static void cleanup_files(void);

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s --threads N --file-mb M --duration-s S [--open-close] [--noise]\n"
		"          [--noise-busy-us US] [--noise-sleep-us US] [--dir DIR] [--no-sparse]\n"
		"          [--start-fd FD] [--warmup-s W] [--cpus N]\n", prog);
	exit(2);
}

static void die(const char *what)
{
	fprintf(stderr, "file_thrash: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void cleanup_files(void)
{
	for (int i = 0; i < g_nworkers; i++) {
		if (g_workers[i].path[0])
			unlink(g_workers[i].path);
	}
	g_nworkers = 0;
	if (g_dir[0])
		rmdir(g_dir);
	g_dir[0] = 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	size_t len = (size_t)opt_file_mb << 20;
	size_t npages = len / PAGE;

	while (!stop_flag) {
		int fd = w->fd;
		if (opt_open_close) {
			fd = open(w->path, O_RDONLY);
			if (fd < 0) {
				w->err = errno;
				w->err_what = "open";
				break;
			}
		}
		unsigned char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			w->err = errno;
			w->err_what = "mmap";
			if (opt_open_close)
				close(fd);
			break;
		}
		size_t i;
		for (i = 0; i < npages; i++) {
			if ((i % STOP_CHECK_PAGES) == 0 && stop_flag)
				break;
			w->sum += ((volatile unsigned char *)p)[i * PAGE];
		}
		__atomic_store_n(&w->pages_touched, w->pages_touched + i, __ATOMIC_RELAXED);
		munmap(p, len);
		if (opt_open_close)
			close(fd);
		if (i == npages)
			__atomic_store_n(&w->rounds, w->rounds + 1, __ATOMIC_RELAXED);
		else
			w->aborted++;
	}
	return NULL;
}

static void spin_us(double us)
{
	double end = now_s() + us * 1e-6;
	while (now_s() < end && !stop_flag)
		;
}

static void *noise_main(void *arg)
{
	struct noise *n = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(n->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	struct sched_param sp = { .sched_priority = 1 };
	n->fifo = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
	struct timespec ts;
	ts.tv_sec = (time_t)(opt_noise_sleep_us / 1e6);
	ts.tv_nsec = (long)((opt_noise_sleep_us - ts.tv_sec * 1e6) * 1e3);
	while (!stop_flag) {
		spin_us(opt_noise_busy_us);
		if (opt_noise_sleep_us > 0)
			nanosleep(&ts, NULL);
	}
	return NULL;
}

static void setup_file(struct worker *w, size_t len)
{
	int fd = open(w->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("create file");
	if (ftruncate(fd, (off_t)len) != 0)
		die("ftruncate");
	if (!opt_sparse) {
		char *buf = malloc(1 << 20);
		if (!buf)
			die("malloc");
		for (size_t off = 0; off < len; off += 1 << 20) {
			/* Non-zero, page-varying content: real data blocks, no holes. */
			for (size_t j = 0; j < (1 << 20); j += PAGE)
				memset(buf + j, (int)(1 + ((off + j) / PAGE + w->idx) % 251), PAGE);
			size_t n = len - off < (1 << 20) ? len - off : (1 << 20);
			if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
				die("pwrite");
		}
		free(buf);
		if (fsync(fd) != 0)
			die("fsync");
		/* Only this file's clean cache: the first round then reads from the device. */
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	}
	close(fd);
	if (!opt_open_close) {
		w->fd = open(w->path, O_RDONLY);
		if (w->fd < 0)
			die("open");
	} else {
		w->fd = -1;
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "threads", required_argument, 0, 't' },
		{ "file-mb", required_argument, 0, 'm' },
		{ "duration-s", required_argument, 0, 'd' },
		{ "open-close", no_argument, 0, 'o' },
		{ "noise", no_argument, 0, 'n' },
		{ "noise-busy-us", required_argument, 0, 'b' },
		{ "noise-sleep-us", required_argument, 0, 's' },
		{ "dir", required_argument, 0, 'D' },
		{ "no-sparse", no_argument, 0, 'S' },
		{ "start-fd", required_argument, 0, 'F' },
		{ "warmup-s", required_argument, 0, 'W' },
		{ "cpus", required_argument, 0, 'C' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 't': opt_threads = atoi(optarg); break;
		case 'm': opt_file_mb = atol(optarg); break;
		case 'd': opt_duration_s = atof(optarg); break;
		case 'o': opt_open_close = 1; break;
		case 'n': opt_noise = 1; break;
		case 'b': opt_noise_busy_us = atof(optarg); break;
		case 's': opt_noise_sleep_us = atof(optarg); break;
		case 'D': opt_dir = optarg; break;
		case 'S': opt_sparse = 0; break;
		case 'F': opt_start_fd = atoi(optarg); break;
		case 'W': opt_warmup_s = atof(optarg); break;
		case 'C': opt_cpus = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (optind != argc || opt_threads < 1 || opt_file_mb < 1 || opt_duration_s <= 0 ||
	    opt_noise_busy_us < 0 || opt_noise_sleep_us < 0 || opt_warmup_s < 0 ||
	    opt_warmup_s >= opt_duration_s || opt_cpus < 0)
		usage(argv[0]);

	wait_start_fd(opt_start_fd);
	install_stop_handlers();

	const char *base = opt_dir ? opt_dir : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	char dir[3072];
	snprintf(dir, sizeof(dir), "%s/file_thrash.XXXXXX", base);
	if (!mkdtemp(dir))
		die("mkdtemp");
	strcpy(g_dir, dir);
	atexit(cleanup_files);

	/* The CPUs this process may use, cut to the first --cpus of them. */
	cpu_set_t allowed;
	int cpu_list[CPU_SETSIZE];
	int ncpus = 0;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		die("sched_getaffinity");
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		if (opt_cpus && ncpus == opt_cpus) {
			CPU_CLR(cpu, &allowed);
			continue;
		}
		cpu_list[ncpus++] = cpu;
	}
	if (opt_cpus && sched_setaffinity(0, sizeof(allowed), &allowed) != 0)
		die("sched_setaffinity");
	size_t len = (size_t)opt_file_mb << 20;
	struct worker *ws = calloc(opt_threads, sizeof(*ws));
	if (!ws)
		die("calloc");
	g_workers = ws;
	for (int i = 0; i < opt_threads; i++) {
		g_nworkers = i + 1;
		ws[i].idx = i;
		snprintf(ws[i].path, sizeof(ws[i].path), "%s/f%d", dir, i);
		setup_file(&ws[i], len);
	}

	struct noise *ns = NULL;
	int nnoise = opt_noise ? ncpus : 0;
	if (nnoise) {
		ns = calloc(nnoise, sizeof(*ns));
		if (!ns)
			die("calloc");
	}

	double t0 = now_s();
	double t_warm = t0;
	unsigned long *warm_rounds = calloc(opt_threads, sizeof(*warm_rounds));
	unsigned long *warm_pages = calloc(opt_threads, sizeof(*warm_pages));
	if (!warm_rounds || !warm_pages)
		die("calloc");
	if (opt_warmup_s == 0) {
		printf("{\"event\": \"warm\", \"t_s\": 0.0}\n");
		fflush(stdout);
	}
	for (int i = 0; i < nnoise; i++) {
		ns[i].cpu = cpu_list[i];
		if (pthread_create(&ns[i].tid, NULL, noise_main, &ns[i]) != 0) {
			errno = EAGAIN;
			die("pthread_create noise");
		}
	}
	int started = 0;
	for (int i = 0; i < opt_threads; i++) {
		int e = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
		if (e != 0) {
			errno = e;
			fprintf(stderr, "file_thrash: pthread_create worker %d: %s\n", i, strerror(e));
			break;
		}
		started++;
	}

	/* Sleep until the end of the warmup, then until the deadline, or a signal. */
	int warm = opt_warmup_s == 0;
	double deadline = t0 + opt_duration_s;
	while (!stop_flag) {
		double t = now_s();
		if (!warm && t >= t0 + opt_warmup_s) {
			for (int i = 0; i < started; i++) {
				warm_rounds[i] = __atomic_load_n(&ws[i].rounds, __ATOMIC_RELAXED);
				warm_pages[i] = __atomic_load_n(&ws[i].pages_touched, __ATOMIC_RELAXED);
			}
			t_warm = now_s();
			warm = 1;
			printf("{\"event\": \"warm\", \"t_s\": %.6f}\n", t_warm - t0);
			fflush(stdout);
			continue;
		}
		double left = (warm ? deadline : t0 + opt_warmup_s) - t;
		if (left <= 0)
			break;
		if (left > 0.05)
			left = 0.05;
		struct timespec ts = { 0, (long)(left * 1e9) };
		nanosleep(&ts, NULL);
	}
	stop_flag = 1;
	for (int i = 0; i < started; i++)
		pthread_join(ws[i].tid, NULL);
	double t_end = now_s();
	double wall = t_end - t_warm;
	int fifo = 0;
	for (int i = 0; i < nnoise; i++) {
		pthread_join(ns[i].tid, NULL);
		fifo += ns[i].fifo;
	}

	unsigned long total = 0, rounds_all = 0, touched = 0, aborted = 0, sum = 0;
	int err = 0;
	const char *err_what = NULL;
	for (int i = 0; i < opt_threads; i++) {
		total += ws[i].rounds - warm_rounds[i];
		rounds_all += ws[i].rounds;
		touched += ws[i].pages_touched - warm_pages[i];
		aborted += ws[i].aborted;
		sum += ws[i].sum;
		if (ws[i].err && !err) {
			err = ws[i].err;
			err_what = ws[i].err_what;
		}
		if (ws[i].fd >= 0)
			close(ws[i].fd);
	}
	cleanup_files();

	printf("{\"workload\": \"file_thrash\", \"rounds\": %lu, \"per_thread_rounds\": [", total);
	for (int i = 0; i < opt_threads; i++)
		printf("%s%lu", i ? ", " : "", ws[i].rounds - warm_rounds[i]);
	printf("], \"rounds_total\": %lu, \"wall_s\": %.6f, \"warmup_s\": %.6f, "
	       "\"run_s\": %.6f, \"duration_s\": %.6f, \"threads\": %d, ", rounds_all, wall,
	       t_warm - t0, t_end - t0, opt_duration_s, opt_threads);
	printf("\"threads_started\": %d, "
	       "\"file_mb\": %ld, \"pages_per_round\": %zu, "
	       "\"pages_touched\": %lu, \"aborted_rounds\": %lu, \"cores_used\": %d, "
	       "\"open_close\": %s, \"sparse\": %s, \"noise\": %s, \"noise_threads\": %d, "
	       "\"noise_fifo_threads\": %d, \"noise_busy_us\": %.3f, \"noise_sleep_us\": %.3f, "
	       "\"checksum\": %lu, \"error\": ",
	       started, opt_file_mb, len / PAGE, touched,
	       aborted, ncpus, opt_open_close ? "true" : "false", opt_sparse ? "true" : "false",
	       opt_noise ? "true" : "false", nnoise, fifo, opt_noise_busy_us, opt_noise_sleep_us,
	       sum);
	if (err)
		printf("\"%s: %s\"}\n", err_what, strerror(err));
	else if (started < opt_threads)
		printf("\"started %d of %d worker threads\"}\n", started, opt_threads);
	else
		printf("null}\n");
	fflush(stdout);
	g_workers = NULL;
	free(ws);
	free(ns);
	free(warm_rounds);
	free(warm_pages);
	return (err || started < opt_threads) ? 1 : 0;
}
