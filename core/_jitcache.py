"""Point numba's on-disk cache at a directory keyed by the hash of core's sources.

numba invalidates a cached function only when its own file changes, but the compiled code
bakes in constants imported from other modules (the column numbers of core.state, the
program counters). A cache keyed by every source file of the package is never stale.
Must run before any @njit(cache=True) function of core is defined.
"""

import hashlib
import os
from pathlib import Path

import numba


def _source_hash() -> str:
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    h.update(numba.__version__.encode())
    return h.hexdigest()[:16]


def configure() -> Path:
    base = Path(os.environ.get("FAULTSIM_CACHE_DIR",
                               Path.home() / ".cache" / "faultsim" / "numba"))
    cache_dir = base / _source_hash()
    cache_dir.mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = str(cache_dir)
    return cache_dir


CACHE_DIR = configure()
