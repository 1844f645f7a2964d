"""Every array of the simulation, its dtype and unit, declared once.

State is struct-of-arrays: one numpy array per attribute of threads, pages, VMAs, cores and
block-device requests, plus two int64 vectors for scalars (`g`, indexed by the G_* names) and
constants (`k`, indexed by the K_* names). Compiled kernels take the `State` namedtuple and
index it; there is no Python object per page or thread anywhere in the hot path.

The enums below are the vocabulary the mechanism modules share (thread run states, page
flags, fault flags, program counters). Program counters are grouped by the module that owns
them (hundreds digit), so the engine can dispatch a thread to its module in one comparison.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from core.costs import FOLIO_BATCH_SIZE, PTRS_PER_PTE

# ---- thread run states (sched) -------------------------------------------------------------
TS_RUNNING = 0    # on a core, an EV_THREAD pending at the end of its burst
TS_RUNNABLE = 1   # in a run queue, waiting for a core
TS_BLOCKED = 2    # asleep on a lock/folio/vma; someone else wakes it
TS_SLEEPING = 3   # timed sleep (penalty, jiffy); an EV_THREAD pending, no core held
TS_SPINNING = 4   # busy-waiting on a spinlock or IPI acks: keeps its core, no event
TS_EXITED = 5     # drained: finished its last round after the end of the run

# What a thread's time goes to (core.sched.account; counters metrics.THREAD_TIME0 + TT_*).
TT_CPU = 0        # on a core: work, context switch and wake-up latency
TT_RUNQ = 1       # runnable, waiting in a run queue for a core
TT_MMAP_LOCK = 2  # asleep in mmap_lock's queue or spinning on its owner
TT_FOLIO = 3      # asleep on a folio lock or for a block request (I/O)
TT_LRU_LOCK = 4   # spinning on lru_lock
TT_TLB_ACK = 5    # spinning for TLB-shootdown acknowledgements
TT_VMA = 6        # vma_start_write waiting for the VMA's readers
TT_SLEEP = 7      # timed sleeps: the memory.high penalty
TT_EXITED = 8     # drained (tests): done after the end of the run

# ---- event kinds -----------------------------------------------------------------------------
EV_THREAD = 0     # continue thread `id` at its program counter
EV_IO_DONE = 1    # block request `id` completed
EV_NOISE = 2      # noise spinner of core `id` toggles
EV_WARMUP = 3     # end of warm-up: snapshot the counters
EV_THROTL = 4     # block request `id` leaves the blk-throttle queue for the device

# ---- page (folio) flags ----------------------------------------------------------------------
PG_PRESENT = 1        # in the page cache (xarray holds a folio)
PG_LOCKED = 2
PG_UPTODATE = 4
PG_READAHEAD = 8
PG_REFERENCED = 16
PG_ACTIVE = 32
PG_WORKINGSET = 64
PG_ISOLATED = 128     # off the LRU, held by a reclaimer
PG_LRU = 256          # on an LRU list (not in a per-CPU batch)
PG_INBATCH = 512      # in a per-CPU lru_add batch, not yet on a list
PG_ANON = 1024        # anonymous (swap-backed) folio; its object is an anon region
PG_SWAPCACHE = 2048   # in the swap cache (its swap entry maps to this folio)
PG_SWAPPED = 4096     # a swap slot holds this page's data (the PTE, if absent, holds the entry)
PG_DIRTY = 8192
PG_WRITEBACK = 16384

# ---- PTE bits (per VMA page) -----------------------------------------------------------------
PTE_PRESENT = 1
PTE_YOUNG = 2

# ---- fault flags (include/linux/mm_types.h, enum fault_flag) ----------------------------------
FAULT_FLAG_ALLOW_RETRY = 1
FAULT_FLAG_TRIED = 2
FAULT_FLAG_VMA_LOCK = 4

# ---- what one handle_mm_fault attempt returns (enum vm_fault_reason), kept in T_F_RET --------
VM_FAULT_MAJOR = 0x4
VM_FAULT_RETRY = 0x400
# The series' patch 1 (mm_types.h): "retry by VMA lock". filemap_fault sets it only on the
# `if (fpin)` exit after the folio turned out uptodate, do_swap_page (patch 2) only on a
# folio_lock_or_retry retry of a first try; the arch handler goes back to
# lock_vma_under_rcu on this bit alone.
VM_FAULT_RETRY_VMA = 0x800

# ---- which lock a fault holds ---------------------------------------------------------------
LOCK_NONE = 0
LOCK_VMA = 1
LOCK_MMAP = 2

# ---- policies (index into core.params.POLICIES) ---------------------------------------------
POL_BASELINE = 0
POL_VMA_RETRY = 1
POL_VMA_RETRY_UPTODATE = 2
POL_RETRY_HARD = 3
POL_HOLD_VMA_IO = 4
POL_MMAP_LOCK_ONLY = 5
POL_HOLD_FILE_VMA_IO = 6

# ---- LRU ---------------------------------------------------------------------------------------
LRU_MGLRU = 0
LRU_CLASSIC = 1
MAX_NR_GENS = 4        # include/linux/mmzone.h
MIN_NR_GENS = 2
LIST_INACTIVE = 4      # classic lists live after the four MGLRU generation lists
LIST_ACTIVE = 5
LIST_ANON = 6          # anon folios (both LRUs): isolated by MADV_PAGEOUT, never scanned by
                       # memcg reclaim here (anon reclaim is not modelled; see core.params)
N_LISTS = 7
NO_LIST = -1

# ---- rwsem waiter types ----------------------------------------------------------------------
RW_READ = 0
RW_WRITE = 1

# ---- program counters, grouped by owning module ----------------------------------------------
# workloads/file_thrash: 100s
W_ROUND_START = 100
W_MMAP = 101
W_TOUCH = 102
W_MUNMAP = 103
W_ROUND_END = 104
# workloads/swapin: 120s
W_SI_START = 120
W_SI_READ = 121
W_SI_PAGEOUT = 122
W_SI_PAGEOUT_DONE = 123
W_SI_READ_END = 124
# workloads/app_launch: 140s
W_AL_START = 140
W_AL_NEXT = 141
W_AL_TOUCH = 142
W_AL_DONE = 143
W_AL_MAPPER = 150
W_AL_MAPPED = 151
W_AL_MPROTECT = 152
W_AL_MUNMAP = 153
W_AL_MAPPER_END = 154
# workloads/fork_stall: 160s
W_FS_BG = 160
W_FS_BG_TOUCH = 161
W_FS_FORKER = 165
W_FS_FORKED = 166
W_FS_FORK = 167
# fault: 200s
F_BEGIN = 200
F_LOCK_VMA = 201
F_LOCK_MMAP = 202
F_MMAP_LOCKED = 203
F_HANDLE = 204
F_FILEMAP = 205
F_GET_FOLIO = 206
F_FOLIO_LOCK = 207
F_LOCKED = 208
F_READ_FOLIO_DONE = 209
F_OUT_RETRY = 210
F_FINISH = 211
F_END = 212
F_RETURN_TO_USER = 213
F_NEW_FOLIO_CHARGED = 214
F_PTE_CHARGED = 215
# mm (mmap/munmap): 300s
M_MMAP = 300
M_MMAP_LOCKED = 301
M_MMAP_DONE = 302
M_MUNMAP = 303
M_MUNMAP_LOCKED = 304
M_VMA_START_WRITE = 305
M_DOWNGRADE = 306
M_ZAP = 307
M_TLB_FLUSH = 308
M_TLB_ACKED = 309
M_FREE_PGTABLES = 310
M_MUNMAP_DONE = 311
M_RETURN_TO_USER = 312
M_ZAP_PTES = 313
M_ACTIVATE = 314
M_ACTIVATE_LOCKED = 315
M_ACTIVATE_DONE = 316
M_MPROTECT = 320
M_MPROTECT_LOCKED = 321
M_MPROTECT_VMA = 322
M_MPROTECT_DONE = 323
M_FORK = 330           # fork (kernel/fork.c copy_process -> dup_mm -> mm/mmap.c dup_mmap)
M_FORK_LOCK = 331
M_FORK_LOCKED = 332
M_FORK_WALK = 333
M_FORK_VMA = 334
M_FORK_COPY = 335
M_FORK_DONE = 336
M_FORK_TLB = 337
M_FORK_ACKED = 338
# readahead: 400s
RA_SYNC = 400
RA_ASYNC = 401
RA_LOOP = 402
RA_CHARGED = 403
RA_READ_PAGES = 404
RA_SPARSE_DONE = 405
RA_END = 406
# memcg (charge, over-high): 500s
MC_CHARGE = 500
MC_RECLAIMED = 501
MC_OVER_HIGH = 502
MC_OVER_HIGH_RECLAIMED = 503
MC_OVER_HIGH_SLEPT = 504
# lru / reclaim: 600s
LR_ADD_DRAIN = 600
LR_ADD_DRAIN_LOCKED = 601
LR_ADD_DRAIN_DONE = 602
RC_BEGIN = 610
RC_PRIORITY = 611
RC_ISOLATE = 612
RC_ISOLATE_LOCKED = 613
RC_SHRINK = 614
RC_PUTBACK = 615
RC_PUTBACK_LOCKED = 616
RC_PUTBACK_DONE = 617
RC_SHRINK_RETRY = 618
RC_AGING = 620
RC_AGING_CHUNK = 621
RC_AGING_CHUNK_DONE = 622
RC_AGING_INC = 623
RC_AGING_INC_LOCKED = 624
RC_AGING_DONE = 625
# swap, anon faults (do_anonymous_page, do_swap_page): 700s
SW_ANON = 700
SW_ANON_CHARGED = 701
SW_SWAP = 710
SW_SWAP_CHARGED = 711
SW_ZRAM_READ_DONE = 712
SW_LOCK = 713
SW_LOCKED = 714
SW_WAITED = 715
SW_RA_LOOP = 720
SW_RA_CHARGED = 721
SW_RA_DONE = 722
SW_FAULT = 730        # handle_pte_fault on an anon VMA: pick the handler
# madvise(MADV_PAGEOUT): 800s
MA_PAGEOUT = 800
MA_LOCKED = 801
MA_ISOLATE = 802
MA_ISOLATE_LOCKED = 803
MA_SHRINK = 804
MA_FLUSHED = 805
MA_WRITE = 806
MA_WRITTEN = 807
MA_PUTBACK = 808
MA_PUTBACK_LOCKED = 809
MA_PUTBACK_DONE = 810
MA_DONE = 811
MA_FOLIO = 812
MA_DOWN_READ = 813
MA_ISOLATE_LOCK = 814
MA_WRITE_SUBMIT = 815
PC_RETURN = 999       # pop the call stack

STACK_DEPTH = 16
RECLAIM_BATCH = 32     # SWAP_CLUSTER_MAX: classic isolation, MADV_PAGEOUT batches
RECLAIM_SLOTS = 64     # MIN_LRU_BATCH: MGLRU isolates up to this many folios per batch
LAT_BINS = 256         # fault-latency histogram: log2 bins of 1/8 octave from 64 ns

# ---- scalar slots of g (int64) ---------------------------------------------------------------
(G_NOW, G_SEQ, G_EVENTS, G_HEAP_N,
 G_RQ_HEAD, G_RQ_TAIL, G_RQ_LEN, G_IDLE_N,
 G_RW_WRITER, G_RW_READERS, G_RW_QHEAD, G_RW_QTAIL, G_RW_QLEN,
 G_LRU_OWNER, G_LRU_QHEAD, G_LRU_QTAIL,
 G_USAGE, G_PEAK_USAGE, G_MAX_SEQ, G_MIN_SEQ, G_NONRESIDENT_AGE,
 G_AGING_WALKER, G_AGING_SEQ, G_WARM,
 G_IO_INFLIGHT, G_IO_QHEAD, G_IO_QTAIL, G_IO_FREE,
 G_STOP, G_OOM, G_MM_CPUS, G_DRAINING,
 G_SWAP_USAGE,     # swap slots charged (pages)
 G_LAUNCH_LEFT,    # app_launch: workers still running their trace
 G_LAUNCH_NS,      # app_launch: when the last worker finished, -1 before
 G_IO_QUEUED,      # block requests waiting for a device slot (beyond queue_depth)
 G_IO_WAIT_HEAD, G_IO_WAIT_TAIL,  # writers asleep for a request (blk_mq_get_tag)
 G_RW_HANDOFF,     # mmap_lock: RWSEM_FLAG_HANDOFF, set by a writer that waited too long
 G_RW_WOKEN,       # mmap_lock: the first waiter, a writer woken to take the lock, or -1
 G_RW_SPIN_HEAD, G_RW_SPIN_TAIL,  # mmap_lock: writers spinning on a running writer owner
 G_WS_SNAPSHOT,    # classic: target_lruvec->refaults[WORKINGSET_FILE] (snapshot_refaults)
 G_CUR_TID,        # the thread whose step the engine is running (the CPU doing an atomic)
 G_MMAP_LINE_CPU, G_MMAP_LINE_FREE,  # mmap_lock's count word: last writer CPU, busy until ns
 G_THROTL_NEXT,    # blk-throttle: ns when the throttled group's budget is spent (token bucket)
 N_G) = range(48)

# ---- constants of k (int64) ------------------------------------------------------------------
(K_THREADS, K_CORES, K_FILE_PAGES, K_N_FILES, K_POLICY, K_LRU, K_PINNING,
 K_SLICE_NS, K_FA_PAGES, K_RA_PAGES, K_HIGH, K_MAX, K_SPARSE, K_IO_MEDIAN_NS,
 K_IO_SIGMA_PPM, K_QUEUE_DEPTH, K_OPEN_CLOSE, K_NOISE, K_NOISE_BUSY_NS, K_NOISE_SLEEP_NS,
 K_END_NS, K_WARMUP_NS, K_MAX_EVENTS, K_HZ,
 # costs
 K_TOUCH, K_FAULT_ENTRY, K_PTE_INSTALL, K_FA_PAGE, K_FOLIO_ALLOC, K_ZERO_FILL, K_RA_SUBMIT,
 K_IO_XFER, K_IO_COMPLETE, K_WAKEUP, K_LRU_OP, K_LRU_PER_FOLIO, K_LRU_ADD_BATCH,
 K_RC_SCAN, K_RC_EVICT, K_RC_RMAP, K_AGING_PTE, K_AGING_CHUNK, K_AGING_BASE,
 K_MMAP, K_MUNMAP_GATHER, K_ZAP_PTE, K_FREE_PGTABLES, K_TLB_BASE, K_TLB_PER_CPU,
 K_OPEN_CLOSE_NS, K_CHARGE, K_CTX_SWITCH,
 # swap, anon, the swapin and app_launch workloads
 K_SWAP_DEV, K_SWAP_MAX, K_SWAP_RA, K_ZRAM_COMP, K_ZRAM_DECOMP, K_ADD_TO_SWAP,
 K_SWAP_WRITE_SUBMIT, K_MPROTECT,
 K_AL_TOUCHES, K_AL_RUN_PAGES, K_AL_MAP_PERIOD_NS, K_AL_N_OBJ, K_AL_HEAP_VMA, K_AL_WORK_NS,
 # model-only ablation switches (core.params.ModelParams), 1 = the kernel's behaviour
 K_ABL_TLB_LATE_ACK, K_ABL_INKERNEL_HIGH, K_ABL_RWSEM_STEAL,
 # large folios (mapping_large_folio_support) and the per-page cost of batched PTE updates
 K_LARGE_FOLIOS, K_PTE_BATCH,
 # machine jitter (core.sched): on/off, sigmas in parts per million, the tick
 K_JITTER, K_WAKEUP_SIGMA_PPM, K_COST_SIGMA_PPM, K_TICK_NS, K_TICK_PERIOD_NS,
 K_LINE_NS,    # one cache-line transfer between CPUs (costs.cacheline_transfer_ns)
 K_V_PT0,      # S.vma column of the first PTE-table flag (V_PTE0 + file pages)
 # device: the heavy tail of the service time, blk-throttle of the throttled group
 K_IO_TAIL_PPM, K_IO_TAIL_NS, K_IO_TAIL_ALPHA_PPM, K_THROTL_BPS, K_THROTL_IOPS,
 K_THROTL_SLICE_NS,
 # fork (dup_mmap): rule, costs, the VMAs it walks that no thread faults
 K_FORK_RULE, K_FORK_BASE, K_FORK_ANON_VMA, K_FORK_FILE_VMA, K_FORK_PTE, K_FORK_VMAS,
 K_FORK_BULK_NS, K_FS_PERIOD_NS, K_AL_LOOP,
 K_ENGINE,     # which compiled engine runs the workload (core.engine.ENGINES)
 N_K) = range(95)
SWAP_NONE, SWAP_ZRAM, SWAP_DISK = range(3)

# ---- per-thread registers: columns of S.t (int64[n_threads, N_T]) ---------------------------
T_PC = 0   # program counter (PC_* above)
T_SP = 1   # depth of the return stack
T_STATE = 2   # TS_*
T_CORE = 3   # core it runs or spins on, -1 if none
T_SLICE_NS = 4   # ns of CPU used in the current slice
T_WAIT_NEXT = 5   # next thread in whatever FIFO it sleeps, spins or queues in
T_WAIT_START = 6   # ns: when the current wait began
T_RW_WANT = 7   # RW_READ / RW_WRITE while queued on mmap_lock
T_VMA = 8   # VMA its file is mapped at, -1 while unmapped
T_FILE = 9   # file it owns
T_PAGE = 10  # next page of the round to touch
T_DEBT = 11  # pages: current->memcg_nr_pages_over_high
T_F_PAGE = 12  # fault: page index in the file
T_F_FLAGS = 13  # fault: FAULT_FLAG_*
T_F_LOCK = 14  # fault: LOCK_* it holds
T_F_RET = 15  # fault: VM_FAULT_* bits this attempt returns so far (vm_fault_t ret)
T_F_FPIN = 16  # fault: the lock was dropped on this attempt (fpin != NULL)
T_F_START = 17  # ns: when the fault began
T_RA_NEXT = 18  # readahead: next page of the window
T_RA_END = 19  # readahead: end of the window (exclusive)
T_RA_MARK = 20  # readahead: page to get PG_readahead
T_RA_RUN_START = 21  # readahead: first page of the run not yet submitted
T_RA_RUN_N = 22  # readahead: pages in that run
T_RA_COST = 23  # ns of CPU accumulated and not yet spent
T_C_NR = 24  # charge: pages
T_C_NORETRY = 25  # charge: __GFP_NORETRY
T_C_OK = 26  # charge: succeeded
T_C_DRAINED = 27  # charge: drain_all_stock done
T_C_RETRIES = 28  # charge: MAX_RECLAIM_RETRIES left
T_OH_NR = 29  # over-high: debt being settled (pages)
T_OH_RETRIES = 30  # over-high: no-progress retries left
T_OH_IN_RETRY = 31  # over-high: in the retry loop
T_R_TARGET = 32  # reclaim: nr_to_reclaim
T_R_RECLAIMED = 33  # reclaim: freed so far
T_R_PRIORITY = 34  # reclaim: scan priority
T_R_BUDGET = 35  # reclaim: folios left to scan at this priority (classic: nr[LRU_INACTIVE_FILE])
T_R_BATCH_N = 36  # reclaim: folios in the isolated batch
T_R_WALK_VMA = 37  # aging walk: VMA position
T_R_WALK_PAGE = 38  # aging walk: page position
T_R_SEQ = 39  # aging: max_seq when it started
T_M_PENDING_ACKS = 40  # TLB-shootdown acknowledgements still awaited
T_M_COUNT = 41  # folios still to activate after a zap (classic LRU)
T_PREEMPT_COUNT = 42  # preempt_count: >0 while holding or spinning on a spinlock
T_ROUNDS = 43  # rounds this thread completed (whole run, warm-up included)
T_ROLE = 44  # workload role (swapin: ROLE_READER/ROLE_WRITER; app_launch: worker/mapper)
T_W_LEFT = 45  # workload: accesses (app_launch) left in the trace
T_W_RUN = 46  # app_launch: end page (exclusive) of the current sequential run
T_PO_I = 47  # MADV_PAGEOUT: next folio of the isolated batch to process
T_W_VMA2 = 48  # the VMA slot this thread's mmap creates (file_thrash: its own index)
T_WQ_SHARED = 49  # waits on a folio without taking its lock (folio_wait_locked)
T_UNFAIR = 50  # folio lock wait: lost races left before the unlocker hands it the lock
T_FOLIO_RELOCK = 51  # woken by folio_unlock without the lock: folio index + 1 to race for
T_RW_RELOCK = 52  # a writer woken by rwsem_mark_wake: it must take the lock when it runs
T_R_SCANNED = 53  # reclaim (MGLRU): folios scanned at this priority (try_to_shrink_lruvec)
T_R_DELTA = 54  # reclaim (MGLRU): what this evict_folios returns (0 ends the priority)
T_F_DROP_NS = 55  # fault: ns of its last out_retry, until the retry starts (0: none)
T_ACCT = 56  # TT_* class its time is being counted in
T_ACCT_SINCE = 57  # ns: since when
T_R_NR_ACTIVE = 58  # reclaim (classic): nr[LRU_ACTIVE_FILE] left at this priority
T_R_MAY_DEACT = 59  # reclaim (classic): sc->may_deactivate & DEACTIVATE_FILE
T_RA_ORDER = 60  # readahead: folio order of this window (0: page_cache_ra_unbounded)
T_M_LARGE = 61  # large folios still to activate after a zap (one lru_lock hold each)
T_R_RETRIED = 62  # reclaim (MGLRU): evict_folios' second pass done for this batch (skip_retry)
T_LINE_NS = 63  # ns its atomics on shared cache lines cost, charged with its next burst
T_WARM_ROUNDS = 64  # T_ROUNDS at the end of warm-up
T_BLKCG = 65  # blkcg of its I/O: 0 the root group, 1 the throttled group (device.throttle_*)
T_FK_START = 66  # fork: ns when the fork() call began
T_FK_V = 67  # fork: the modelled VMA dup_mmap copies next (mm.next_vma_at), -1 if none
T_FK_POS = 68  # fork: address-order position of the next VMA to copy
T_STACK0 = 69                 # STACK_DEPTH return program counters
T_R_BATCH0 = T_STACK0 + STACK_DEPTH       # RECLAIM_SLOTS isolated folios
N_T = T_R_BATCH0 + RECLAIM_SLOTS

ROLE_READER = 0
ROLE_WRITER = 1
ROLE_WORKER = 0
ROLE_MAPPER = 1
ROLE_BG = 2      # fork_stall: a background thread in the throttled blkcg
ROLE_FORKER = 3  # fork_stall: the thread calling fork()

# ---- vm_flags bits the model reads (include/linux/mm.h) and the fork rule --------------------
VM_SHARED = 0x8
VM_MAYWRITE = 0x20
FORK_LOCK_ALL = 0   # v7.0 dup_mmap: vma_start_write on every VMA
FORK_LOCK_COW = 1   # the review thread's proposal: only is_cow_mapping() VMAs

# ---- per-folio state: columns of S.pg (int64[n_pages, N_P]) ---------------------------------
(P_FLAGS,      # PG_* bits
 P_GEN,        # MGLRU seq the folio belongs to (lazily sorted, as in the folio flags)
 P_LIST,       # list it is linked on, NO_LIST if none
 P_PREV, P_NEXT,  # LRU links
 P_SHADOW,     # eviction stamp left in the xarray, -1 if none
 P_REFS,       # extra references (a fault between lookup and map): not evictable
 P_WQ_HEAD, P_WQ_TAIL,  # folio-lock waiters, FIFO through T_WAIT_NEXT
 P_ADDED_NS,   # ns: when it entered the page cache (filemap_add_folio)
 P_HEAD,       # the folio's first page (this page itself when absent or order 0)
 P_NR,         # on a head page: folio_nr_pages (1 << order); 1 on absent and tail pages
 N_P) = range(13)
# A large folio of nr pages is nr rows: the head (index a multiple of nr) carries the folio's
# flags, LRU links, generation, references, wait queue and age; every page of it names the
# head in P_HEAD. Shadows stay per page (an evicted folio leaves its shadow on every slot it
# covered, as a multi-index xarray entry does). Anon and swap-cache folios are order 0.

# ---- per-VMA state: columns of S.vma (int64[n_vmas, N_V + file_pages]) ----------------------
(V_FILE, V_ATTACHED, V_READERS, V_WRITE_LOCKED,
 V_WRITER,     # thread waiting in vma_start_write, -1 if none
 V_LINE_CPU, V_LINE_FREE,  # the VMA lock's refcount word: last writer CPU, busy until ns
 V_PT_N,       # PTE tables allocated under this VMA (each charged to the memcg)
 V_FLAGS,      # vm_flags: VM_SHARED, VM_MAYWRITE (what the fork rule reads)
 V_ANON_VMA,   # 1: vma->anon_vma is set (dup_mmap copies its page tables)
 V_POS,        # its position in address order among the mm's fork_vmas VMAs (fork_stall)
 V_PTE0,       # PTE_* bits of page i at column V_PTE0 + i
 ) = range(12)
# After the PTEs, one column per PTE table (PTRS_PER_PTE pages): 1 once it is allocated.
# Its first column is K_V_PT0 (V_PTE0 + file pages).

# ---- per-file state: columns of S.file (int64[n_files, N_FL]) -------------------------------
(FL_VMA,       # VMA mapping the file (i_mmap, for rmap), -1 if none
 FL_RA_START, FL_RA_SIZE, FL_RA_ASYNC,  # struct file_ra_state
 FL_ANON,      # 1: an anonymous region (its pages are anon folios / swap entries)
 FL_PAGES,     # size in pages (<= K_FILE_PAGES, the row width)
 FL_WEIGHT,    # app_launch: share of the accesses (per mille)
 FL_RA_ORDER,  # file_ra_state.order: folio order of the last readahead window
 FL_MMAP_MISS,  # file_ra_state.mmap_miss: major faults not yet balanced by cache hits
 N_FL) = range(10)

# mm/filemap.c: read-around stops for a file whose mmap_miss exceeds this; the count
# saturates at ten times it ("Do we miss much more than hit in this file?").
MMAP_LOTSAMISS = 100

# ---- per-CPU state: columns of S.core (int64[n_cores, C_ACK0 + n_threads]) -------------------
(C_THREAD,     # running/spinning thread, -1 idle, -2 noise spinner
 C_NOISE_PENDING, C_NOISE_BUSY,
 C_STOCK,      # pages of the memcg cached in this CPU's charge stock
 C_FB_N,       # folios in this CPU's lru_add batch
 C_IRQOFF,     # spinning on or holding lru_lock with interrupts off
 C_ACK_N,      # flushers waiting for this CPU's IPI acknowledgement
 C_RAN_MM,     # in mm_cpumask
 C_RQ_HEAD, C_RQ_TAIL,  # per-core run queue (pinning)
 C_IDLE_POS,   # position in the idle list, -1 if busy
 C_TICK_PHASE,  # ns: when this CPU's periodic tick fires, modulo the tick period
 C_FB0,        # C_FB0 .. C_FB0 + FOLIO_BATCH_SIZE - 1: the lru_add batch
 ) = range(13)
C_ACK0 = C_FB0 + FOLIO_BATCH_SIZE

# ---- block requests: columns of S.rq (int64[n_rq, N_RQ]) -------------------------------------
RQ_FIRST, RQ_N, RQ_NEXT, RQ_OWNER, RQ_WRITE, N_RQ = range(6)

# ---- event heap: columns of S.ev (int64[cap, 4]) --------------------------------------------
EV_TIME, EV_SEQ, EV_KIND, EV_ID = range(4)

# ---- regions of S.g after the scalars -------------------------------------------------------
from core.metrics import N_COUNTERS as _NC

G_LRU_HEAD = N_G
G_LRU_TAIL = G_LRU_HEAD + N_LISTS
G_LRU_SIZE = G_LRU_TAIL + N_LISTS
G_GEN_PAGES = G_LRU_SIZE + N_LISTS       # lrugen->nr_pages by generation
G_COUNTERS = G_GEN_PAGES + MAX_NR_GENS   # vm events, core.metrics indices
G_WARM_COUNTERS = G_COUNTERS + _NC       # their snapshot at the end of warm-up
G_HIST_READ = G_WARM_COUNTERS + _NC      # mmap_lock read waits, decades of us
G_HIST_WRITE = G_HIST_READ + 8
G_WARM_HIST = G_HIST_WRITE + 8           # snapshot of both at warm-up
G_LAT_HIST = G_WARM_HIST + 16            # fault latency, 1/8-octave bins from 64 ns (core.hist)
G_RETRY_HIST = G_LAT_HIST + LAT_BINS     # out_retry to the retry's handle_mm_fault
G_AGE_HIST = G_RETRY_HIST + LAT_BINS     # page-cache age of each file page reclaim evicts
G_FORK_HIST = G_AGE_HIST + LAT_BINS      # fork() calls, entry to return (fork_stall)
G_BG_LAT_HIST = G_FORK_HIST + LAT_BINS   # fault latency of ROLE_BG threads (fork_stall)
N_HISTS = 5                              # G_LAT_HIST .. G_BG_LAT_HIST, reset at warm-up
G_IDLE_LIST = G_BG_LAT_HIST + LAT_BINS   # idle cores (indexed set with C_IDLE_POS)

# Few arrays on purpose: numba passes a namedtuple member by member on every call that is
# not inlined (measured: 1.8 us per call with 110 arrays, 0.07 us with 6).
State = namedtuple("State", [
    "g",     # int64[G_IDLE_LIST + cores] scalars (G_*), LRU lists, counters, histograms
    "k",     # int64[N_K] constants (K_*), times in ns
    "t",     # int64[threads, N_T]  thread registers
    "pg",    # int64[pages, N_P]    folios
    "vma",   # int64[vmas, V_PTE0 + file_pages + PTE tables]
    "file",  # int64[files, N_FL]
    "core",  # int64[cores, C_ACK0 + threads]
    "rq",    # int64[requests, N_RQ] block requests
    "ev",    # int64[cap, 4]        event heap
])


def make_state(k: np.ndarray, n_threads: int, n_cores: int, n_pages: int,
               n_files: int, file_pages: int, n_vmas: int) -> State:
    """Allocate every array at its initial value (nothing mapped, cache empty)."""
    cap = 4 * n_threads + 4 * n_cores + 64
    # A readahead window submits one request per contiguous run of missing pages: at
    # most half a window each, for every thread at once.
    # Writes (swap-out to disk) are throttled to queue_depth queued requests beyond the
    # queue_depth in flight (blk_mq_get_tag), one folio each.
    n_rq = n_threads * (int(k[K_RA_PAGES]) // 2 + 2) + 2 * int(k[K_QUEUE_DEPTH]) + 16
    g = np.zeros(G_IDLE_LIST + n_cores, np.int64)
    for slot in (G_RW_WRITER, G_RW_QHEAD, G_RW_QTAIL, G_RQ_HEAD, G_RQ_TAIL, G_LRU_OWNER,
                 G_LRU_QHEAD, G_LRU_QTAIL, G_AGING_WALKER, G_IO_QHEAD, G_IO_QTAIL,
                 G_IO_WAIT_HEAD, G_IO_WAIT_TAIL, G_RW_WOKEN, G_RW_SPIN_HEAD,
                 G_RW_SPIN_TAIL, G_MMAP_LINE_CPU):
        g[slot] = -1
    g[G_LAUNCH_NS] = -1
    g[G_THROTL_NEXT] = -(1 << 50)  # an idle throttled group: a full slice of budget
    g[G_MAX_SEQ] = MIN_NR_GENS   # lru_gen_init_lruvec: min_seq 0, max_seq MIN_NR_GENS
    g[G_IDLE_N] = n_cores
    g[G_LRU_HEAD:G_LRU_HEAD + N_LISTS] = -1
    g[G_LRU_TAIL:G_LRU_TAIL + N_LISTS] = -1
    g[G_IDLE_LIST:G_IDLE_LIST + n_cores] = np.arange(n_cores - 1, -1, -1)
    t = np.zeros((n_threads, N_T), np.int64)
    t[:, T_PC] = W_ROUND_START
    t[:, T_STATE] = TS_RUNNABLE
    t[:, T_ACCT] = TT_RUNQ
    t[:, T_CORE] = -1
    t[:, T_WAIT_NEXT] = -1
    t[:, T_VMA] = -1
    t[:, T_FILE] = np.arange(n_threads) % n_files
    t[:, T_W_VMA2] = np.arange(n_threads) % n_vmas
    t[:, T_R_BATCH0:] = -1
    pg = np.zeros((n_pages, N_P), np.int64)
    pg[:, P_LIST] = NO_LIST
    pg[:, P_PREV] = -1
    pg[:, P_NEXT] = -1
    pg[:, P_SHADOW] = -1
    pg[:, P_WQ_HEAD] = -1
    pg[:, P_WQ_TAIL] = -1
    pg[:, P_HEAD] = np.arange(n_pages)
    pg[:, P_NR] = 1
    k[K_V_PT0] = V_PTE0 + file_pages
    vma = np.zeros((n_vmas, V_PTE0 + file_pages + -(-file_pages // PTRS_PER_PTE)), np.int64)
    vma[:, V_FILE] = np.arange(n_vmas) % n_files
    vma[:, V_POS] = np.arange(n_vmas)
    vma[:, V_WRITER] = -1
    vma[:, V_LINE_CPU] = -1
    file = np.zeros((n_files, N_FL), np.int64)
    file[:, FL_VMA] = -1
    file[:, FL_PAGES] = file_pages
    core = np.zeros((n_cores, C_ACK0 + n_threads), np.int64)
    core[:, C_THREAD] = -1
    core[:, C_RQ_HEAD] = -1
    core[:, C_RQ_TAIL] = -1
    core[:, C_IDLE_POS] = np.arange(n_cores - 1, -1, -1)
    core[:, C_FB0:] = -1
    rq = np.zeros((n_rq, N_RQ), np.int64)
    rq[:, RQ_NEXT] = np.arange(1, n_rq + 1)
    rq[-1, RQ_NEXT] = -1
    rq[:, RQ_OWNER] = -1
    ev = np.zeros((cap, 4), np.int64)
    return State(g=g, k=k, t=t, pg=pg, vma=vma, file=file, core=core, rq=rq, ev=ev)
