"""The row one simulation reports (docs/model.md, What a row reports) and the kernel-style counters behind it.

Column names are fixed: grids, reports and scripts rely on them. Every row has every column;
a column that does not apply to the workload is None (null in Parquet).

The counter enum mirrors `include/linux/vm_event_item.h`: one index per event, bumped on the
line where the kernel decides the outcome; the row's column is the lowercase name.
"""

from __future__ import annotations

# Version of the model's semantics. Bump it whenever a change alters any simulated row, so
# the sweep's point store (keyed by params + this) recomputes instead of serving stale rows.
MODEL_VERSION = "4.5.0"

# ---- vm events (indices into the counters array) ----------------------------------------
PGFAULT = 0
PGMAJFAULT = 1
RETRY_MMAP_DROP = 2
RETRY_IO_MISS = 3
VMA_LOCK_SUCCESS = 4
VMA_LOCK_ABORT = 5
VMA_LOCK_RETRY = 6
VMA_LOCK_MISS = 7
PAGES_READ = 8
PAGES_RECLAIMED = 9
REFAULTS = 10            # workingset_refault_file
HIGH_THROTTLE_NS = 11    # time slept in mem_cgroup_handle_over_high's penalty
MMAP_READ_COUNT = 12
MMAP_READ_WAIT_NS = 13
MMAP_WRITE_COUNT = 14
MMAP_WRITE_WAIT_NS = 15
VMA_WRITER_WAIT_MAX_NS = 16
VMA_WRITER_WAIT_NS = 17
ROUNDS = 18
PGSCAN = 19              # folios scanned by reclaim
RA_TRUNCATED = 20        # readahead windows cut short by a failed __GFP_NORETRY charge
MAX_RECLAIM = 21         # memory.max direct reclaim invocations (MEMCG_MAX events)
HIGH_RECLAIM_INKERNEL = 22  # over-high handler run inside the charge path
LRU_LOCK_WAIT_NS = 23    # time spent spinning on lru_lock
AGING_RUNS = 24          # MGLRU inc_max_seq
PEAK_USAGE_PAGES = 25
PSWPIN = 26              # pages read from swap
PSWPOUT = 27             # pages written to swap
SWAPCACHE_BUSY = 28      # swapin_folio met another thread's folio for the entry (raced swap-in)
PAGEOUT_LOCKED_SKIP = 29  # MADV_PAGEOUT found the folio locked (folio_trylock failed)
PAGEOUT_ROUNDS = 30      # swapin: full MADV_PAGEOUT passes over the VMA
SWAPIN_ROUNDS = 31       # swapin: full read passes over the VMA
RECLAIM_NO_PROGRESS = 32  # memcg reclaim calls that freed nothing (the penalty's condition)
WORKINGSET_ACTIVATE = 33  # workingset_activate_file: refaults found recent (activated)
PGACTIVATE = 34          # folios activated by reclaim (activate_locked) or folio_mark_accessed
PGDEACTIVATE = 35        # folios moved to the inactive list by shrink_active_list
FORKS = 36               # fork() calls that returned (fork_stall)
FORK_NS = 37             # their time from entry to return
FORK_NS_MAX = 38         # the longest of them (restarts at the end of warm-up)
# Thread time by what the thread was doing (core.sched.account), one counter per TT_* class
# of core.state in that order: where a round's wall time goes.
THREAD_TIME0 = 39
N_THREAD_TIME = 9
N_COUNTERS = THREAD_TIME0 + N_THREAD_TIME

COUNTER_NAMES = [
    "pgfault", "pgmajfault", "retry_mmap_drop", "retry_io_miss", "vma_lock_success",
    "vma_lock_abort", "vma_lock_retry", "vma_lock_miss", "pages_read", "pages_reclaimed",
    "refaults", "high_throttle_ns", "mmap_read_count", "mmap_read_wait_ns",
    "mmap_write_count", "mmap_write_wait_ns", "vma_writer_wait_max_ns", "vma_writer_wait_ns",
    "rounds", "pgscan", "ra_truncated", "max_reclaim", "high_reclaim_inkernel",
    "lru_lock_wait_ns", "aging_runs", "peak_usage_pages", "pswpin", "pswpout",
    "swapcache_busy", "pageout_locked_skip", "pageout_rounds", "swapin_rounds",
    "reclaim_no_progress", "workingset_activate", "pgactivate", "pgdeactivate",
    "forks", "fork_ns", "fork_ns_max",
    "time_cpu_ns", "time_runq_ns", "time_mmap_lock_ns", "time_folio_ns", "time_lru_lock_ns",
    "time_tlb_ack_ns", "time_vma_ns", "time_sleep_ns", "time_exited_ns",
]
assert len(COUNTER_NAMES) == N_COUNTERS

# Histogram bucket edges in microseconds: [0,1) [1,10) ... [1e6, inf).
N_HIST = 8

# ---- the row -------------------------------------------------------------------------------
WORKLOAD_COLUMNS = ["rounds", "throughput_rounds_s", "pageout_rounds", "swapin_rounds",
                    "launch_ms", "min_thread_rounds", "short_run"]
# A run is long enough when every thread completed at least this many rounds after
# warm-up (file_thrash, swapin): below it, a rate is the luck of where the rounds ended,
# and the row says so in `short_run` (app_launch: 1 when the launch did not finish).
MIN_ROUNDS_PER_THREAD = 3
FAULT_COLUMNS = ["pgfault", "pgmajfault", "retry_mmap_drop", "retry_io_miss", "miss_drop_pct",
                 "vma_lock_success", "vma_lock_abort", "vma_lock_retry", "vma_lock_miss"]
MEMORY_COLUMNS = ["pages_read", "pages_reclaimed", "refaults", "workingset_activate",
                  "high_throttle_ms", "peak_usage_mb"]
LOCK_COLUMNS = (
    ["mmap_read_count", "mmap_read_wait_total_us", "mmap_read_wait_avg_us"]
    + [f"mmap_read_hist_{i}" for i in range(N_HIST)]
    + ["mmap_write_count", "mmap_write_wait_total_us", "mmap_write_wait_avg_us"]
    + [f"mmap_write_hist_{i}" for i in range(N_HIST)]
    + ["vma_writer_wait_max_us", "vma_writer_wait_total_us",
       "fault_latency_p50_us", "fault_latency_p99_us"]
)
# Where the workers' time goes, in % of thread time after warm-up: one column per TT_*
# class of core.state but the last (exited threads are left out), in that order.
TIME_PCT_COLUMNS = ["time_cpu_pct", "time_runq_pct", "time_mmap_lock_pct", "time_folio_pct",
                    "time_lru_lock_pct", "time_tlb_ack_pct", "time_vma_pct", "time_sleep_pct"]
# Model internals worth seeing next to the published counters (added columns only;
# nothing relies on their absence).
DETAIL_COLUMNS = ["drops_per_round", "misses_per_round", "pgscan", "ra_truncated",
                  "max_reclaim", "high_reclaim_inkernel", "lru_lock_wait_total_us",
                  "aging_runs", "memcg_oom", "pswpin", "pswpout", "swapcache_busy",
                  "pageout_locked_skip", "reclaim_no_progress", "pgactivate", "pgdeactivate",
                  # file_thrash's miss/drop, docs/studies/convoy.md: how long a dropped fault's folio
                  # waits for the retry, against how old a folio is when reclaim evicts it
                  "retry_delay_p50_us", "retry_delay_p99_us",
                  "evict_age_p1_us", "evict_age_p10_us", "evict_age_p50_us",
                  # threads x time / rounds
                  "round_s_per_thread"] + TIME_PCT_COLUMNS
# fork_stall: fork() from entry to return, and its background (throttled) threads' faults.
FORK_COLUMNS = ["forks", "fork_latency_p50_ms", "fork_latency_p99_ms", "fork_latency_max_ms",
                "fork_latency_avg_ms", "bg_fault_latency_p99_us"]
ENGINE_COLUMNS = ["sim_time_s", "events", "wall_s", "events_per_s"]

METRIC_COLUMNS = (WORKLOAD_COLUMNS + FAULT_COLUMNS + MEMORY_COLUMNS + LOCK_COLUMNS
                  + FORK_COLUMNS + DETAIL_COLUMNS + ENGINE_COLUMNS)
HIST_BUCKET_LABELS = ["[0,1)", "[1,10)", "[10,100)", "[100,1000)", "[1000,10000)",
                      "[10000,100000)", "[100000,1000000)", "[1000000,inf)"]
