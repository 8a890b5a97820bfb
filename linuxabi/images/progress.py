"""Build progress on stderr: a redrawn bar on a terminal, one plain line per step otherwise
(logs and CI output stay readable)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 28


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """``step`` for one-off lines; ``begin``/``update``/``end`` for a counted phase."""

    def __init__(self, stream: TextIO | None = sys.stderr, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and (stream.isatty() if tty is None else tty))
        self._label = ""
        self._total = 0.0
        self._bytes = False
        self._drawn = 0.0
        self._t0 = 0.0
        self._active = False  # a bar is drawn and its line not yet ended

    def _write(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text)
            self.stream.flush()

    def step(self, message: str) -> None:
        self._active = False
        self._write(("\r\033[K" if self.tty else "") + message + "\n")

    def begin(self, label: str, total: float, message: str, *, unit_bytes: bool = False) -> None:
        """Start a phase of ``total`` units; ``message`` is its plain line (without a terminal)."""
        self._label, self._total, self._bytes = label, float(total), unit_bytes
        self._t0 = time.monotonic()
        self._drawn = 0.0
        if not self.tty:
            self._write(f"{label}: {message}\n")
        else:
            self.update(0)

    def _amount(self, n: float) -> str:
        return human(n) if self._bytes else f"{n:.0f}"

    def update(self, done: float, detail: str = "") -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._drawn < 0.1 and done < self._total:
            return  # a redraw per tenth of a second is plenty
        self._drawn = now
        frac = min(1.0, done / self._total) if self._total else 1.0
        bar = "#" * int(frac * _WIDTH) + "." * (_WIDTH - int(frac * _WIDTH))
        self._active = True
        self._write(f"\r\033[K{self._label:<10} [{bar}] {self._amount(done)}/{self._amount(self._total)} {detail}"[:200])

    def clear(self) -> None:
        """Erase a half-drawn bar (before an error message takes the line)."""
        if self._active:
            self._write("\r\033[K")
            self._active = False

    def end(self, summary: str = "") -> None:
        took = time.monotonic() - self._t0
        self._active = False
        text = f"{self._label}: {summary or 'done'} ({took:.1f}s)"
        self._write(("\r\033[K" if self.tty else "") + text + "\n")


class Quiet(Progress):
    def __init__(self) -> None:
        super().__init__(None)
