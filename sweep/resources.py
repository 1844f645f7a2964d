"""Where the project's files that are not Python live: `conf/` (the Hydra tree),
`kernel_workloads/` (the C programs of the kernel backend) and `data/published/`.

In a source checkout or an editable install they are the repository's directories, next
to the `sweep` package. A normal install (`pip install .`) carries them as the wheel's data
files under `<prefix>/share/faultsim/` (pyproject's [tool.setuptools.data-files]).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent
SHARE = "share/faultsim"


def _is_source_checkout(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    return pyproject.is_file() and 'name = "faultsim"' in pyproject.read_text()


def resource_dir(name: str) -> Path:
    """`conf`, `kernel_workloads` or `data/published`, from the checkout or the install."""
    if _is_source_checkout(SOURCE_ROOT):
        return SOURCE_ROOT / name
    prefixes = [sys.prefix, sysconfig.get_paths().get("data", sys.prefix), sys.base_prefix]
    for prefix in dict.fromkeys(prefixes):
        path = Path(prefix) / SHARE / name
        if path.is_dir():
            return path
    return SOURCE_ROOT / name  # absent: the caller's error names this path


CONF_DIR = resource_dir("conf")
WORKLOAD_DIR = resource_dir("kernel_workloads")
PUBLISHED_DIR = resource_dir("data/published")
