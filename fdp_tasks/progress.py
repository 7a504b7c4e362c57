"""How long work shows itself: a progress bar on a terminal, and a one-line summary.

Every transfer command (push, pull, verify, a finalise) reports through here, so that bars
look alike and appear only where someone is watching: on a terminal, on stderr. Elsewhere
(a pipe, a CI log, a test) a bar is silent and only the summary line is written.
`FDP_PROGRESS=always` shows bars anyway, `FDP_PROGRESS=never` hides them on a terminal.

A `Bar` counts items and bytes from any thread; the bar itself is tqdm's.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any

from fdp_tasks.scalars import FALSE_WORDS, TRUE_WORDS

PROGRESS_ENV = "FDP_PROGRESS"


def bars_wanted(stream: IO[str] | None = None) -> bool:
    """Whether a bar is drawn on `stream` (default stderr)."""
    choice = os.environ.get(PROGRESS_ENV, "auto").strip().lower()
    if choice in ("always", "never"):
        return choice == "always"
    if choice in TRUE_WORDS | FALSE_WORDS:
        return choice in TRUE_WORDS
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover


class Bar:
    """Items done out of a total, with the bytes they moved and the rate.

    Thread-safe: workers call `step` and `add_bytes` (or hand `bytes_callback()` to a
    storage's progress parameter). Use as a context manager so the bar is closed however the
    work ends.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        unit: str = "file",
        stream: IO[str] | None = None,
        enabled: bool | None = None,
    ):
        self.description = description
        self.unit = unit
        self.done = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._stream = stream or sys.stderr
        self._bar: Any = None
        if bars_wanted(self._stream) if enabled is None else enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=description,
                unit=f" {unit}s" if not unit.endswith("s") else f" {unit}",
                file=self._stream,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.2,
            )

    @property
    def shown(self) -> bool:
        """Whether a bar is being drawn."""
        return self._bar is not None

    def set_total(self, total: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def step(self, count: int = 1) -> None:
        """`count` more items are done."""
        with self._lock:
            self.done += count
            if self._bar is not None:
                self._bar.update(count)
                self._show_bytes()

    def add_bytes(self, count: int) -> None:
        """`count` more bytes moved."""
        with self._lock:
            self.bytes += count
            if self._bar is not None:
                self._show_bytes()

    def bytes_callback(self) -> Callable[[int], None]:
        """For the `progress` parameter of a storage's put or get."""
        return self.add_bytes

    def _show_bytes(self) -> None:
        if not self.bytes:
            return
        elapsed = self._bar.format_dict.get("elapsed") or 0
        rate = f", {human_bytes(self.bytes / elapsed)}/s" if elapsed > 0 else ""
        self._bar.set_postfix_str(human_bytes(self.bytes) + rate, refresh=False)

    def write(self, line: str) -> None:
        """A line of output that does not tear the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        else:
            print(line, file=self._stream)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Tally:
    """What a transfer command did, item by item, said in one line at its end:
    `998 pushed, 2 failed`. Thread-safe."""

    def __init__(self, order: Iterable[str] = ()):
        """`order`: outcomes said first, in this order (the rest follow as first met)."""
        self._counts: Counter[str] = Counter()
        self._order = list(order)
        self._lock = threading.Lock()

    def add(self, outcome: str, count: int = 1) -> None:
        with self._lock:
            if outcome not in self._order:
                self._order.append(outcome)
            self._counts[outcome] += count

    def __getitem__(self, outcome: str) -> int:
        return self._counts[outcome]

    def total(self) -> int:
        return sum(self._counts.values())

    def line(self) -> str:
        """`998 pushed, 2 failed`; outcomes that never happened are left out."""
        parts = [f"{self._counts[o]} {o}" for o in self._order if self._counts[o]]
        return ", ".join(parts) or "nothing to do"
