"""The memcg's LRU and its lru_lock (mm/swap.c, mm/vmscan.c list parts, mm/workingset.c).

Two implementations, chosen by `machine.lru`:

- `mglru` (mm/vmscan.c, CONFIG_LRU_GEN): generations `min_seq`..`max_seq` (2 to 4 of
  them), one list per generation. `folio_add_lru` marks a folio active when it is added
  inside a fault on a VMA with recency (`lru_gen_in_fault`); `lru_gen_folio_seq` then puts
  it at `max_seq - 1` (`max_seq` with PG_workingset), other clean file folios at
  `max_seq - 3`, never below `min_seq`. A folio's generation lives in its flags
  (`pg_gen`); promotion (`folio_update_gen`) changes only that, and eviction sorts the
  folio to its list lazily (`sort_folio`), as the kernel does.
- `classic`: inactive and active file lists; new folios go to the inactive head, active on
  a refault within the workingset distance.

`lru_lock` is a queued spinlock taken with interrupts off (spin_lock_irq): waiters keep
their CPU, in FIFO order, and answer TLB-flush IPIs only once they have released it. New
folios reach the lists through a per-CPU batch (`folio_batch`, drained under lru_lock when
`costs.lru_add_batch` folios are in it: 31, v7.0's FOLIO_BATCH_SIZE; a large folio drains
it at once, folio_may_be_lru_cached). The cost of reclaim under contention comes out of
this lock, not a factor.

List sizes and generation sizes count pages, as lru_zone_size and lrugen->nr_pages do: a
large folio (core.state: its head page is the list entry) adds folio_nr_pages. The lock's
hold time counts folios (one list operation each).
"""

from numba import njit

from core.metrics import LRU_LOCK_WAIT_NS, REFAULTS, WORKINGSET_ACTIVATE
from core.sched import (
    end_spin,
    fifo_append,
    local_irq_disable,
    local_irq_enable,
    proceed,
    run_for,
    spin,
)
from core.state import (
    C_FB0,
    C_FB_N,
    G_COUNTERS,
    G_GEN_PAGES,
    G_LRU_HEAD,
    G_LRU_OWNER,
    G_LRU_QHEAD,
    G_LRU_QTAIL,
    G_LRU_SIZE,
    G_LRU_TAIL,
    G_MAX_SEQ,
    G_MIN_SEQ,
    G_NONRESIDENT_AGE,
    G_NOW,
    K_LRU,
    K_LRU_ADD_BATCH,
    K_LRU_OP,
    K_LRU_PER_FOLIO,
    LIST_ACTIVE,
    LIST_ANON,
    LIST_INACTIVE,
    LR_ADD_DRAIN,
    LR_ADD_DRAIN_DONE,
    LR_ADD_DRAIN_LOCKED,
    LRU_MGLRU,
    MAX_NR_GENS,
    MIN_NR_GENS,
    NO_LIST,
    P_FLAGS,
    P_GEN,
    P_LIST,
    P_NEXT,
    P_NR,
    P_PREV,
    P_SHADOW,
    PC_RETURN,
    PG_ACTIVE,
    PG_ANON,
    PG_INBATCH,
    PG_LRU,
    PG_WORKINGSET,
    T_CORE,
    T_PC,
    T_PREEMPT_COUNT,
    T_WAIT_NEXT,
    T_WAIT_START,
    TT_LRU_LOCK,
)


# ---- lru_lock ------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def spin_lock_irq_lru(S, tid, pc):
    """spin_lock_irq(&lruvec->lru_lock). True: held now. False: spinning (core kept,
    interrupts off); continues at `pc` holding the lock."""
    local_irq_disable(S, S.t[tid, T_CORE])
    S.t[tid, T_PREEMPT_COUNT] += 1
    if S.g[G_LRU_OWNER] < 0:
        S.g[G_LRU_OWNER] = tid
        return True
    S.t[tid, T_PC] = pc
    S.t[tid, T_WAIT_START] = S.g[G_NOW]
    S.g[G_LRU_QHEAD], S.g[G_LRU_QTAIL] = fifo_append(S, tid, S.g[G_LRU_QHEAD],
                                                     S.g[G_LRU_QTAIL])
    spin(S, tid, TT_LRU_LOCK)
    return False


@njit(cache=True, inline="always")
def spin_unlock_irq_lru(S, tid):
    if S.g[G_LRU_OWNER] != tid:
        raise RuntimeError("lru_lock invariant: unlock by a thread that is not the owner")
    local_irq_enable(S, S.t[tid, T_CORE])
    S.t[tid, T_PREEMPT_COUNT] -= 1
    head = S.g[G_LRU_QHEAD]
    if head < 0:
        S.g[G_LRU_OWNER] = -1
        return
    nxt = S.t[head, T_WAIT_NEXT]
    S.g[G_LRU_QHEAD] = nxt
    if nxt < 0:
        S.g[G_LRU_QTAIL] = -1
    S.t[head, T_WAIT_NEXT] = -1
    S.g[G_LRU_OWNER] = head
    S.g[G_COUNTERS + LRU_LOCK_WAIT_NS] += S.g[G_NOW] - S.t[head, T_WAIT_START]
    end_spin(S, head, S.t[head, T_PC])


@njit(cache=True, inline="always")
def lru_hold_ns(S, nr_folios):
    return S.k[K_LRU_OP] + nr_folios * S.k[K_LRU_PER_FOLIO]


# ---- list primitives -----------------------------------------------------------------------
@njit(cache=True, inline="always")
def list_add(S, lst, p):
    """Add at the head (the young end); eviction scans from the tail."""
    head = S.g[G_LRU_HEAD + lst]
    S.pg[p, P_PREV] = -1
    S.pg[p, P_NEXT] = head
    if head >= 0:
        S.pg[head, P_PREV] = p
    else:
        S.g[G_LRU_TAIL + lst] = p
    S.g[G_LRU_HEAD + lst] = p
    S.g[G_LRU_SIZE + lst] += S.pg[p, P_NR]
    S.pg[p, P_LIST] = lst


@njit(cache=True, inline="always")
def list_add_tail(S, lst, p):
    tail = S.g[G_LRU_TAIL + lst]
    S.pg[p, P_NEXT] = -1
    S.pg[p, P_PREV] = tail
    if tail >= 0:
        S.pg[tail, P_NEXT] = p
    else:
        S.g[G_LRU_HEAD + lst] = p
    S.g[G_LRU_TAIL + lst] = p
    S.g[G_LRU_SIZE + lst] += S.pg[p, P_NR]
    S.pg[p, P_LIST] = lst


@njit(cache=True, inline="always")
def list_del(S, p):
    lst = S.pg[p, P_LIST]
    prv = S.pg[p, P_PREV]
    nxt = S.pg[p, P_NEXT]
    if prv >= 0:
        S.pg[prv, P_NEXT] = nxt
    else:
        S.g[G_LRU_HEAD + lst] = nxt
    if nxt >= 0:
        S.pg[nxt, P_PREV] = prv
    else:
        S.g[G_LRU_TAIL + lst] = prv
    S.g[G_LRU_SIZE + lst] -= S.pg[p, P_NR]
    S.pg[p, P_LIST] = NO_LIST
    S.pg[p, P_PREV] = -1
    S.pg[p, P_NEXT] = -1


# ---- MGLRU generations ---------------------------------------------------------------------
@njit(cache=True, inline="always")
def lru_gen_from_seq(seq):
    return seq % MAX_NR_GENS


@njit(cache=True, inline="always")
def nr_gens(S):
    return S.g[G_MAX_SEQ] - S.g[G_MIN_SEQ] + 1


@njit(cache=True, inline="always")
def lru_gen_folio_seq(S, p, reclaiming):
    """include/linux/mm_inline.h lru_gen_folio_seq (6.12+)."""
    ws = 1 if S.pg[p, P_FLAGS] & PG_WORKINGSET else 0
    if S.pg[p, P_FLAGS] & PG_ACTIVE:
        gen = MIN_NR_GENS - ws
    elif reclaiming:
        gen = MAX_NR_GENS
    else:
        gen = MAX_NR_GENS - ws
    seq = S.g[G_MAX_SEQ] - gen + 1
    seq = max(seq, S.g[G_MIN_SEQ])
    return seq


@njit(cache=True, inline="always")
def folio_update_gen(S, p, seq):
    """Promote in the flags only; the folio moves lists when eviction sorts it."""
    old = S.pg[p, P_GEN]
    if old == seq:
        return
    S.g[G_GEN_PAGES + lru_gen_from_seq(old)] -= S.pg[p, P_NR]
    S.g[G_GEN_PAGES + lru_gen_from_seq(seq)] += S.pg[p, P_NR]
    S.pg[p, P_GEN] = seq


@njit(cache=True, inline="always")
def lruvec_add_folio(S, p, reclaiming):
    """lruvec_add_folio / lru_gen_add_folio, lru_lock held."""
    S.pg[p, P_FLAGS] |= PG_LRU
    if S.pg[p, P_FLAGS] & PG_ANON:
        # The anon LRU (lrugen->folios[gen][LRU_GEN_ANON] / LRU_*_ANON) is one list here:
        # only MADV_PAGEOUT isolates from it; memcg reclaim does not scan anon (core.params).
        S.pg[p, P_FLAGS] &= ~PG_ACTIVE
        list_add(S, LIST_ANON, p)
        return
    if S.k[K_LRU] == LRU_MGLRU:
        seq = lru_gen_folio_seq(S, p, reclaiming)
        # set_mask_bits(.., LRU_GEN_MASK | BIT(PG_active), gen): PG_active is consumed.
        S.pg[p, P_FLAGS] &= ~PG_ACTIVE
        S.pg[p, P_GEN] = seq
        S.g[G_GEN_PAGES + lru_gen_from_seq(seq)] += S.pg[p, P_NR]
        if reclaiming:
            list_add_tail(S, lru_gen_from_seq(seq), p)
        else:
            list_add(S, lru_gen_from_seq(seq), p)
    elif S.pg[p, P_FLAGS] & PG_ACTIVE:
        list_add(S, LIST_ACTIVE, p)
    else:
        list_add(S, LIST_INACTIVE, p)


@njit(cache=True, inline="always")
def lruvec_del_folio(S, p):
    """Take a folio off its list (isolation or eviction), lru_lock held."""
    S.pg[p, P_FLAGS] &= ~PG_LRU
    if S.k[K_LRU] == LRU_MGLRU and not (S.pg[p, P_FLAGS] & PG_ANON):
        S.g[G_GEN_PAGES + lru_gen_from_seq(S.pg[p, P_GEN])] -= S.pg[p, P_NR]
    list_del(S, p)


@njit(cache=True, inline="always")
def try_to_inc_min_seq(S):
    """Advance min_seq past empty oldest generations, keeping MIN_NR_GENS. True if it
    moved."""
    moved = False
    while S.g[G_MIN_SEQ] + MIN_NR_GENS <= S.g[G_MAX_SEQ]:
        if S.g[G_LRU_SIZE + lru_gen_from_seq(S.g[G_MIN_SEQ])] > 0:
            break
        S.g[G_MIN_SEQ] += 1
        moved = True
    return moved


@njit(cache=True)
def inc_max_seq(S):
    """inc_max_seq, lru_lock held. With MAX_NR_GENS already, first fold the oldest
    generation into the next (inc_min_seq). Returns folios moved (for the hold time)."""
    moved = 0
    if nr_gens(S) >= MAX_NR_GENS:
        old = lru_gen_from_seq(S.g[G_MIN_SEQ])
        nxt_seq = S.g[G_MIN_SEQ] + 1
        nxt = lru_gen_from_seq(nxt_seq)
        p = S.g[G_LRU_TAIL + old]
        while p >= 0:
            prv = S.pg[p, P_PREV]
            list_del(S, p)
            if S.pg[p, P_GEN] < nxt_seq:
                folio_update_gen(S, p, nxt_seq)
            list_add(S, nxt, p)
            moved += 1
            p = prv
        S.g[G_MIN_SEQ] = nxt_seq
    S.g[G_MAX_SEQ] += 1
    return moved


# ---- per-CPU lru_add batch -----------------------------------------------------------------
@njit(cache=True, inline="always")
def folio_add_lru(S, tid, p, in_fault):
    """mm/swap.c folio_add_lru: into this CPU's batch. True when the batch is full, or the
    folio is large (folio_may_be_lru_cached), and must be drained under lru_lock (the
    caller calls LR_ADD_DRAIN)."""
    if S.k[K_LRU] == LRU_MGLRU and in_fault:
        S.pg[p, P_FLAGS] |= PG_ACTIVE          # lru_gen_in_fault()
    S.pg[p, P_FLAGS] |= PG_INBATCH
    c = S.t[tid, T_CORE]
    n = S.core[c, C_FB_N]
    S.core[c, C_FB0 + n] = p
    S.core[c, C_FB_N] = n + 1
    return n + 1 >= S.k[K_LRU_ADD_BATCH] or S.pg[p, P_NR] > 1


@njit(cache=True, inline="always")
def lru_add_drain_locked(S, c):
    """folio_batch_move_lru(lru_add) of CPU c, lru_lock held. Returns folios moved."""
    n = S.core[c, C_FB_N]
    for i in range(n):
        p = S.core[c, C_FB0 + i]
        S.pg[p, P_FLAGS] &= ~PG_INBATCH
        lruvec_add_folio(S, p, False)
    S.core[c, C_FB_N] = 0
    return n


# ---- workingset (mm/workingset.c) ----------------------------------------------------------
@njit(cache=True, inline="always")
def workingset_age_nonresident(S, n):
    """mm/workingset.c workingset_age_nonresident: the classic LRU's nonresident clock
    advances on every eviction (workingset_eviction) and every activation: a refault found
    recent, folio_mark_accessed activating (workingset_activation), reclaim putting an
    activated folio back (move_folios_to_lru)."""
    S.g[G_NONRESIDENT_AGE] += n


@njit(cache=True, inline="always")
def workingset_eviction(S, p):
    """Shadow entry for an evicted folio (pack_shadow), called before its flags go: the
    eviction stamp, min_seq (MGLRU token) or the nonresident age (classic), times two,
    plus 1 if the folio was PG_workingset. Classic: the stamp is read before the eviction
    ages the clock by the folio's pages. The shadow covers every page the folio held (a
    multi-index entry)."""
    ws = 1 if S.pg[p, P_FLAGS] & PG_WORKINGSET else 0
    nr = S.pg[p, P_NR]
    if S.k[K_LRU] == LRU_MGLRU:
        shadow = S.g[G_MIN_SEQ] * 2 + ws
    else:
        shadow = S.g[G_NONRESIDENT_AGE] * 2 + ws
        workingset_age_nonresident(S, nr)
    for q in range(p, p + nr):
        S.pg[q, P_SHADOW] = shadow


@njit(cache=True, inline="always")
def workingset_refault(S, p):
    """A folio is added where a shadow was: decide whether the refault is recent.

    Every refault counts its pages (WORKINGSET_REFAULT). MGLRU (lru_gen_refault): if the eviction's
    min_seq is within MAX_NR_GENS of max_seq (recent), the folio gets PG_workingset back
    when it had it at eviction. Classic: a refault distance within the active list
    activates the folio, which gets PG_workingset back if it had it ("folio was active
    prior to eviction"). A recent refault counts WORKINGSET_ACTIVATE (lru_gen_refault: in a
    fault, which every file refault here is). Tiers and refs are not modelled.
    """
    shadow = S.pg[p, P_SHADOW]
    S.pg[p, P_SHADOW] = -1
    if shadow < 0:
        return
    nr = S.pg[p, P_NR]
    S.g[G_COUNTERS + REFAULTS] += nr
    ws = shadow & 1
    stamp = shadow >> 1
    if S.k[K_LRU] == LRU_MGLRU:
        if S.g[G_MAX_SEQ] - stamp < MAX_NR_GENS:
            S.g[G_COUNTERS + WORKINGSET_ACTIVATE] += nr
            if ws:
                S.pg[p, P_FLAGS] |= PG_WORKINGSET
        return
    distance = S.g[G_NONRESIDENT_AGE] - stamp
    if distance <= S.g[G_LRU_SIZE + LIST_ACTIVE]:
        S.pg[p, P_FLAGS] |= PG_ACTIVE
        workingset_age_nonresident(S, nr)
        S.g[G_COUNTERS + WORKINGSET_ACTIVATE] += nr   # read by prepare_scan_control
        if ws:
            S.pg[p, P_FLAGS] |= PG_WORKINGSET


# ---- the lru_add drain program -------------------------------------------------------------
@njit(cache=True, inline="always")
def step(S, tid, pc):
    """LR_ADD_DRAIN: move this CPU's batch to the lists under lru_lock (lru_add_drain)."""
    if pc == LR_ADD_DRAIN:
        if S.core[S.t[tid, T_CORE], C_FB_N] == 0:
            S.t[tid, T_PC] = PC_RETURN
            return True
        return proceed(S, tid, spin_lock_irq_lru(S, tid, LR_ADD_DRAIN_LOCKED), LR_ADD_DRAIN_LOCKED)
    if pc == LR_ADD_DRAIN_LOCKED:
        n = lru_add_drain_locked(S, S.t[tid, T_CORE])
        run_for(S, tid, lru_hold_ns(S, n), LR_ADD_DRAIN_DONE)
        return False
    if pc == LR_ADD_DRAIN_DONE:
        spin_unlock_irq_lru(S, tid)
        S.t[tid, T_PC] = PC_RETURN
        return True
    raise RuntimeError("lru: unknown program counter")
