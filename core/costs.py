"""Cost defaults of the fault model: every one a physical quantity with a unit, a source and
the evidence for it.

Each field carries `source`, `unit` and `reason` metadata; `tests/test_params.py` checks
that none is missing and `docs/calibration.md` carries the table `calibration_table()`
renders. A default moves only when a measurement, a publication or the kernel says so (or,
for the few fitted ones, when the published file_thrash baseline rows are re-fitted), and
its reason says which. Times are nanoseconds unless the name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# Where a default comes from (docs/calibration.md lists them all, with the evidence):
# probe: measured on the development machine by a program in kernel_workloads/;
# cited: a published figure, named in the reason; kernel: a constant of the kernel's
# source; fitted: fitted to the published file_thrash baseline rows, the only published
# figures the model may be fitted to (the reason names them); estimate: an
# order-of-magnitude judgment nobody has measured yet, to be replaced by one of the others.
SOURCE_KINDS = ("probe", "cited", "kernel", "fitted", "estimate")


def _cost(source: str, default: int, unit: str, reason: str):
    assert source in SOURCE_KINDS, source
    return field(default=default, metadata={"source": source, "unit": unit, "reason": reason})


# include/linux/folio_batch.h (v7.0): the most folios a per-CPU batch holds, so the most
# `lru_add_batch` may be (core.state sizes each CPU's lru_add batch by it).
FOLIO_BATCH_SIZE = 31

# Kernel memory file_thrash charges to its memcg besides the page cache (x86_64, 4 KiB
# pages; core.params.Params.kmem_pages adds it up):
THREAD_SIZE_PAGES = 4     # each thread's kernel stack, THREAD_SIZE 16 KiB, accounted
XA_NODE_BYTES = 576       # sizeof(struct xa_node): the page cache's xarray, XA_FLAGS_ACCOUNT
XA_CHUNK_SLOTS = 64       # XA_CHUNK_SIZE: slots per xarray node
PTRS_PER_PTE = 512        # pages one PTE table maps; tables are GFP_PGTABLE_USER (accounted)
# Slab objects charged to the memcg (caches created SLAB_ACCOUNT), in bytes as charged: the
# slab's per-object size (/sys/kernel/slab/<cache>/slab_size on the 6.18 development guest)
# plus the obj_cgroup pointer each charged object carries (obj_full_size()).
OBJCG_PTR_BYTES = 8
TASK_STRUCT_BYTES = 5888 + OBJCG_PTR_BYTES   # one per thread (task_struct_cachep)
# One per thread's file: its inode (ext4_inode_cache 1128) and dentry (192), created in the
# memcg; the struct file (filp 192) and the VMA (vm_area_struct 192) of each round's
# open and mmap, held for most of the round.
FILE_OBJS_BYTES = 1128 + 192 + 192 + 192 + 4 * OBJCG_PTR_BYTES


_MAP_COST = ("kernel_workloads/map_cost.c on the 2-core 6.18 guest (a cached file mapped 16 MB at "
       "a time, regions of order-0 and 4-page folios, both 16-page fault-around faults): "
       "touching costs 277 and 199 ns per page, munmap 129 and 41.5")


_FORK_COST = ("kernel_workloads/fork_cost.c on one CPU of the 2-core 6.18 guest (fork of a "
              "process with N VMAs or N mapped pages, median of 15, two runs)")


@dataclass(frozen=True)
class Costs:
    # -- fault entry and the PTE level -------------------------------------------------------
    touch_ns: int = _cost(
        "estimate", 10, "ns",
        "first load from a page this round: its TLB entry died with the last munmap, "
        "so a dTLB miss and a page walk through cached page tables (~30-40 cycles)")
    fault_entry_ns: int = _cost(
        "probe", 2400, "ns",
        "exception entry/exit with speculation mitigations in a KVM guest, "
        "do_user_addr_fault, lock_vma_under_rcu, handle_mm_fault dispatch. Fitted with "
        "fault_around_page_ns and pte_install_ns to " + _MAP_COST + " (1.5 us before model 3.0.0, "
        "fitted to file_thrash's rounds/s alone)")
    pte_install_ns: int = _cost(
        "probe", 75, "ns",
        "set_pte_range for one folio: PTE store, folio_add_file_rmap_ptes and the "
        "refcount/mapcount atomics. With fault_around_page_ns: 114 ns per order-0 page, "
        "what the 78 ns per page between the two regions of " + _MAP_COST + " leaves")
    pte_batch_ns: int = _cost(
        "probe", 10, "ns",
        "each further page of a large folio mapped or zapped in one batch "
        "(set_ptes, get_and_clear_full_ptes, the per-page mapcount): the folio's rmap and "
        "refcount update is charged once, in pte_install_ns or zap_pte_ns. From " + _MAP_COST +
        ": zap 127 ns per order-0 folio and 41 per page of 4-page folios leave 10 ns; "
        "256-page folios (a 128 MB file) zap at 14 ns per page. A PMD-order folio is mapped "
        "and zapped as one PMD entry, without this")
    fault_around_page_ns: int = _cost(
        "probe", 40, "ns",
        "next_uptodate_folio per folio (or hole) of the window: xas_next, "
        "folio_try_get, flag checks, folio_trylock; split from pte_install_ns by judgment")
    # -- page cache, readahead, zero fill ----------------------------------------------------
    folio_alloc_ns: int = _cost(
        "estimate", 250, "ns",
        "page allocator fast path + xarray insert (__filemap_add_folio) per folio")
    zero_fill_ns: int = _cost(
        "probe", 1000, "ns",
        "clearing a cold 4 KiB page (folio_zero_segment of a hole; the freshly allocated "
        "page is not in the cache): kernel_workloads/jitter.c times a 4 KiB memset of "
        "random pages of a 256 MiB region at a median of 0.94-1.30 us here, 50 ns of it "
        "the timer (600 ns before model 4.1.0, ~7 GB/s from a hot buffer)")
    readahead_submit_ns: int = _cost(
        "estimate", 1500, "ns",
        "read_pages/submit_bio setup for one readahead window")
    # -- block device ------------------------------------------------------------------------
    io_transfer_ns_per_page: int = _cost(
        "cited", 1300, "ns",
        "4 KiB at ~3 GB/s, a PCIe 3 x4 NVMe sequential read")
    io_complete_ns: int = _cost(
        "estimate", 1000, "ns",
        "interrupt + bio completion + folio unlock/wake on the completing CPU")
    # -- locks -------------------------------------------------------------------------------
    ctx_switch_ns: int = _cost(
        "estimate", 1500, "ns",
        "context switch to the next runnable thread on a busy CPU (~1-2 us)")
    wakeup_latency_ns: int = _cost(
        "estimate", 4000, "ns",
        "try_to_wake_up to running on an idle CPU: IPI + idle exit (~2-6 us, "
        "schbench wakeup latency p50 on an idle server); the median of a lognormal when "
        "machine.jitter is on")
    tick_ns: int = _cost(
        "cited", 2000, "ns",
        "one scheduler tick on a busy CPU (local timer interrupt, "
        "scheduler_tick, RCU and timer softirq work): the kernel's osnoise tracer "
        "documentation shows single local-timer interrupts of 1.8 and 2.8 us; taken every "
        "1/HZ (4 ms) when machine.jitter is on")
    cacheline_transfer_ns: int = _cost(
        "cited", 170, "ns",
        "one transfer of a written cache line to another CPU, what an atomic on "
        "a lock word (mmap_lock's count, a VMA's vm_refcnt) waits for when another CPU "
        "wrote it last; the line serves one transfer at a time. A 2-socket 256-CPU AMD "
        "server: 25 ns within a CCX, 107-132 ns across CCDs, 197-267 ns across sockets "
        "(EPYC 7R13 and 7742 in the public core-to-core-latency measurements), half of "
        "the pairs cross sockets: 150-195 ns on average. kernel_workloads/cacheline.c "
        "measures 113-130 ns between this guest's two vCPUs")
    lru_lock_op_ns: int = _cost(
        "estimate", 150, "ns",
        "acquire/release of a cache-line-bouncing spinlock with irqs off")
    lru_lock_per_folio_ns: int = _cost(
        "fitted", 600, "ns",
        "list_del/list_add + flags update per folio under lru_lock. Fitted to the published "
        "file_thrash baseline rounds/s (37.85 and 39.22) at the seed_thrash preset: 150 / "
        "300 / 700 ns gave 174 / 88.7 / 33.2 rounds/s (model 4.1.0, one seed, 15 s), "
        "interpolated to 600. Physically about 3.5 cacheline_transfer_ns: the folio, its "
        "two list neighbours and the list head, each last written by another CPU of a "
        "256-CPU machine. 80 ns before model 4.2.0, an estimate for cached lines")
    lru_add_batch: int = _cost(
        "kernel", 31, "folios",
        "lru_add drains the per-CPU folio batch when full: v7.0's "
        "FOLIO_BATCH_SIZE (mm/swap.c folio_batch_add); older kernels' PAGEVEC_SIZE was 15")
    # -- reclaim -----------------------------------------------------------------------------
    reclaim_scan_ns: int = _cost(
        "estimate", 150, "ns",
        "shrink_folio_list per folio checked and put back: flags, trylock")
    reclaim_evict_ns: int = _cost(
        "estimate", 900, "ns",
        "__remove_mapping (xa_lock), shadow store, free to buddy per clean folio")
    reclaim_rmap_ns: int = _cost(
        "estimate", 400, "ns",
        "folio_referenced/try_to_unmap rmap walk of one mapping (i_mmap tree)")
    aging_walk_pte_ns: int = _cost(
        "estimate", 8, "ns",
        "walk_pte_range per PTE: test-and-clear young on a cached page table")
    aging_walk_chunk_pages: int = _cost(
        "kernel", 4096, "pages",
        "walk_mm releases mmap_lock between PMD-sized chunks (MIN_LRU_BATCH x "
        "64); one 16 MiB file is 8 PMDs, the walker yields every 16 MiB here")
    aging_base_ns: int = _cost(
        "estimate", 3000, "ns",
        "inc_max_seq: lru_lock hold to add a generation and reset its lists")
    # -- mmap / munmap -----------------------------------------------------------------------
    mmap_ns: int = _cost(
        "estimate", 3000, "ns",
        "do_mmap: get_unmapped_area, vma_alloc, vma_link + i_mmap insert")
    munmap_gather_ns: int = _cost(
        "estimate", 1500, "ns",
        "vms_gather_munmap_vmas: split/detach, vma_start_write under write lock")
    zap_pte_ns: int = _cost(
        "probe", 125, "ns",
        "zap_present_ptes per folio batch: ptep_get_and_clear, "
        "folio_remove_rmap_ptes, tlb_remove_folio (the reference dropped at "
        "tlb_finish_mmu), rss counters, folio_mark_accessed. From " + _MAP_COST + " (129 ns per "
        "order-0 page less ~2.4 of munmap's fixed costs; 40 ns before model 3.0.0, fitted "
        "to rounds/s alone)")
    free_pgtables_ns: int = _cost(
        "estimate", 2000, "ns",
        "free_pgtables + vma free after unmap_vmas")
    tlb_flush_base_ns: int = _cost(
        "estimate", 1500, "ns",
        "flush_tlb_mm_range: local flush + IPI send path")
    tlb_flush_per_cpu_ns: int = _cost(
        "estimate", 150, "ns",
        "IPI delivery and acknowledgement per CPU in mm_cpumask (x2APIC, "
        "~0.1-0.2 us each when the target has interrupts on)")
    open_close_ns: int = _cost(
        "estimate", 2500, "ns",
        "open()+close() of a cached dentry: path walk, file alloc, fput")
    # -- memcg -------------------------------------------------------------------------------
    charge_ns: int = _cost(
        "estimate", 60, "ns",
        "consume_stock or page_counter_try_charge per folio charge")
    # -- swap and anon ----------------------------------------------------------------------
    zram_decompress_ns: int = _cost(
        "estimate", 4000, "ns",
        "zram_read_page: lzo-rle (the kernel's default) decompresses ~1.2 GB/s "
        "on one core, 3.4 us for 4 KiB, plus the slot lock and zsmalloc map")
    zram_compress_ns: int = _cost(
        "estimate", 9000, "ns",
        "zram_write_page: lzo-rle compresses ~500 MB/s, 8 us for 4 KiB, plus "
        "zsmalloc allocation and copy")
    add_to_swap_ns: int = _cost(
        "estimate", 800, "ns",
        "folio_alloc_swap (swap slot cache, swap cgroup charge) + swap cache "
        "xarray insert per folio")
    swap_write_submit_ns: int = _cost(
        "estimate", 1000, "ns",
        "__swap_writepage: bio allocation and submit_bio for one folio (disk)")
    # -- fork (dup_mmap) ---------------------------------------------------------------------
    fork_base_ns: int = _cost(
        "probe", 50000, "ns",
        "fork() of a small process outside dup_mmap's per-VMA work: copy_process (task, "
        "files, signal handlers, the new mm), the child's wake-up. " + _FORK_COST + ": a "
        "process of 24 VMAs forks in 57-63 us, less ~10 us for its VMAs")
    fork_anon_vma_ns: int = _cost(
        "probe", 1900, "ns",
        "dup_mmap per VMA with an anon_vma: vma_start_write, vm_area_dup, anon_vma_fork, "
        "copy_page_range's walk down to the PTE table. " + _FORK_COST + ": 1.9-2.1 us per "
        "one-page private anonymous VMA at 8,000 VMAs, less its one PTE (fork_pte_ns); "
        "1.3-1.8 us at 1,000 (the maple tree grows)")
    fork_file_vma_ns: int = _cost(
        "probe", 680, "ns",
        "dup_mmap per VMA without an anon_vma (shared or unwritten file mappings, regions "
        "never faulted): vma_start_write, vm_area_dup, the i_mmap insert, no PTE copy "
        "(vma_needs_copy is false). " + _FORK_COST + ": 0.67-0.69 us per MAP_SHARED file "
        "VMA at 8,000 VMAs")
    fork_pte_ns: int = _cost(
        "probe", 90, "ns",
        "copy_present_ptes per mapped anonymous page: the folio reference and mapcount, "
        "write-protecting parent and child PTE for COW. " + _FORK_COST + ": 86-93 ns per "
        "PTE of one 64,000-page VMA")
    mprotect_ns: int = _cost(
        "estimate", 2500, "ns",
        "mprotect_fixup on one VMA: vma_modify (split/merge), change_protection "
        "of its mapped PTEs in a few PMDs, flush")

    def __post_init__(self) -> None:
        from core.params import check_costs   # params imports this module
        check_costs(self)


def cost_reasons() -> dict[str, tuple[str, str]]:
    """(unit, reason) of every cost field, for docs and the reason test."""
    return {f.name: (f.metadata.get("unit", ""), f.metadata.get("reason", ""))
            for f in fields(Costs)}


def calibration_table() -> str:
    """The cost defaults as the Markdown table docs/calibration.md carries (a test keeps the
    two equal): name, value, unit, source kind, reason."""
    rows = ["| cost | default | unit | source | evidence |", "|---|---|---|---|---|"]
    for f in fields(Costs):
        reason = f.metadata["reason"].replace("|", "/")
        rows.append(f"| `{f.name}` | {f.default} | {f.metadata['unit']} | "
                    f"{f.metadata['source']} | {reason} |")
    return "\n".join(rows) + "\n"
