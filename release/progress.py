"""Progress reporting: a bar on a terminal, silence otherwise.

Library code never prints; it calls a Progress object handed in by the caller.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """Counts bytes towards a total and redraws one status line on a TTY."""

    def __init__(self, label: str, total: int = 0, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._lock = threading.Lock()
        self._last = 0.0

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
                self._last = now
                self._draw()

    def _draw(self) -> None:
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {self.done / 1e6:7.1f}/{self.total / 1e6:.1f} MB"
        else:
            text = f"\r{self.label} {self.done / 1e6:7.1f} MB"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class NullProgress(Progress):
    def __init__(self) -> None:
        super().__init__("", enabled=False)

    def advance(self, n: int) -> None:
        self.done += n
