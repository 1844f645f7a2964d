"""Histograms of durations kept in S.g: 1/8-octave bins from 64 ns (bin 0 below 64 ns,
then bin = 1 + 8 * log2(ns / 64), LAT_BINS bins, the last one open). Read back by
`core.simulator._latency_percentile`."""

from numba import njit

from core.state import LAT_BINS


@njit(cache=True, inline="always")
def log8_bin(ns):
    b = 0
    if ns >= 64:
        x = ns >> 6
        lg = 0
        while x >= 2:
            x >>= 1
            lg += 1
        frac = ((ns << 3) >> (lg + 6)) - 8   # 0..7: the next three bits below the top one
        b = 1 + lg * 8 + frac
        if b >= LAT_BINS:
            b = LAT_BINS - 1
    return b


@njit(cache=True, inline="always")
def hist_add_n(S, base, ns, n):
    """Count n items of duration ns (a large folio's pages) in the histogram at
    S.g[base:base + LAT_BINS]."""
    S.g[base + log8_bin(ns)] += n


@njit(cache=True, inline="always")
def hist_add(S, base, ns):
    """Count one duration of ns."""
    hist_add_n(S, base, ns, 1)
