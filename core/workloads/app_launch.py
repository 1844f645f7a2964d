"""app_launch: an Android app start on an 8-core phone (docs/model.md, Workloads).

What the start does, as the model builds it (conf/scenario/app_launch.yaml gives the values
and their reasons):

- The process is new (forked from zygote), so its file mappings have no PTEs yet: fork does
  not copy PTEs of shared file mappings, they are faulted in lazily. The page cache is warm
  for what every app uses and partly warm for the app's own files.
- Objects, one VMA each, all in the one mm:
    0  framework boot image and oat (boot.art/boot.oat, framework odex)  48 MB  cached
    1  shared libraries (libart, libhwui, libc++, ...)                   16 MB  cached
    2  the app's compiled code (base.odex/vdex)                          24 MB  app_cached_pct
    3  base.apk (dex, resources.arsc, res/)                               32 MB  app_cached_pct
    4  the heap (Java and native, anonymous)                              64 MB  untouched
  Cached parts are whole 64 KiB extents (what readahead and fault-around leave behind),
  chosen at random per extent.
- `threads` workers each run a trace of `app_touches` accesses. An access picks an object
  (the heap with app_anon_pct percent, the files by their weights 30/15/30/25 of the
  rest), a random page in it and a sequential run of pages from there (geometric length,
  mean app_run_pages: code and resources are read with locality), touching each page:
  file pages with read faults (fault-around, readahead from the UFS device), heap pages
  with write faults (do_anonymous_page). Between accesses the thread computes for
  app_work_us (class loading, layout, JIT).
- `app_mappers` threads model the runtime's address-space churn (thread stacks, binder
  buffers, heap trims, JIT code cache protection): every app_map_period_us each maps an
  anonymous region of app_map_kb, `mprotect`s the heap VMA (vma_start_write waits for the
  heap's faulting readers) and unmaps the region: three mmap_lock write acquisitions.
- The start ends when every worker finished its trace: `launch_ms`. The mappers stop then.
"""

import numpy as np
from numba import njit

from core.metrics import ROUNDS
from core.params import APP_HEAP_MB, APP_OBJECTS
from core.sched import call, exit_thread, run_for, sleep_for
from core.state import (
    FL_ANON,
    FL_PAGES,
    FL_VMA,
    FL_WEIGHT,
    G_COUNTERS,
    G_DRAINING,
    G_LAUNCH_LEFT,
    G_LAUNCH_NS,
    G_NOW,
    K_AL_HEAP_VMA,
    K_AL_LOOP,
    K_AL_MAP_PERIOD_NS,
    K_AL_N_OBJ,
    K_AL_RUN_PAGES,
    K_AL_TOUCHES,
    K_AL_WORK_NS,
    K_FILE_PAGES,
    K_N_FILES,
    K_THREADS,
    M_MMAP,
    M_MPROTECT,
    M_MUNMAP,
    ROLE_MAPPER,
    ROLE_WORKER,
    T_FILE,
    T_PAGE,
    T_PC,
    T_ROLE,
    T_ROUNDS,
    T_VMA,
    T_W_LEFT,
    T_W_RUN,
    T_W_VMA2,
    V_ATTACHED,
    W_AL_DONE,
    W_AL_MAPPED,
    W_AL_MAPPER,
    W_AL_MAPPER_END,
    W_AL_MPROTECT,
    W_AL_MUNMAP,
    W_AL_NEXT,
    W_AL_START,
    W_AL_TOUCH,
    make_state,
)
from core.swap import prefill
from core.workloads.userloop import touch_pages

OBJECTS = APP_OBJECTS
HEAP_MB = APP_HEAP_MB
N_OBJ = len(OBJECTS) + 1          # the heap is the last object
HEAP = len(OBJECTS)
EXTENT_PAGES = 16                 # 64 KiB: the cached unit


def constants(p, k, n_extra=0) -> None:
    """Fill app_launch's slots of the constant vector (core.simulator.constants);
    `n_extra` objects more than the app's (fork_stall's)."""
    w = p.workload
    k[K_THREADS] = w.threads + w.app_mappers
    k[K_AL_TOUCHES] = w.app_touches
    k[K_AL_RUN_PAGES] = w.app_run_pages
    k[K_AL_MAP_PERIOD_NS] = int(w.app_map_period_us * 1000)
    k[K_AL_WORK_NS] = int(w.app_work_us * 1000)
    k[K_AL_N_OBJ] = N_OBJ
    k[K_AL_HEAP_VMA] = HEAP
    k[K_N_FILES] = N_OBJ + n_extra + w.app_mappers
    k[K_FILE_PAGES] = max(max(mb for _, mb, _, _ in OBJECTS) * 256, HEAP_MB * 256,
                          w.app_map_kb // 4)


def build_state(p, k, n_extra=0):
    """Objects, VMAs, the warm part of the page cache, and the threads' roles. `n_extra`
    more objects (fork_stall's) sit between the heap and the mappers' regions; the caller
    lays them out."""
    w = p.workload
    n_threads = int(k[K_THREADS])
    width = int(k[K_FILE_PAGES])
    n_obj = N_OBJ + n_extra + w.app_mappers
    S = make_state(k, n_threads=n_threads, n_cores=p.machine.cores, n_pages=n_obj * width,
                   n_files=n_obj, file_pages=width, n_vmas=n_obj)
    rng = np.random.default_rng(0x5EED_A99)      # the cache layout is part of the preset
    file_share = 1000 - 10 * w.app_anon_pct
    for f, (_, mb, cached, weight) in enumerate(OBJECTS):
        pages = mb * 256
        S.file[f, FL_PAGES] = pages
        S.file[f, FL_WEIGHT] = weight * file_share // 1000
        pct = w.app_cached_pct if cached < 0 else cached
        for e in range(0, pages, EXTENT_PAGES):
            if rng.random() * 100 < pct:
                prefill(S, f, -1, e, min(EXTENT_PAGES, pages - e), False)
    S.file[HEAP, FL_PAGES] = HEAP_MB * 256
    S.file[HEAP, FL_ANON] = 1
    S.file[HEAP, FL_WEIGHT] = 1000 - int(S.file[:HEAP, FL_WEIGHT].sum())
    for f in range(N_OBJ):
        S.file[f, FL_VMA] = f
        S.vma[f, V_ATTACHED] = 1
    first_region = N_OBJ + n_extra
    for m in range(w.app_mappers):
        f = first_region + m
        S.file[f, FL_PAGES] = w.app_map_kb // 4
        S.file[f, FL_ANON] = 1
    S.t[:, T_PC] = W_AL_START
    S.t[:, T_ROLE] = ROLE_WORKER
    S.t[:, T_VMA] = -1
    S.t[w.threads:w.threads + w.app_mappers, T_ROLE] = ROLE_MAPPER
    for m in range(w.app_mappers):
        S.t[w.threads + m, T_FILE] = first_region + m
        S.t[w.threads + m, T_W_VMA2] = first_region + m   # the VMA slot its mmap creates
    S.g[G_LAUNCH_LEFT] = w.threads
    return S


@njit(cache=True)
def _pick_object(S):
    r = np.random.randint(0, 1000)
    acc = 0
    for f in range(S.k[K_AL_N_OBJ]):
        acc += S.file[f, FL_WEIGHT]
        if r < acc:
            return f
    return S.k[K_AL_N_OBJ] - 1


@njit(cache=True)
def begin_access(S, tid, f, pc):
    """One access of a trace to object f: a random page and a run of geometric length
    (mean K_AL_RUN_PAGES; T_W_RUN is where it ends) from there, after app_work_us of CPU
    work; the touches go on at `pc`."""
    n = S.file[f, FL_PAGES]
    i = np.random.randint(0, n)
    S.t[tid, T_PAGE] = i
    mean = S.k[K_AL_RUN_PAGES]
    length = 1 if mean <= 1 else np.random.geometric(1.0 / mean)
    S.t[tid, T_W_RUN] = min(i + length, n)
    run_for(S, tid, S.k[K_AL_WORK_NS], pc)


@njit(cache=True)
def step(S, tid, pc):
    if pc == W_AL_START:
        if S.t[tid, T_ROLE] == ROLE_MAPPER:
            # Mappers start at a random phase of their period.
            sleep_for(S, tid, np.random.randint(0, S.k[K_AL_MAP_PERIOD_NS]), W_AL_MAPPER)
            return False
        S.t[tid, T_W_LEFT] = S.k[K_AL_TOUCHES]
        S.t[tid, T_PC] = W_AL_NEXT
        return True

    if pc == W_AL_NEXT:
        if S.t[tid, T_W_LEFT] <= 0:
            S.t[tid, T_PC] = W_AL_DONE
            return True
        S.t[tid, T_W_LEFT] -= 1
        f = _pick_object(S)
        S.t[tid, T_FILE] = f
        S.t[tid, T_VMA] = S.file[f, FL_VMA]
        begin_access(S, tid, f, W_AL_TOUCH)
        return False

    if pc == W_AL_TOUCH:
        return touch_pages(S, tid, S.t[tid, T_VMA], S.t[tid, T_W_RUN], W_AL_NEXT, W_AL_TOUCH)

    if pc == W_AL_DONE:
        S.g[G_COUNTERS + ROUNDS] += 1
        S.t[tid, T_ROUNDS] += 1
        if S.k[K_AL_LOOP] and not S.g[G_DRAINING]:
            # fork_stall: a running app's worker starts its trace again.
            S.t[tid, T_PC] = W_AL_START
            return True
        S.g[G_LAUNCH_LEFT] -= 1
        if S.g[G_LAUNCH_LEFT] == 0:
            S.g[G_LAUNCH_NS] = S.g[G_NOW]
            S.g[G_DRAINING] = 1                    # the mappers stop at their next cycle
        exit_thread(S, tid)
        return False

    # -- the mappers --------------------------------------------------------------------
    if pc == W_AL_MAPPER:
        call(S, tid, M_MMAP, W_AL_MAPPED)
        return True

    if pc == W_AL_MAPPED:
        call(S, tid, M_MPROTECT, W_AL_MPROTECT)
        return True

    if pc == W_AL_MPROTECT:
        call(S, tid, M_MUNMAP, W_AL_MUNMAP)
        return True

    if pc == W_AL_MUNMAP:
        if S.g[G_DRAINING]:
            exit_thread(S, tid)
            return False
        sleep_for(S, tid, S.k[K_AL_MAP_PERIOD_NS], W_AL_MAPPER_END)
        return False

    if pc == W_AL_MAPPER_END:
        S.t[tid, T_PC] = W_AL_MAPPER
        return True

    raise RuntimeError("app_launch: unknown program counter")
