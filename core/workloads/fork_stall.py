"""fork_stall: a large running app that forks while background threads read under an I/O
throttle (the review thread's question: how long may a fault hold a VMA lock?).

The process is app_launch's (core/workloads/app_launch.py: the framework, libraries, app
code and apk mappings, the anonymous heap, `app_mappers` threads cycling mmap / mprotect /
munmap), running rather than starting, with three additions:

- **Foreground**: `threads` workers run app_launch's access traces again and again
  (`rounds` counts finished traces, so `throughput_rounds_s` is completed work); their
  faults are `fault_latency_p50_us` / `_p99_us`.
- **Background**: `fork_bg_threads` threads in the throttled block cgroup (T_BLKCG = 1,
  `device.throttle_read_mbps` / `_iops`, blk-throttle in core/blockdev.py) read a cold
  64 MB file mapping (a plugin's code, an update or a database: no foreground thread
  touches it) in runs of pages at random places, faulting it in with readahead. Their
  faults are `bg_fault_latency_p99_us`. The mapping is private (MAP_PRIVATE: a COW
  mapping, which the review's fork rule still locks) or, with `fork_bg_shared`, a
  read-only MAP_SHARED one, which the rule leaves alone. A thread gets its own blkcg only
  under cgroup v1 (Android's per-thread task profiles); under v2 the io controller is a
  domain controller and the throttled readers would be another process.
- **fork()**: one thread calls fork() every `fork_period_ms` (counted from the previous
  return, the first at a random phase), core/mm.py's dup_mmap over `fork_vmas` VMAs: the
  modelled ones (the objects and the mappers' regions, spread evenly in address order
  among the others) and the rest, of which `fork_anon_pct` % are anonymous with an
  anon_vma holding `fork_anon_rss_mb` of mapped pages between them (their PTEs copied),
  the others file mappings (no PTE copy). The background file lies `fork_bg_pos_pct` %
  of the way up the address order: mmap places new mappings top-down, so a file mapped
  late in an app's life tends to sit below most of its older mappings, and dup_mmap, which
  walks upwards, reaches it before them (the default, 25, says so; the VMAs before it are
  the ones a stalled fork has already write-locked). The child is not simulated.

Object layout: 0-3 the app's files (0-2 code, MAP_PRIVATE; 3 the apk, a read-only
MAP_SHARED mapping as zip archives are mapped, so not a COW mapping), 4 the heap (written
before time 0: it has an anon_vma), 5 the background file, then the mappers' regions.
"""

import numpy as np
from numba import njit

from core.params import fork_modelled_vmas
from core.sched import call, exit_thread, sleep_for
from core.state import (
    FL_PAGES,
    FL_VMA,
    G_DRAINING,
    K_AL_LOOP,
    K_FORK_BULK_NS,
    K_FORK_VMAS,
    K_FS_PERIOD_NS,
    K_THREADS,
    M_FORK,
    ROLE_BG,
    ROLE_FORKER,
    T_BLKCG,
    T_FILE,
    T_PC,
    T_ROLE,
    T_VMA,
    T_W_RUN,
    V_ANON_VMA,
    V_ATTACHED,
    V_FLAGS,
    V_POS,
    VM_MAYWRITE,
    W_FS_BG,
    W_FS_BG_TOUCH,
    W_FS_FORK,
    W_FS_FORKED,
    W_FS_FORKER,
)
from core.workloads import app_launch
from core.workloads.userloop import touch_pages

APK_OBJ = 3                           # base.apk, the fourth of APP_OBJECTS
BG_OBJ = app_launch.N_OBJ             # the background threads' cold file
BG_MB = app_launch.HEAP_MB            # 64 MB: as wide as the widest object already is
N_EXTRA = 1


def constants(p, k) -> None:
    """fork_stall's constants on top of app_launch's (core.simulator.constants)."""
    w = p.workload
    c = p.costs
    app_launch.constants(p, k, N_EXTRA)
    k[K_THREADS] = w.threads + w.app_mappers + w.fork_bg_threads + 1
    k[K_AL_LOOP] = 1
    k[K_FS_PERIOD_NS] = int(w.fork_period_ms * 1e6)
    k[K_FORK_VMAS] = w.fork_vmas
    # The VMAs no thread faults, each at the average cost of its kind: fork_anon_pct % are
    # anonymous with an anon_vma (fork_anon_vma_ns, plus their share of the
    # fork_anon_rss_mb of PTEs), the others file mappings without one (fork_file_vma_ns).
    bulk = w.fork_vmas - fork_modelled_vmas(w)
    n_anon = bulk * w.fork_anon_pct // 100
    total = (n_anon * c.fork_anon_vma_ns + (bulk - n_anon) * c.fork_file_vma_ns
             + (w.fork_anon_rss_mb * 256 if n_anon else 0) * c.fork_pte_ns)
    k[K_FORK_BULK_NS] = total // bulk


def build_state(p, k):
    w = p.workload
    S = app_launch.build_state(p, k, N_EXTRA)
    S.file[BG_OBJ, FL_PAGES] = BG_MB * 256
    S.file[BG_OBJ, FL_VMA] = BG_OBJ
    S.vma[BG_OBJ, V_ATTACHED] = 1
    # vm_flags: MAP_PRIVATE mappings (the code, the heap, the regions) may be written
    # (VM_MAYWRITE without VM_SHARED: COW mappings); the apk and a shared background file
    # are MAP_SHARED of a read-only fd, which do_mmap gives neither bit.
    n_v = S.vma.shape[0]
    S.vma[:, V_FLAGS] = VM_MAYWRITE
    S.vma[APK_OBJ, V_FLAGS] = 0
    if w.fork_bg_shared:
        S.vma[BG_OBJ, V_FLAGS] = 0
    S.vma[app_launch.HEAP, V_ANON_VMA] = 1
    # Address order: the modelled VMAs spread evenly among the fork_vmas, but for the
    # background file, which lies fork_bg_pos_pct % of the way up.
    others = [v for v in range(n_v) if v != BG_OBJ]
    for i, v in enumerate(others):
        S.vma[v, V_POS] = (i + 1) * w.fork_vmas // n_v
    bg = min(w.fork_vmas - 1, w.fork_bg_pos_pct * w.fork_vmas // 100)
    while bg in S.vma[others, V_POS]:
        bg += 1 if bg + 1 < w.fork_vmas else -1
    S.vma[BG_OBJ, V_POS] = bg
    first_bg = w.threads + w.app_mappers
    for i in range(w.fork_bg_threads):
        t = first_bg + i
        S.t[t, T_ROLE] = ROLE_BG
        S.t[t, T_BLKCG] = 1
        S.t[t, T_PC] = W_FS_BG
        S.t[t, T_FILE] = BG_OBJ
        S.t[t, T_VMA] = BG_OBJ
    forker = first_bg + w.fork_bg_threads
    S.t[forker, T_ROLE] = ROLE_FORKER
    S.t[forker, T_PC] = W_FS_FORKER
    return S


@njit(cache=True)
def step(S, tid, pc):
    # -- background readers ------------------------------------------------------------
    if pc == W_FS_BG:
        if S.g[G_DRAINING]:
            exit_thread(S, tid)
            return False
        app_launch.begin_access(S, tid, S.t[tid, T_FILE], W_FS_BG_TOUCH)
        return False

    if pc == W_FS_BG_TOUCH:
        return touch_pages(S, tid, S.t[tid, T_VMA], S.t[tid, T_W_RUN], W_FS_BG, W_FS_BG_TOUCH)

    # -- the forking thread ------------------------------------------------------------
    if pc == W_FS_FORKER:
        sleep_for(S, tid, np.random.randint(0, S.k[K_FS_PERIOD_NS]), W_FS_FORK)
        return False

    if pc == W_FS_FORK:
        if S.g[G_DRAINING]:
            exit_thread(S, tid)
            return False
        call(S, tid, M_FORK, W_FS_FORKED)
        return True

    if pc == W_FS_FORKED:
        sleep_for(S, tid, S.k[K_FS_PERIOD_NS], W_FS_FORK)
        return False

    raise RuntimeError("fork_stall: unknown program counter")

