"""Command-line plumbing shared by `python -m sweep` and `python -m sweep.point`.

Hydra reports a bad override over several lines with a hint about HYDRA_FULL_ERROR; a user
error here must be one line naming the key and the nearest valid ones. So the command line is
composed once with Hydra's compose API first, and a failure is translated into that line.
"""

from __future__ import annotations

import difflib
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

import sweep.config  # noqa: F401  (registers the schemas)
from sweep import resources
from sweep.errors import SweepError

CONF_DIR = str(resources.CONF_DIR)


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, DictConfig):
            keys += _all_keys(v, key + ".")
    return keys


def _one_line(e: BaseException, overrides: list[str]) -> str:
    from hydra import compose, initialize_config_dir

    text = str(e).strip()
    mark = re.search(r'in "([^"]+)", line (\d+), column (\d+)', text)
    if mark and type(e).__name__.endswith(("ParserError", "ScannerError", "ComposerError",
                                            "ConstructorError", "YAMLError")):
        said = [ln.strip() for ln in text.splitlines() if not ln.startswith("  in ")]
        return (f"{mark.group(1)}:{mark.group(2)}:{mark.group(3)}: invalid YAML: "
                + "; ".join(ln for ln in said if ln))
    m = re.match(r"Could not override '([^']+)'", text)
    if m:
        key = m.group(1)
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            grid = [o for o in overrides if o.lstrip("+").startswith("grid=")]
            base = compose("config", overrides=grid)
        keys = _all_keys(base)
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        if key.startswith("grid.axes.") and not close:
            hint = f"; to add an axis write +{key}=[...]"
        return f"unknown config key '{key}'{hint}"
    m = re.search(r"Key '(seeds|root_seed)' not in 'GridConfig'", text)
    if m:
        new = RENAMED[f"grid.{m.group(1)}"]
        return (f"grid.{m.group(1)} in a grid file is now {new}: write 'replicates: N' in "
                "the file, or seed=N on the command line")
    m = re.match(r"Error merging override (\S+)", text)
    if m:
        cause = e.__cause__ or e
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return f"{m.group(1)}: {detail}"
    m = re.search(r"Could not find '([^']+)'", text)
    if m:
        group, _, name = m.group(1).rpartition("/")
        opts = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        opts = [o for o in opts if not o.startswith("base_")]
        close = difflib.get_close_matches(name, opts, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"{group}={name}: no such option{hint} (available: {', '.join(opts)})"
    return text.splitlines()[0] if text else type(e).__name__


# Names of the seed settings before there was one of each; refused with the new name.
RENAMED = {"grid.seeds": "replicates", "sweep.seeds": "replicates",
           "grid.root_seed": "seed", "sweep.root_seed": "seed"}
# Top-level keys of the schema: `+key=value` would be refused by Hydra in several lines.
TOP_LEVEL = ("seed", "replicates", "backend")


def check_words(overrides: list[str]) -> None:
    """What Hydra would accept or report badly but means something else here."""
    for o in overrides:
        if o in ("-m", "--multirun"):
            raise SweepError("-m (Hydra's multirun) is not used here: a grid runs all its "
                             "points in one command, write +grid=<name>")
        key, eq, val = o.partition("=")
        bare = key.lstrip("+~")
        if not eq:
            continue
        if bare == "grid" and not key.startswith("+"):
            raise SweepError(f"write +grid={val} (a grid is added to the config with a plus)")
        if bare in RENAMED:
            raise SweepError(f"{bare} is now {RENAMED[bare]}: write {RENAMED[bare]}={val}")
        if key.startswith("+") and bare in TOP_LEVEL:
            raise SweepError(f"write {bare}={val} (no plus: {bare} is a top-level setting)")


def _config_dirs(args: list[str]) -> tuple[list[str], list[str]]:
    """The arguments without Hydra's --config-dir/-cd DIR (an extra config directory),
    and those directories, so that the precheck composes what Hydra will."""
    rest, dirs, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(args[i + 1])
            i += 2
            continue
        if a.startswith("--config-dir="):
            dirs.append(a.partition("=")[2])
        else:
            rest.append(a)
        i += 1
    return rest, dirs


def precheck(overrides: list[str]) -> None:
    """Compose the config as Hydra will; raise SweepError with one line if it fails."""
    from hydra import compose, initialize_config_dir

    check_words(overrides)
    overrides, extra_dirs = _config_dirs(overrides)
    if any(o.startswith("-") for o in overrides):
        return  # --help, --cfg job ...: Hydra's own modes
    if extra_dirs:
        overrides = [*overrides, "hydra.searchpath=[" + ",".join(
            f"file://{Path(d).resolve()}" for d in extra_dirs) + "]"]
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            compose("config", overrides=overrides)
    except Exception as e:  # noqa: BLE001  any composition failure is a user error
        raise SweepError(_one_line(e, overrides)) from None


def run_main(hydra_main: Callable[[], None]) -> None:
    # Before anything imports Ray, which reads it when it loads: a cluster's token where
    # there is one (sweep.runner.use_cluster_token).
    from sweep.runner import use_cluster_token
    use_cluster_token()
    try:
        precheck(sys.argv[1:])
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


class Terminated(BaseException):
    """SIGTERM, raised where the driver is so that it stops as it does on Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


# Exit statuses: 1 some runs failed, 2 a bad request, 3 the cluster was lost, 128 + the
# signal when stopped.
EXIT_CLUSTER_LOST, EXIT_SIGINT, EXIT_SIGTERM = 3, 130, 143
RESUME_HINT = "finished chunks are in the store; run the same command to resume"


def guarded(body: Callable[[DictConfig], int], cfg: DictConfig) -> None:
    """Run `body`; a SweepError is one line on stderr and exit status 2; Ctrl-C and SIGTERM
    stop it with the resume hint and 130 or 143 (not 1, which says runs failed)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    from sweep.runner import ClusterLost
    try:
        status = body(cfg)
    except ClusterLost as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_CLUSTER_LOST)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"interrupted: {RESUME_HINT}", file=sys.stderr)
        sys.exit(EXIT_SIGINT)
    except Terminated:
        print(f"terminated: {RESUME_HINT}", file=sys.stderr)
        sys.exit(EXIT_SIGTERM)
    if status:
        sys.exit(status)

