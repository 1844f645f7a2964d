/*
 * swapin.c - the swap-in fault test of docs/model.md, Workloads (the series' swap test).
 *
 * Reproduces the swap workload the patch series ("mm: reduce mmap_lock contention and
 * improve page fault performance") was measured with: one private anonymous VMA of --mb
 * megabytes, written once; --writers threads loop madvise(MADV_PAGEOUT) over the whole VMA
 * (each call takes mmap_lock for read and pushes every mapped page to swap); --readers
 * threads loop reading one byte per 4 KiB page, so they fault the pages back in through
 * do_swap_page, racing the writers on the folio lock and the swap cache. One full madvise
 * call is a pageout round; one full read pass is a swap-in round.
 *
 * Without a swap device (or with memory.swap.max = 0) MADV_PAGEOUT cannot swap anon pages:
 * the calls succeed and do nothing, the readers never fault. The program still runs and
 * reports (madvise_errno says whether the kernel rejected MADV_PAGEOUT outright).
 *
 * --start-fd FD: block until one byte (or EOF) is read from FD before doing anything, so a
 * parent can move the process into a cgroup first. A pass still running when the duration
 * ends is abandoned and not counted.
 *
 * At the end it prints ONE JSON line on stdout.
 *
 * Written for this project (faultsim). Build: cc -O2 -pthread -o swapin swapin.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "workload_common.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PAGE 4096UL
#define STOP_CHECK_PAGES 256

static long opt_mb = 100;
static int opt_writers = 1;
static int opt_readers = 1;
static double opt_duration_s = 2.0;
static int opt_start_fd = -1;

static unsigned char *region;
static size_t region_len;

struct thr {
	pthread_t tid;
	unsigned long rounds;
	unsigned long aborted;
	unsigned long sum;
	int err;
};

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--mb MB] [--writers N] [--readers N] [--duration-s S]\n"
			"          [--start-fd FD]\n", prog);
	exit(2);
}

static void *writer_main(void *arg)
{
	struct thr *t = arg;
	while (!stop_flag) {
		if (madvise(region, region_len, MADV_PAGEOUT) != 0) {
			t->err = errno;
			break;
		}
		t->rounds++;
	}
	return NULL;
}

static void *reader_main(void *arg)
{
	struct thr *t = arg;
	size_t npages = region_len / PAGE;
	while (!stop_flag) {
		size_t i;
		for (i = 0; i < npages; i++) {
			if ((i % STOP_CHECK_PAGES) == 0 && stop_flag)
				break;
			t->sum += ((volatile unsigned char *)region)[i * PAGE];
		}
		if (i == npages)
			t->rounds++;
		else
			t->aborted++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mb", required_argument, 0, 'm' },
		{ "writers", required_argument, 0, 'w' },
		{ "readers", required_argument, 0, 'r' },
		{ "duration-s", required_argument, 0, 'd' },
		{ "start-fd", required_argument, 0, 'F' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': opt_mb = atol(optarg); break;
		case 'w': opt_writers = atoi(optarg); break;
		case 'r': opt_readers = atoi(optarg); break;
		case 'd': opt_duration_s = atof(optarg); break;
		case 'F': opt_start_fd = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (optind != argc || opt_mb < 1 || opt_writers < 0 || opt_readers < 0 ||
	    opt_duration_s <= 0)
		usage(argv[0]);

	wait_start_fd(opt_start_fd);
	install_stop_handlers();

	region_len = (size_t)opt_mb << 20;
	region = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	if (region == MAP_FAILED) {
		fprintf(stderr, "swapin: mmap: %s\n", strerror(errno));
		return 1;
	}
	/* Written once, page-varying and non-zero so no page is a zero-page candidate. */
	for (size_t i = 0; i < region_len / PAGE; i++)
		memset(region + i * PAGE, (int)(1 + i % 251), PAGE);

	long ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	int n = opt_writers + opt_readers;
	struct thr *ts = calloc(n > 0 ? n : 1, sizeof(*ts));
	if (!ts) {
		fprintf(stderr, "swapin: calloc: %s\n", strerror(errno));
		return 1;
	}
	double t0 = now_s();
	int started = 0;
	for (int i = 0; i < n; i++) {
		int e = pthread_create(&ts[i].tid, NULL, i < opt_writers ? writer_main : reader_main,
				       &ts[i]);
		if (e != 0) {
			fprintf(stderr, "swapin: pthread_create: %s\n", strerror(e));
			break;
		}
		started++;
	}
	double deadline = t0 + opt_duration_s;
	while (!stop_flag) {
		double left = deadline - now_s();
		if (left <= 0)
			break;
		if (left > 0.05)
			left = 0.05;
		struct timespec sl = { 0, (long)(left * 1e9) };
		nanosleep(&sl, NULL);
	}
	stop_flag = 1;
	for (int i = 0; i < started; i++)
		pthread_join(ts[i].tid, NULL);
	double wall = now_s() - t0;

	unsigned long pageout = 0, swapin = 0, aborted = 0, sum = 0;
	int madv_err = 0;
	for (int i = 0; i < started; i++) {
		if (i < opt_writers) {
			pageout += ts[i].rounds;
			if (ts[i].err && !madv_err)
				madv_err = ts[i].err;
		} else {
			swapin += ts[i].rounds;
			aborted += ts[i].aborted;
			sum += ts[i].sum;
		}
	}
	printf("{\"workload\": \"swapin\", \"pageout_rounds\": %lu, \"swapin_rounds\": %lu, "
	       "\"wall_s\": %.6f, \"duration_s\": %.6f, \"mb\": %ld, \"writers\": %d, "
	       "\"readers\": %d, \"threads_started\": %d, \"pages\": %zu, "
	       "\"aborted_rounds\": %lu, \"cores_used\": %ld, \"madvise_errno\": %d, "
	       "\"madvise_error\": ",
	       pageout, swapin, wall, opt_duration_s, opt_mb, opt_writers, opt_readers, started,
	       region_len / PAGE, aborted, ncpus, madv_err);
	if (madv_err)
		printf("\"%s\", ", strerror(madv_err));
	else
		printf("null, ");
	printf("\"checksum\": %lu}\n", sum);
	fflush(stdout);
	munmap(region, region_len);
	free(ts);
	return started < n ? 1 : 0;
}
