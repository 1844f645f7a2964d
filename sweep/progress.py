"""Progress of a sweep: a tqdm bar on a terminal, plain periodic lines otherwise (CI, logs)."""

from __future__ import annotations

import shutil
import sys
import time


class Progress:
    def __init__(self, total: int, cached: int, interval_s: float = 10.0, label: str = ""):
        self.total, self.cached, self.done, self.failed = total, cached, 0, 0
        self.interval_s = interval_s
        self.label = label
        self.t0 = time.monotonic()
        self.last_line = 0.0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            # A pty that reports a 0x0 size (script, some CI runners) makes tqdm hide the bar.
            size = shutil.get_terminal_size((100, 20))
            self.bar = tqdm(total=total, unit="run", desc=label or "sweep", file=sys.stderr,
                            ncols=size.columns or 100, nrows=size.lines or 20)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(cached=self.cached, failed=self.failed, refresh=False)

    def update(self, n_ok: int, n_failed: int) -> None:
        self.done += n_ok + n_failed
        self.failed += n_failed
        if self.bar is not None:
            self._postfix()
            self.bar.update(n_ok + n_failed)
        elif time.monotonic() - self.last_line >= self.interval_s or self.done == self.total:
            self.line()

    def line(self) -> None:
        self.last_line = time.monotonic()
        elapsed = self.last_line - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        print(f"{self.label}: {self.done}/{self.total} computed ({self.failed} failed), "
              f"{self.cached} cached, {rate:.2f} runs/s, elapsed {elapsed:.0f} s, "
              f"eta {eta:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
