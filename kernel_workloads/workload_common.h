/*
 * What every workload program of this folder shares: the monotonic clock, the stop flag
 * set by SIGINT/SIGTERM, and the start pipe the runner uses to move the process into a
 * memory cgroup before any work begins (--start-fd).
 */
#ifndef WORKLOAD_COMMON_H
#define WORKLOAD_COMMON_H

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* SIGINT and SIGTERM end the run cleanly: the workers see stop_flag and the program still
 * prints its JSON line and removes its files. */
static void install_stop_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Block until the runner writes one byte (or closes) the start pipe; fd < 0: no pipe. */
static void wait_start_fd(int fd)
{
	char b;
	ssize_t r;

	if (fd < 0)
		return;
	do {
		r = read(fd, &b, 1);
	} while (r < 0 && errno == EINTR);
	close(fd);
}

#endif
