"""Reclaim of the memcg's LRU (mm/vmscan.c), run on the charging thread.

`try_to_free_mem_cgroup_pages` -> `do_try_to_free_pages`: priorities DEF_PRIORITY (12)
down to 0 until `nr_to_reclaim` folios are freed. At each priority:
- classic (`shrink_lruvec`): scan `lru_size >> priority` folios in batches of
  SWAP_CLUSTER_MAX (32), stopping once `nr_to_reclaim` are freed;
- MGLRU (`lru_gen_shrink_lruvec` -> `try_to_shrink_lruvec`): loop `get_nr_to_scan` then
  `evict_folios` until the folios scanned reach `nr_to_scan`, or a batch returns 0 (only
  two generations were left). Memcg reclaim never stops early inside a priority
  (`should_abort_scan` is for root reclaim). `get_nr_to_scan` is `lru_size >> priority`,
  except when `should_run_aging` says aging is due (three generations or fewer): at
  DEF_PRIORITY it tries to get away without aging (with two generations that means
  scanning nothing), below it ages (`try_to_inc_max_seq`) and ends the priority without
  evicting.
A batch is:

1. `isolate` under lru_lock (spinning with interrupts off if contended): classic takes up
   to 32 folios off the inactive tail; MGLRU `scan_folios` takes up to MIN_LRU_BATCH (64)
   off the tail of the oldest generation, scanning at most min(nr_to_scan, MAX_LRU_BATCH)
   and sorting promoted folios to their generation on the way, all under the lock.
2. `shrink_folio_list` without lru_lock: a locked folio or one with extra references is
   kept; a mapped folio whose PTE is young is referenced (MGLRU: `lru_gen_look_around`
   promotes it and its young neighbours; classic: `folio_check_references` keeps it once,
   activates it the second time); a mapped old folio is unmapped (`try_to_unmap`, its PTE
   cleared: the owner will fault again); an unmapped clean folio is freed
   (`__remove_mapping`), leaving a shadow, and uncharged.
3. `move_folios_to_lru` under lru_lock again for the kept ones (MGLRU never puts a rejected
   folio back into the oldest generation: it goes in as active, `max_seq - 1`).

MGLRU eviction needs three generations. With only two, the reclaimer ages first
(`try_to_inc_max_seq`): it walks the page tables of the mm (`walk_mm`) under
`mmap_read_trylock`, chunk by chunk, promoting young folios to `max_seq`, then adds a
generation under lru_lock (`inc_max_seq`). A reclaimer that finds the mm already being
walked by another adds the generation at once without walking (`iterate_mm_list`). A
failed trylock skips the walk (`walk_mm` returns -EBUSY) and still adds the generation.
This is the aging feedback of 6.14+ ("mm/mglru: rework aging feedback"): aging is due
when three generations or fewer are left, whatever their sizes.
MGLRU's evict_folios (v7.0-rc3) gives the folios shrink_folio_list rejected one more pass
when they are not active, not mapped, not dirty and not under writeback ("retry folios
that may have missed folio_rotate_reclaimable()"): the others go back first, under
lru_lock, and the clean ones are shrunk again after it, once (skip_retry); whatever that
pass rejects goes back as well. A folio that was locked (a read in flight, a PTE install)
in the first pass may have been unlocked by then. Classic reclaim has no such pass.
Simplifications: one memcg, one node and zone; file folios only (memcg reclaim does not
scan anon here, core.params).
"""

from numba import njit

from core.hist import hist_add_n
from core.lru import (
    folio_update_gen,
    inc_max_seq,
    list_add,
    list_del,
    lru_gen_from_seq,
    lru_hold_ns,
    lruvec_add_folio,
    lruvec_del_folio,
    nr_gens,
    spin_lock_irq_lru,
    spin_unlock_irq_lru,
    try_to_inc_min_seq,
    workingset_age_nonresident,
    workingset_eviction,
)
from core.metrics import (
    AGING_RUNS,
    PAGES_RECLAIMED,
    PGACTIVATE,
    PGDEACTIVATE,
    PGSCAN,
    RECLAIM_NO_PROGRESS,
    WORKINGSET_ACTIVATE,
)
from core.prefetch import prefetch_item, prefetch_row
from core.rwsem import down_read_trylock, up_read
from core.sched import call, proceed, run_for
from core.state import (
    FL_VMA,
    G_AGE_HIST,
    G_AGING_SEQ,
    G_AGING_WALKER,
    G_COUNTERS,
    G_GEN_PAGES,
    G_LRU_SIZE,
    G_LRU_TAIL,
    G_MAX_SEQ,
    G_MIN_SEQ,
    G_NOW,
    G_USAGE,
    G_WS_SNAPSHOT,
    K_AGING_BASE,
    K_AGING_CHUNK,
    K_AGING_PTE,
    K_FILE_PAGES,
    K_LRU,
    K_RC_EVICT,
    K_RC_RMAP,
    K_RC_SCAN,
    LIST_ACTIVE,
    LIST_INACTIVE,
    LRU_MGLRU,
    MIN_NR_GENS,
    P_ADDED_NS,
    P_FLAGS,
    P_GEN,
    P_HEAD,
    P_NR,
    P_REFS,
    PC_RETURN,
    PG_ACTIVE,
    PG_ANON,
    PG_DIRTY,
    PG_ISOLATED,
    PG_LOCKED,
    PG_LRU,
    PG_REFERENCED,
    PG_UPTODATE,
    PG_WORKINGSET,
    PG_WRITEBACK,
    PTE_PRESENT,
    PTE_YOUNG,
    RC_AGING,
    RC_AGING_CHUNK,
    RC_AGING_CHUNK_DONE,
    RC_AGING_DONE,
    RC_AGING_INC,
    RC_AGING_INC_LOCKED,
    RC_BEGIN,
    RC_ISOLATE,
    RC_ISOLATE_LOCKED,
    RC_PRIORITY,
    RC_PUTBACK,
    RC_PUTBACK_DONE,
    RC_PUTBACK_LOCKED,
    RC_SHRINK,
    RC_SHRINK_RETRY,
    RECLAIM_BATCH,
    RECLAIM_SLOTS,
    T_PC,
    T_R_BATCH0,
    T_R_BATCH_N,
    T_R_BUDGET,
    T_R_DELTA,
    T_R_MAY_DEACT,
    T_R_NR_ACTIVE,
    T_R_PRIORITY,
    T_R_RECLAIMED,
    T_R_RETRIED,
    T_R_SCANNED,
    T_R_SEQ,
    T_R_TARGET,
    T_R_WALK_PAGE,
    T_R_WALK_VMA,
    V_ATTACHED,
    V_FILE,
    V_PTE0,
)

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32
MIN_LRU_BATCH = RECLAIM_SLOTS   # BITS_PER_LONG: scan_folios' batch, look-around's window
MAX_LRU_BATCH = MIN_LRU_BATCH * 64   # the most scan_folios scans under one lru_lock hold


@njit(cache=True)
def start_reclaim(S, tid, nr_to_reclaim, ret):
    """try_to_free_mem_cgroup_pages(nr): result in r_reclaimed when `ret` runs."""
    S.t[tid, T_R_TARGET] = max(nr_to_reclaim, SWAP_CLUSTER_MAX)
    call(S, tid, RC_BEGIN, ret)


@njit(cache=True)
def should_run_aging(S):
    """MGLRU should_run_aging (6.14+), file type: (aging due, nr_to_scan). With two
    generations eviction is impossible ("have to run aging") and there is nothing to scan;
    with three, aging is "better" though eviction is still possible."""
    gens = nr_gens(S)
    if gens < MIN_NR_GENS + 1:
        return True, 0
    total = 0
    for seq in range(S.g[G_MIN_SEQ], S.g[G_MAX_SEQ] + 1):
        total += S.g[G_GEN_PAGES + lru_gen_from_seq(seq)]
    return gens == MIN_NR_GENS + 1, total


AGE_INSTEAD = -1


@njit(cache=True)
def get_nr_to_scan(S, priority):
    """MGLRU get_nr_to_scan: folios to scan at this priority, or AGE_INSTEAD ("stop
    scanning this lruvec as it's low on cold folios": try_to_inc_max_seq, then the next
    priority). At DEF_PRIORITY it "tries to get away with not aging"."""
    aging, nr_to_scan = should_run_aging(S)
    if not aging or priority == DEF_PRIORITY:
        return nr_to_scan >> priority
    return AGE_INSTEAD


# ---- isolation (lru_lock held) -------------------------------------------------------------
@njit(cache=True, inline="always")
def _prefetch_scan(S, p):
    """Warm the folios two and three places up the list from p, guessing they follow p in
    the file: a readahead window's folios enter the LRU in page order, and 80 % of a
    seed_thrash inactive list's neighbours are the next folio of the file."""
    nr = S.pg[p, P_NR]
    prefetch_row(S.pg, p + 2 * nr)
    prefetch_row(S.pg, p + 3 * nr)


@njit(cache=True, inline="always")
def _prefetch_ptes(S, p):
    """Warm the first PTE of an isolated folio for shrink_folio_list, which reads it after
    the lock is dropped."""
    v, idx = _pte_of(S, p)
    if v >= 0:
        prefetch_item(S.vma, v, V_PTE0 + idx)


@njit(cache=True, _nrt=False)
def isolate_folios(S, tid):
    """scan_folios / isolate_lru_folios: fill r_batch. Returns folios scanned (the lock's
    hold time); pages scanned go to PGSCAN and the scan targets.

    MGLRU (`scan_folios`): the oldest generation only, from its tail, until MIN_LRU_BATCH
    pages are isolated or min(r_budget, MAX_LRU_BATCH) folios were looked at; nothing with
    only two generations; r_delta gets the pages scanned. Classic: folios off the inactive
    tail until SWAP_CLUSTER_MAX pages (or r_budget, if less) were scanned; r_budget loses
    that nr_to_scan (shrink_lruvec: nr[lru] -= min(nr[lru], SWAP_CLUSTER_MAX))."""
    n = 0
    scanned = 0
    pages = 0
    budget = S.t[tid, T_R_BUDGET]
    if S.k[K_LRU] == LRU_MGLRU:
        remaining = min(budget, MAX_LRU_BATCH)
        isolated = 0
        if nr_gens(S) > MIN_NR_GENS:
            lst = lru_gen_from_seq(S.g[G_MIN_SEQ])
            while isolated < MIN_LRU_BATCH and remaining > 0:
                p = S.g[G_LRU_TAIL + lst]
                if p < 0:
                    break
                _prefetch_scan(S, p)
                scanned += 1
                pages += S.pg[p, P_NR]
                remaining -= 1
                if S.pg[p, P_GEN] != S.g[G_MIN_SEQ]:
                    # sort_folio: promoted since it was listed; move it to its generation.
                    list_del(S, p)
                    list_add(S, lru_gen_from_seq(S.pg[p, P_GEN]), p)
                    continue
                lruvec_del_folio(S, p)
                S.pg[p, P_FLAGS] |= PG_ISOLATED
                _prefetch_ptes(S, p)
                S.t[tid, T_R_BATCH0 + n] = p
                n += 1
                isolated += S.pg[p, P_NR]
        # scan_folios' return: "isolated || !remaining ? scanned : 0"
        S.t[tid, T_R_DELTA] = pages if (n > 0 or remaining == 0) else 0
    else:
        nr_to_scan = min(budget, SWAP_CLUSTER_MAX)
        while n < RECLAIM_BATCH and pages < nr_to_scan:
            p = S.g[G_LRU_TAIL + LIST_INACTIVE]
            if p < 0:
                break
            _prefetch_scan(S, p)
            scanned += 1
            pages += S.pg[p, P_NR]
            lruvec_del_folio(S, p)
            S.pg[p, P_FLAGS] |= PG_ISOLATED
            _prefetch_ptes(S, p)
            S.t[tid, T_R_BATCH0 + n] = p
            n += 1
        S.t[tid, T_R_BUDGET] = budget - min(max(pages, 1), SWAP_CLUSTER_MAX)
    S.t[tid, T_R_BATCH_N] = n
    S.g[G_COUNTERS + PGSCAN] += pages
    return scanned


@njit(cache=True)
def shrink_active_list(S, nr):
    """Classic: deactivate folios from the active tail until nr pages were taken (lru_lock
    held; the kernel drops it around folio_referenced). Returns folios moved. A mapped
    folio loses its young bits on the way (folio_referenced: file folios that are not
    VM_EXEC are deactivated even if referenced), and every deactivated folio is marked
    PG_workingset."""
    moved = 0
    pages = 0
    while pages < nr:
        p = S.g[G_LRU_TAIL + LIST_ACTIVE]
        if p < 0:
            break
        list_del(S, p)
        v, idx = _pte_of(S, p)
        if v >= 0:
            for i in range(idx, idx + S.pg[p, P_NR]):
                S.vma[v, V_PTE0 + i] &= ~PTE_YOUNG
        S.pg[p, P_FLAGS] &= ~PG_ACTIVE
        S.pg[p, P_FLAGS] |= PG_WORKINGSET
        list_add(S, LIST_INACTIVE, p)
        moved += 1
        pages += S.pg[p, P_NR]
    S.g[G_COUNTERS + PGDEACTIVATE] += pages
    return moved


@njit(cache=True)
def prepare_scan_control(S, tid):
    """Classic, once per shrink_node (per priority): deactivate the active file list when
    refaults were activated since the last snapshot_refaults ("a new workingset is being
    established"), or when the inactive list is low. The kernel reads the memcg's
    WORKINGSET_ACTIVATE_FILE through rstat, flushed when stale or after enough updates;
    the model reads the exact count."""
    refaults = S.g[G_COUNTERS + WORKINGSET_ACTIVATE]
    S.t[tid, T_R_MAY_DEACT] = 1 if (refaults != S.g[G_WS_SNAPSHOT] or inactive_is_low(S)) else 0


@njit(cache=True)
def snapshot_refaults(S):
    """Classic, at the end of do_try_to_free_pages: remember WORKINGSET_ACTIVATE_FILE."""
    S.g[G_WS_SNAPSHOT] = S.g[G_COUNTERS + WORKINGSET_ACTIVATE]


@njit(cache=True)
def inactive_is_low(S):
    """inactive_is_low with inactive_ratio 1 (memcgs under 1 GiB; sqrt(10*GB) above)."""
    inactive = S.g[G_LRU_SIZE + LIST_INACTIVE]
    active = S.g[G_LRU_SIZE + LIST_ACTIVE]
    gb = (inactive + active) >> 18
    ratio = 1
    if gb:
        r = 1
        while (r + 1) * (r + 1) <= 10 * gb:
            r += 1
        ratio = r
    return inactive * ratio < active


# ---- shrink_folio_list (no lru_lock) ------------------------------------------------------
@njit(cache=True)
def _pte_of(S, p):
    """The VMA mapping folio p and its page index there, or (-1, -1)."""
    n = S.k[K_FILE_PAGES]
    f = p // n
    v = S.file[f, FL_VMA]
    return v, p - f * n


@njit(cache=True, _nrt=False)
def lru_gen_look_around(S, v, index):
    """Promote the young PTEs around `index` (MIN_LRU_BATCH window) to max_seq, clearing
    their young bits. Returns PTEs looked at."""
    n = S.k[K_FILE_PAGES]
    start = index - MIN_LRU_BATCH // 2
    start = max(start, 0)
    end = start + MIN_LRU_BATCH
    end = min(end, n)
    base = S.vma[v, V_FILE] * n
    seq = S.g[G_MAX_SEQ]
    for i in range(start, end):
        pte = S.vma[v, V_PTE0 + i]
        if (pte & (PTE_PRESENT | PTE_YOUNG)) == (PTE_PRESENT | PTE_YOUNG):
            S.vma[v, V_PTE0 + i] = PTE_PRESENT
            q = S.pg[base + i, P_HEAD]
            if (S.pg[q, P_FLAGS] & (PG_LRU | PG_ANON)) == PG_LRU:
                folio_update_gen(S, q, seq)
    return end - start


@njit(cache=True, _nrt=False)
def shrink_folio_list(S, tid):
    """Decide each isolated folio: keep (r_batch keeps it) or free it. Returns cost_ns.

    A large folio is one decision: folio_referenced walks all its PTEs (one mapping, so at
    most one reference counted: referenced_ptes counts VMAs), try_to_unmap clears them all,
    __remove_mapping frees every page and leaves the shadow on each."""
    n = S.t[tid, T_R_BATCH_N]
    kept = 0
    cost = 0
    freed = 0
    mglru = S.k[K_LRU] == LRU_MGLRU
    for i in range(n):
        p = S.t[tid, T_R_BATCH0 + i]
        fl = S.pg[p, P_FLAGS]
        nr = S.pg[p, P_NR]
        cost += S.k[K_RC_SCAN]
        keep = False
        activate = False
        if (fl & PG_LOCKED) or S.pg[p, P_REFS] > 0 or not (fl & PG_UPTODATE):
            keep = True                       # folio_trylock fails / folio_ref_freeze fails
        else:
            v, idx = _pte_of(S, p)
            mapped = False
            young = -1
            if v >= 0:
                for j in range(idx, idx + nr):
                    pte = S.vma[v, V_PTE0 + j]
                    if pte & PTE_PRESENT:
                        mapped = True
                        if young < 0 and (pte & PTE_YOUNG):
                            young = j
            if mapped:
                cost += S.k[K_RC_RMAP]        # folio_referenced: rmap walk of the mapping
                if young >= 0:
                    # folio_referenced_one: ptep_clear_flush_young on every PTE of the folio
                    # (MGLRU: and lru_gen_look_around at the first young one).
                    for j in range(idx, idx + nr):
                        S.vma[v, V_PTE0 + j] &= ~PTE_YOUNG
                    keep = True
                    if mglru:
                        cost += lru_gen_look_around(S, v, young) * S.k[K_AGING_PTE]
                        activate = True
                    else:
                        # folio_check_references: mapped folios start with one reference
                        # from the fault; look twice before activating.
                        if fl & PG_REFERENCED:
                            activate = True
                        S.pg[p, P_FLAGS] |= PG_REFERENCED
                if not keep:
                    for j in range(idx, idx + nr):
                        S.vma[v, V_PTE0 + j] = 0   # try_to_unmap; the TLB flush is batched
                    cost += S.k[K_RC_RMAP]
        if keep:
            if activate:
                S.pg[p, P_FLAGS] |= PG_ACTIVE
                S.g[G_COUNTERS + PGACTIVATE] += nr    # activate_locked
            S.t[tid, T_R_BATCH0 + kept] = p
            kept += 1
            continue
        # __remove_mapping: the folio leaves the page cache, a shadow stays behind.
        hist_add_n(S, G_AGE_HIST, S.g[G_NOW] - S.pg[p, P_ADDED_NS], nr)
        workingset_eviction(S, p)
        S.pg[p, P_FLAGS] = 0
        S.pg[p, P_GEN] = 0
        for q in range(p + 1, p + nr):
            S.pg[q, P_HEAD] = q
        S.pg[p, P_NR] = 1
        S.g[G_USAGE] -= nr                    # mem_cgroup_uncharge_folios
        cost += S.k[K_RC_EVICT]
        freed += nr
    S.t[tid, T_R_BATCH_N] = kept
    S.t[tid, T_R_RECLAIMED] += freed
    S.g[G_COUNTERS + PAGES_RECLAIMED] += freed
    return cost


@njit(cache=True)
def folio_mapped(S, p):
    """Any PTE of folio p present."""
    v, idx = _pte_of(S, p)
    if v < 0:
        return False
    for j in range(idx, idx + S.pg[p, P_NR]):
        if S.vma[v, V_PTE0 + j] & PTE_PRESENT:
            return True
    return False


@njit(cache=True)
def evict_folios_split_retry(S, tid):
    """evict_folios after its first shrink_folio_list: move the rejected folios that are
    not active, mapped, dirty or under writeback to the front of the batch, for the second
    pass. Returns how many; the batch keeps the rest after them."""
    n = S.t[tid, T_R_BATCH_N]
    k = 0
    for i in range(n):
        p = S.t[tid, T_R_BATCH0 + i]
        if not (S.pg[p, P_FLAGS] & (PG_ACTIVE | PG_DIRTY | PG_WRITEBACK)) \
                and not folio_mapped(S, p):
            S.t[tid, T_R_BATCH0 + i] = S.t[tid, T_R_BATCH0 + k]
            S.t[tid, T_R_BATCH0 + k] = p
            k += 1
    return k


@njit(cache=True)
def move_folios_to_lru(S, tid, first):
    """Put the kept folios from batch slot `first` on back, lru_lock held; the batch keeps
    slots 0..first-1. Returns folios moved."""
    n = S.t[tid, T_R_BATCH_N]
    mglru = S.k[K_LRU] == LRU_MGLRU
    for i in range(first, n):
        p = S.t[tid, T_R_BATCH0 + i]
        S.pg[p, P_FLAGS] &= ~PG_ISOLATED
        if mglru:
            # evict_folios: "don't add rejected folios to the oldest generation".
            S.pg[p, P_FLAGS] |= PG_ACTIVE
            lruvec_add_folio(S, p, True)
        else:
            lruvec_add_folio(S, p, False)
            if S.pg[p, P_FLAGS] & PG_ACTIVE:
                workingset_age_nonresident(S, S.pg[p, P_NR])
    S.t[tid, T_R_BATCH_N] = first
    return n - first


# ---- the aging walk (walk_mm) -------------------------------------------------------------
@njit(cache=True)
def walk_mm_chunk(S, tid):
    """walk_page_range from (r_walk_vma, r_walk_page) until MAX_LRU_BATCH young folios were
    batched or the mm ends. Returns (ptes_scanned, finished)."""
    nv = S.vma.shape[0]
    n = S.k[K_FILE_PAGES]
    chunk = S.k[K_AGING_CHUNK]
    seq = S.g[G_MAX_SEQ]
    v = S.t[tid, T_R_WALK_VMA]
    i = S.t[tid, T_R_WALK_PAGE]
    scanned = 0
    batched = 0
    while v < nv:
        if S.vma[v, V_ATTACHED]:
            base = S.vma[v, V_FILE] * n
            while i < n:
                pte = S.vma[v, V_PTE0 + i]
                scanned += 1
                if (pte & (PTE_PRESENT | PTE_YOUNG)) == (PTE_PRESENT | PTE_YOUNG):
                    S.vma[v, V_PTE0 + i] = PTE_PRESENT
                    q = S.pg[base + i, P_HEAD]
                    if (S.pg[q, P_FLAGS] & (PG_LRU | PG_ANON)) == PG_LRU:
                        folio_update_gen(S, q, seq)
                    batched += 1
                i += 1
                if batched >= chunk:
                    S.t[tid, T_R_WALK_VMA] = v
                    S.t[tid, T_R_WALK_PAGE] = i
                    return scanned, False
        v += 1
        i = 0
    S.t[tid, T_R_WALK_VMA] = v
    S.t[tid, T_R_WALK_PAGE] = 0
    return scanned, True


# ---- the reclaim program -------------------------------------------------------------------
@njit(cache=True, inline="always")
def _batch_done(S, tid):
    """After a batch: the next one, or the next priority (MGLRU try_to_shrink_lruvec:
    evict_folios returned 0, or the folios scanned reached this iteration's nr_to_scan)."""
    if S.k[K_LRU] == LRU_MGLRU and (S.t[tid, T_R_DELTA] == 0
                                    or S.t[tid, T_R_SCANNED] >= S.t[tid, T_R_BUDGET]):
        S.t[tid, T_R_PRIORITY] -= 1
        S.t[tid, T_PC] = RC_PRIORITY
    else:
        S.t[tid, T_PC] = RC_ISOLATE


@njit(cache=True, _nrt=False)
def step(S, tid, pc):
    """Run one step of the reclaim program; True to keep stepping, False once the thread
    waits (a burst, a spin)."""
    if pc == RC_BEGIN:
        S.t[tid, T_R_RECLAIMED] = 0
        S.t[tid, T_R_PRIORITY] = DEF_PRIORITY
        S.t[tid, T_R_BATCH_N] = 0
        S.t[tid, T_PC] = RC_PRIORITY
        return True

    if pc == RC_PRIORITY:
        # do_try_to_free_pages: the next priority, unless enough was freed.
        if S.t[tid, T_R_RECLAIMED] >= S.t[tid, T_R_TARGET] or S.t[tid, T_R_PRIORITY] < 0:
            if S.t[tid, T_R_RECLAIMED] == 0:
                S.g[G_COUNTERS + RECLAIM_NO_PROGRESS] += 1
            if S.k[K_LRU] != LRU_MGLRU:
                snapshot_refaults(S)
            S.t[tid, T_PC] = PC_RETURN
            return True
        S.t[tid, T_R_SCANNED] = 0
        if S.k[K_LRU] != LRU_MGLRU:
            prepare_scan_control(S, tid)
            # get_scan_count, SCAN_FILE (no swap): each file list at lru_size >> priority.
            S.t[tid, T_R_BUDGET] = S.g[G_LRU_SIZE + LIST_INACTIVE] >> S.t[tid, T_R_PRIORITY]
            S.t[tid, T_R_NR_ACTIVE] = S.g[G_LRU_SIZE + LIST_ACTIVE] >> S.t[tid, T_R_PRIORITY]
        S.t[tid, T_PC] = RC_ISOLATE
        return True

    if pc == RC_ISOLATE:
        if S.k[K_LRU] == LRU_MGLRU:
            # try_to_shrink_lruvec's loop: get_nr_to_scan before every evict_folios.
            nr_to_scan = get_nr_to_scan(S, S.t[tid, T_R_PRIORITY])
            if nr_to_scan == AGE_INSTEAD:
                S.t[tid, T_R_SEQ] = S.g[G_MAX_SEQ]
                S.t[tid, T_R_PRIORITY] -= 1
                call(S, tid, RC_AGING, RC_PRIORITY)
                return True
            if nr_to_scan <= 0:
                S.t[tid, T_R_PRIORITY] -= 1
                S.t[tid, T_PC] = RC_PRIORITY
                return True
            S.t[tid, T_R_BUDGET] = nr_to_scan
        elif S.t[tid, T_R_RECLAIMED] >= S.t[tid, T_R_TARGET] or (
                S.t[tid, T_R_BUDGET] <= 0 and S.t[tid, T_R_NR_ACTIVE] <= 0):
            # shrink_lruvec: until both scan targets are used up or nr_to_reclaim is met
            # (memcg reclaim stops there: no anon to keep proportional).
            S.t[tid, T_R_PRIORITY] -= 1
            S.t[tid, T_PC] = RC_PRIORITY
            return True
        return proceed(S, tid, spin_lock_irq_lru(S, tid, RC_ISOLATE_LOCKED), RC_ISOLATE_LOCKED)

    if pc == RC_ISOLATE_LOCKED:
        moved = 0
        S.t[tid, T_R_RETRIED] = 0
        if S.k[K_LRU] == LRU_MGLRU:
            # evict_folios: isolate, then try_to_inc_min_seq; with two generations left the
            # batch still goes through shrink_folio_list but returns 0 (ends the priority).
            scanned = isolate_folios(S, tid)
            if try_to_inc_min_seq(S):
                S.t[tid, T_R_DELTA] += 1
            if nr_gens(S) <= MIN_NR_GENS:
                S.t[tid, T_R_DELTA] = 0
            S.t[tid, T_R_SCANNED] += S.t[tid, T_R_DELTA]
        else:
            # One pass of shrink_lruvec's loop: SWAP_CLUSTER_MAX off the inactive target
            # (shrink_inactive_list), then off the active one (shrink_list: deactivated only
            # if may_deactivate, the target used up either way).
            scanned = 0
            if S.t[tid, T_R_BUDGET] > 0:
                scanned = isolate_folios(S, tid)
            nr = min(S.t[tid, T_R_NR_ACTIVE], SWAP_CLUSTER_MAX)
            if nr > 0:
                S.t[tid, T_R_NR_ACTIVE] -= nr
                if S.t[tid, T_R_MAY_DEACT]:
                    moved = shrink_active_list(S, nr)
            if scanned == 0 and moved == 0:
                S.t[tid, T_R_BUDGET] = 0
        run_for(S, tid, lru_hold_ns(S, scanned + moved), RC_SHRINK)
        return False

    if pc == RC_SHRINK:
        spin_unlock_irq_lru(S, tid)
        if S.t[tid, T_R_BATCH_N] == 0:
            _batch_done(S, tid)
            return True
        cost = shrink_folio_list(S, tid)
        run_for(S, tid, cost, RC_PUTBACK)
        return False

    if pc == RC_PUTBACK:
        if S.t[tid, T_R_BATCH_N] == 0:
            _batch_done(S, tid)
            return True
        return proceed(S, tid, spin_lock_irq_lru(S, tid, RC_PUTBACK_LOCKED), RC_PUTBACK_LOCKED)

    if pc == RC_PUTBACK_LOCKED:
        retry = 0
        if S.k[K_LRU] == LRU_MGLRU and not S.t[tid, T_R_RETRIED]:
            retry = evict_folios_split_retry(S, tid)
        n = move_folios_to_lru(S, tid, retry)
        run_for(S, tid, lru_hold_ns(S, n), RC_PUTBACK_DONE)
        return False

    if pc == RC_PUTBACK_DONE:
        spin_unlock_irq_lru(S, tid)
        if S.t[tid, T_R_BATCH_N] > 0:
            # evict_folios: `list_splice_init(&clean, &list); skip_retry = true; goto retry;`
            S.t[tid, T_R_RETRIED] = 1
            S.t[tid, T_PC] = RC_SHRINK_RETRY
            return True
        _batch_done(S, tid)
        return True

    if pc == RC_SHRINK_RETRY:
        run_for(S, tid, shrink_folio_list(S, tid), RC_PUTBACK)
        return False

    # -- try_to_inc_max_seq ------------------------------------------------------------------
    if pc == RC_AGING:
        if S.g[G_MAX_SEQ] != S.t[tid, T_R_SEQ]:
            S.t[tid, T_PC] = PC_RETURN           # someone else already aged
            return True
        if S.g[G_AGING_WALKER] >= 0:
            S.t[tid, T_PC] = RC_AGING_INC        # iterate_mm_list: the mm is being walked
            return True
        S.g[G_AGING_WALKER] = tid
        S.g[G_AGING_SEQ] = S.t[tid, T_R_SEQ]
        S.t[tid, T_R_WALK_VMA] = 0
        S.t[tid, T_R_WALK_PAGE] = 0
        S.t[tid, T_PC] = RC_AGING_CHUNK
        return True

    if pc == RC_AGING_CHUNK:
        if S.g[G_MAX_SEQ] != S.t[tid, T_R_SEQ]:
            S.g[G_AGING_WALKER] = -1          # walk_mm: another thread called inc_max_seq
            S.t[tid, T_PC] = PC_RETURN
            return True
        if not down_read_trylock(S):
            S.g[G_AGING_WALKER] = -1          # -EBUSY: no walk, the iteration still ends
            S.t[tid, T_PC] = RC_AGING_INC
            return True
        scanned, finished = walk_mm_chunk(S, tid)
        S.t[tid, T_R_BUDGET] = 1 if finished else 0
        run_for(S, tid, scanned * S.k[K_AGING_PTE], RC_AGING_CHUNK_DONE)
        return False

    if pc == RC_AGING_CHUNK_DONE:
        up_read(S)
        if S.t[tid, T_R_BUDGET]:
            S.g[G_AGING_WALKER] = -1
            S.t[tid, T_PC] = RC_AGING_INC
        else:
            S.t[tid, T_PC] = RC_AGING_CHUNK
        return True

    if pc == RC_AGING_INC:
        if S.g[G_MAX_SEQ] != S.t[tid, T_R_SEQ]:
            S.t[tid, T_PC] = PC_RETURN
            return True
        return proceed(S, tid, spin_lock_irq_lru(S, tid, RC_AGING_INC_LOCKED), RC_AGING_INC_LOCKED)

    if pc == RC_AGING_INC_LOCKED:
        moved = 0
        if S.g[G_MAX_SEQ] == S.t[tid, T_R_SEQ]:
            moved = inc_max_seq(S)
            S.g[G_COUNTERS + AGING_RUNS] += 1
        run_for(S, tid, S.k[K_AGING_BASE] + lru_hold_ns(S, moved), RC_AGING_DONE)
        return False

    if pc == RC_AGING_DONE:
        spin_unlock_irq_lru(S, tid)
        S.t[tid, T_PC] = PC_RETURN
        return True

    raise RuntimeError("vmscan: unknown program counter")
