"""Progress of long solves: the time reached and the steps taken, with the time left.

The loops report through :meth:`Backend.host_callback` (under JAX's ``jit`` a host
callback inside the compiled loop, as diffrax's progress meter does); the meter itself
lives on the host. With ``progress=False`` (the default) no callback is placed at all.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._backend import Backend

#: Seconds between two lines of the plain-text meter.
TEXT_INTERVAL = 1.0

#: A phase reports a step when it crosses one of this many equal parts of its interval (a
#: host call from a compiled loop costs 0.2 to 1 ms on a CPU, so a phase costs at most 10 to 50 ms).
REPORTS = 50

#: The meters shown now. A solve that raises leaves its meter open when nothing of ours
#: runs between the failure and the caller (a host callback failing in a run under JAX);
#: the next meter to start closes it, so that a dead tqdm bar does not push every later
#: bar a line down. One meter is shown at a time (a solve inside func that shows its own
#: progress stops its caller's meter).
_SHOWN: list[PhaseMeter] = []


class PhaseMeter:
    """One phase of a solve (the forward pass, or the backward walk) shown as it goes, on
    the host: ``start(t_from, t_to)`` opens it, ``step(t[, steps])`` reports the time
    reached (and the loop's step count), ``finish([steps])`` closes it. The fraction done
    is the fraction of ``[t_from, t_to]`` covered; the time left is extrapolated from it.
    """

    def __init__(self, label: str, display: Callable[[str], Any]) -> None:
        self.label = label
        self._display = display
        self._open = False

    def start(self, t_from: Any, t_to: Any) -> None:
        for stale in list(_SHOWN):
            stale.abandon()
        self.t_from, self.t_to = float(t_from), float(t_to)
        self.t, self.steps = self.t_from, None
        self.started = time.monotonic()
        self._view = self._display(self.label)
        self._open = True
        _SHOWN.append(self)

    def step(self, t: Any, steps: Any = None) -> None:
        if not self._open:
            return
        self.t = float(t)
        if steps is not None:
            self.steps = int(steps)
        self._view.show(self)

    def finish(self, steps: Any = None) -> None:
        if self._open:
            self._close()
            if steps is not None:
                self.steps = int(steps)
            self._view.close(self)

    def abandon(self) -> None:
        """Close the phase where it stopped, if open: its solve raised."""
        if self._open:
            self._close()
            self._view.stop(self)

    def _close(self) -> None:
        self._open = False
        if self in _SHOWN:
            _SHOWN.remove(self)

    @property
    def fraction(self) -> float:
        span = self.t_to - self.t_from
        return 1.0 if span == 0 else min(max((self.t - self.t_from) / span, 0.0), 1.0) + 0.0  # no -0%

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float | None:
        """Seconds left at the pace so far, ``None`` before there is a pace."""
        done = self.fraction
        return None if done <= 0 else self.elapsed * (1 - done) / done

    def describe(self) -> str:
        steps = "" if self.steps is None else f", {self.steps} steps"
        return f"t={self.t:.6g}{steps}"


@dataclass(frozen=True)
class Reporter:
    """A :class:`PhaseMeter` as a solve's program calls it: the host calls are placed with
    :meth:`Backend.host_callback`, over the interval from ``t_from`` to ``t_to`` (arrays).

    A host call from a compiled loop costs 0.2 to 1 ms (JAX on a CPU), more than a small
    network's step; only steps that cross one of :data:`REPORTS` equal parts of the
    interval are reported, so a phase costs at most that many calls however many steps it
    takes. ``counts_steps``: whether the loops reporting here count this phase's steps (the
    backward solves of the continuous adjoint count their own segment's only).
    """

    meter: PhaseMeter
    t_from: Any
    t_to: Any
    counts_steps: bool = True

    def open(self, backend: Backend) -> None:
        backend.host_callback(self.meter.start, self.t_from, self.t_to)

    def step(self, backend: Backend, xp: Any, t_before: Any, t_after: Any, steps: Any = None) -> None:
        def part(t: Any) -> Any:
            return xp.floor((t - self.t_from) / (self.t_to - self.t_from) * REPORTS)

        def report(t: Any) -> Any:
            if steps is not None and self.counts_steps:
                backend.host_callback(self.meter.step, t, steps)
            else:
                backend.host_callback(self.meter.step, t)
            return t

        backend.cond(part(t_after) != part(t_before), report, lambda t: t, t_after)

    def close(self, backend: Backend, steps: Any = None, after: Any = None) -> None:
        """Close the phase (``after``: a value the call waits for, so it runs after the loop)."""
        backend.host_callback(lambda steps, after: self.meter.finish(steps), steps, after)

    def abandon(self) -> None:
        """Close the phase now, from the host, if it is open: for an ``except`` clause around
        the phase's run (when tracing for JAX nothing has run yet, and nothing is open)."""
        self.meter.abandon()


class PhaseEnd:
    """What closing a phase waits for, set inside :func:`phase`'s block: the step count to
    show (``steps``) and a value computed last (``after``), so that the close runs after it."""

    def __init__(self) -> None:
        self.steps: Any = None
        self.after: Any = None


@contextlib.contextmanager
def phase(reporter: Reporter | None, backend: Backend) -> Iterator[PhaseEnd]:
    """The block as one phase of ``reporter`` (nothing with ``None``): opened before it,
    closed after it, abandoned where it raises (a bar left open would push the next down)."""
    end = PhaseEnd()
    if reporter is None:
        yield end
        return
    reporter.open(backend)
    try:
        yield end
    except BaseException:
        reporter.abandon()
        raise
    reporter.close(backend, end.steps, end.after)


class _TextView:
    """A line on stderr at most every :data:`TEXT_INTERVAL` seconds, and one at the end."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        # The first line comes after an interval: a short solve shows only its last line.
        self.label, self.stream, self.last = label, stream, time.monotonic()

    def show(self, meter: PhaseMeter) -> None:
        now = time.monotonic()
        if now - self.last >= TEXT_INTERVAL:
            self.last = now
            left = meter.remaining
            eta = "" if left is None else f", about {_duration(left)} left"
            self._write(f"{self.label}: {meter.describe()} ({meter.fraction:.0%} of [{meter.t_from:.6g}, "
                        f"{meter.t_to:.6g}]), {_duration(meter.elapsed)} elapsed{eta}")

    def close(self, meter: PhaseMeter) -> None:
        self._write(f"{self.label}: done, {meter.describe()}, in {_duration(meter.elapsed)}")

    def stop(self, meter: PhaseMeter) -> None:
        self._write(f"{self.label}: stopped at {meter.describe()}, after {_duration(meter.elapsed)}")

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(line, file=stream, flush=True)


class _TqdmView:
    """A tqdm bar over the :data:`REPORTS` parts of the interval, with t and the step count."""

    def __init__(self, label: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=REPORTS, desc=label, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self.shown = 0

    def show(self, meter: PhaseMeter) -> None:
        done = int(meter.fraction * REPORTS)
        self.bar.set_postfix_str(meter.describe(), refresh=False)
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self, meter: PhaseMeter) -> None:
        self.show(meter)
        self.bar.close()

    def stop(self, meter: PhaseMeter) -> None:
        self.bar.close()  # kept on screen where the phase stopped


def _default_view(label: str) -> _TextView | _TqdmView:
    try:
        return _TqdmView(label)
    except ImportError:
        return _TextView(label)


@dataclass(frozen=True)
class Progress:
    """The meters of one solve: the integration loop reports to ``forward``, the backward
    walk to ``backward`` (the continuous adjoint's backward solves are integration loops
    given a :class:`Progress` whose ``forward`` is the backward reporter)."""

    forward: Reporter
    backward: Reporter

    @classmethod
    def shown(cls, t_from: Any, t_to: Any, display: Callable[[str], Any] | None = None) -> Progress:
        display = display if display is not None else _default_view
        return cls(Reporter(PhaseMeter("symadj forward", display), t_from, t_to),
                   Reporter(PhaseMeter("symadj backward", display), t_to, t_from, counts_steps=False))


def as_progress(progress: bool, ts: Any) -> Progress | None:
    """``progress=`` of the public API for a solve over the times ``ts``, ``None`` for none."""
    if not isinstance(progress, bool):
        raise InvalidArgumentError(f"progress must be True or False, got {progress!r}")
    return Progress.shown(ts[0], ts[-1]) if progress else None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
