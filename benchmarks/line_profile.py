"""Where the engine's time goes, by source line: perf samples of one run mapped to core/*.py.

numba inlines every step into one compiled function, so perf alone names one symbol. This
script builds the simulator with debug line tables (NUMBA_DEBUGINFO=1) in a cache of its
own (the first run compiles, 2-4 minutes; later runs load it), samples one `engine.run`
of the preset with `perf record -e cpu-clock` (4 kHz, this process only), and maps every
sampled address through the cached object file with `addr2line`. It prints the share of
samples by file and by source line, with the line's text.

A sample lands on the instruction that waits, usually a load: a line's share is where the
time is spent, which for a cache miss is the line that first reads the row. numba's line
tables do not record inlining, so there is no call chain; the debug build runs at the same
speed as the normal one (the code is optimized the same way).

Needs `perf` (linux-tools) and binutils (`addr2line`, `nm`, `readelf`).

    python benchmarks/line_profile.py [--preset seed_thrash] [--policy baseline]
        [--duration 10] [--top 40] [--cache DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("perf", "addr2line", "nm", "readelf")
FRESH = 3   # the child's exit status when it compiled (code it ran is not the cached object)


def _child(args) -> None:
    """Load the debug build, profile one run, write the samples and the object's layout."""
    from numba.core import codegen
    objects = {}
    keep = codegen.CPUCodeLibrary._set_compiled_object

    def _set(self, value):          # a library loaded from the cache: keep its object file
        objects[id(self)] = value
        return keep(self, value)
    codegen.CPUCodeLibrary._set_compiled_object = _set

    # Line tables only. NUMBA_DEBUGINFO alone marks every function noinline for LLVM, keeps
    # locals in memory and alive to the end of their block, which made the run half again
    # slower (measured) and would profile another program. "Directives only" keeps the
    # optimizations; its own emission kind leaves addr2line without file names, so the
    # compile unit asks for line tables.
    from numba.core import cpu, debuginfo
    finalize = cpu.CPUTargetOptions.finalize

    def _finalize(self, flags, options):
        flags.dbg_extend_lifetimes = False
        flags.dbg_directives_only = True
        return finalize(self, flags, options)
    cpu.CPUTargetOptions.finalize = _finalize
    compile_unit = debuginfo.DIBuilder._di_compile_unit

    def _compile_unit(self):
        self.emission_kind = "LineTablesOnly"
        return compile_unit(self)
    debuginfo.DIBuilder._di_compile_unit = _compile_unit
    debuginfo.DIBuilder.mark_variable = lambda self, *a, **kw: None
    # numba's inline="always" keeps an inlined helper's line numbers but gives them the
    # caller's file: name the helper's file in a lexical block of the caller's subprogram.
    from numba.core import lowering
    lower_inst = lowering.Lower.lower_inst

    def _lower_inst(self, inst):
        self.debuginfo.loc_file = self.loc.filename
        return lower_inst(self, inst)
    lowering.Lower.lower_inst = _lower_inst
    location = debuginfo.DIBuilder._di_location

    def _location(self, line):
        path = os.path.abspath(getattr(self, "loc_file", None) or self.filepath)
        if path == self.filepath or not self.subprograms:
            return location(self, line)
        blocks = self.__dict__.setdefault("file_blocks", {})
        key = (id(self.subprograms[-1]), path)
        if key not in blocks:
            difile = self.module.add_debug_info("DIFile", {
                "directory": os.path.dirname(path), "filename": os.path.basename(path)})
            blocks[key] = self.module.add_debug_info("DILexicalBlockFile", {
                "scope": self.subprograms[-1], "file": difile, "discriminator": 0})
        return self.module.add_debug_info("DILocation", {
            "line": line, "column": 1, "scope": blocks[key]})
    debuginfo.DIBuilder._di_location = _location

    import numpy as np
    import core
    from core import engine
    from core.simulator import build_state
    from sweep.app import scenario_params

    def params(duration):
        d = {g: dict(v) for g, v in scenario_params()[args.preset].items()}
        d["policy"] = {"name": args.policy}
        d.setdefault("sim", {}).update({"duration_s": duration, "warmup_s": duration / 4})
        return core.Params.from_dict(d)

    S = build_state(params(0.001))
    engine.run(S, 1)
    entry = engine._RUN_ENTRIES[int(S.k[core.state.K_ENGINE])]
    lib = next(iter(entry.overloads.values())).library
    if id(lib) not in objects:
        sys.exit(FRESH)
    out = Path(args.out)
    obj = out / "run.o"
    obj.write_bytes(objects[id(lib)])
    base = None
    for line in subprocess.run(["nm", "--defined-only", str(obj)], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        addr, kind, name = line.split(maxsplit=2)
        if kind == "T":
            base = lib.get_pointer_to_function(name) - int(addr, 16)
            break
    text, size = None, 0
    for line in subprocess.run(["readelf", "-SW", str(obj)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        m = re.search(r"\s(\.l?text)\s+PROGBITS\s+\S+\s+\S+\s+(\S+)", line)
        if m and int(m.group(2), 16) > size:
            text, size = m.group(1), int(m.group(2), 16)
    S = build_state(params(args.duration))
    data = out / "perf.data"
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o",
                             str(data), "-p", str(os.getpid())], stderr=subprocess.DEVNULL)
    time.sleep(1.0)                 # perf attaches
    t0 = time.perf_counter()
    events = engine.run(S, np.int64(1))
    wall = time.perf_counter() - t0
    perf.send_signal(signal.SIGINT)
    perf.wait()
    (out / "layout.json").write_text(json.dumps(
        {"base": base, "section": text, "size": size, "events": int(events), "wall": wall}))


def _report(out: Path, top: int) -> None:
    lay = json.loads((out / "layout.json").read_text())
    ips = subprocess.run(["perf", "script", "-i", str(out / "perf.data"), "-F", "ip"],
                         capture_output=True, text=True, check=True).stdout.split()
    hist = collections.Counter(int(x, 16) - lay["base"] for x in ips)
    total = sum(hist.values())
    inside = {o: n for o, n in hist.items() if 0 <= o < lay["size"]}
    offsets = sorted(inside)
    lines = {}
    for i in range(0, len(offsets), 2000):       # addr2line's argument list, in pieces
        chunk = offsets[i:i + 2000]
        res = subprocess.run(["addr2line", "-e", str(out / "run.o"), "-j", lay["section"]]
                             + [hex(o) for o in chunk], capture_output=True, text=True,
                             check=True).stdout.splitlines()
        lines.update(zip(chunk, res))
    by_line, by_file = collections.Counter(), collections.Counter()
    for o, n in inside.items():
        where = re.sub(r" \(discriminator \d+\)", "", lines.get(o, "??:0"))
        path, _, num = where.rpartition(":")
        try:
            path = str(Path(path).resolve().relative_to(ROOT))
        except ValueError:
            path = Path(path).name if path not in ("", "??") else "(no line)"
        by_line[(path, num)] += n
        by_file[path] += n
    print(f"{lay['events']:,} events in {lay['wall']:.2f} s ({lay['events'] / lay['wall'] / 1e6:.2f} M "
          f"events/s); {total:,} samples, {100 * sum(inside.values()) / max(total, 1):.1f} % "
          f"in the simulator's code (the rest: libm, numba's helpers, perf's own start)")
    print("\nby file:")
    for path, n in by_file.most_common(15):
        print(f"  {100 * n / total:5.1f} %  {path}")
    print(f"\nby line (top {top}):")
    sources = {}
    for (path, num), n in by_line.most_common(top):
        text = ""
        if num.isdigit() and (ROOT / path).is_file():
            src = sources.setdefault(path, (ROOT / path).read_text().splitlines())
            text = src[int(num) - 1].strip() if int(num) <= len(src) else ""
        print(f"  {100 * n / total:5.1f} %  {path}:{num:<5s} {text[:70]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="seed_thrash")
    ap.add_argument("--policy", default="baseline")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "faultsim" / "numba-lines"),
                    help="numba cache of the debug build (kept apart from the normal one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        sys.exit(f"line_profile: needs {', '.join(missing)} (linux-tools, binutils)")
    # NUMBA_DEBUGINFO also turns bounds checking on: off again, as in the normal build.
    env = dict(os.environ, NUMBA_DEBUGINFO="1", NUMBA_BOUNDSCHECK="0",
               FAULTSIM_CACHE_DIR=args.cache, PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="line_profile-") as out:
        cmd = [sys.executable, __file__, "--child", "1", "--out", out, "--preset", args.preset,
               "--policy", args.policy, "--duration", str(args.duration)]
        print(f"line_profile: {args.preset} {args.policy}, {args.duration:g} simulated s (the "
              f"first run builds the debug simulator, 2-4 minutes)", flush=True)
        for attempt in range(2):
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
            if rc != FRESH:
                break
            print(f"line_profile: built the debug simulator in {time.perf_counter() - t0:.0f} s "
                  f"(cached in {args.cache}); profiling from the cache", flush=True)
        if rc != 0:
            sys.exit(f"line_profile: the profiled run failed (exit status {rc})")
        _report(Path(out), args.top)


if __name__ == "__main__":
    main()
