"""Hardware prefetch hints for rows the engine is about to read (no effect on any result).

The engine's time goes mostly to first reads of cold rows: a folio at the LRU tail, the
next pages of a readahead window, the PTEs of an isolated batch
(`benchmarks/line_profile.py`). Where the rows to come are known, or likely, a prefetch
lets their cache misses overlap with the work on the current one. A prefetch never faults
and changes no value, so rows stay bit-identical; a wrong guess costs a wasted line fill.
"""

import numba
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def _prefetch(builder, ptr):
    """llvm.prefetch(ptr, read, keep in all cache levels, data): one prefetcht0 on x86. The
    typed-pointer name is LLVM 14's (numba 0.60); later versions remangle it to `.p0`."""
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])


@intrinsic
def _prefetch_at(typingctx, arr, i, offset):
    """The cache line `offset` bytes into row i of a 2D C-contiguous array (no bounds
    check: a prefetch never faults)."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        row = cgutils.get_item_pointer2(
            context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape),
            cgutils.unpack_tuple(builder, ary.strides), aryty.layout,
            [args[1], context.get_constant(types.intp, 0)], wraparound=False)
        _prefetch(builder, builder.gep(builder.bitcast(row, ir.IntType(8).as_pointer()),
                                       [args[2]]))
        return context.get_dummy_value()
    return types.void(arr, types.intp, types.intp), codegen


if numba.config.DISABLE_JIT:
    # The pure-Python fallback has no caches to warm.
    def prefetch_row(arr, i):
        pass

    def prefetch_rows(arr, i, n):
        pass

    def prefetch_item(arr, i, j):
        pass
else:
    @njit(cache=True, inline="always")
    def prefetch_row(arr, i):
        """Prefetch both ends of row i of arr: a row of S.pg (96 bytes) spans two cache
        lines (out-of-range rows are harmless: a prefetch never faults)."""
        _prefetch_at(arr, i, 0)
        _prefetch_at(arr, i, arr.strides[0] - 1)

    @njit(cache=True, inline="always")
    def prefetch_rows(arr, i, n):
        """Prefetch every cache line of rows i .. i + n - 1 of arr (contiguous)."""
        for offset in range(0, n * arr.strides[0], 64):
            _prefetch_at(arr, i, offset)
        if n > 0:
            _prefetch_at(arr, i, n * arr.strides[0] - 1)

    @njit(cache=True, inline="always")
    def prefetch_item(arr, i, j):
        """Prefetch the cache line of arr[i, j]."""
        _prefetch_at(arr, i, j * arr.strides[1])
