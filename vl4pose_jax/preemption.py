"""Graceful stop on SIGTERM (a cluster's pre-emption notice) and Ctrl-C (SIGINT).

`install()` (the command line calls it) makes both signals only set a flag; the AL simulator
polls `requested()` at safe points: after every training step it saves the mid-round
checkpoint (with the data-iterator state) and raises `Interrupted`; during evaluation and pool
scoring it finishes the round and stops after the round's checkpoint. The command line then
prints one line and exits with `128 + signal` (143 for SIGTERM, 130 for Ctrl-C), and rerunning
it resumes exactly. A second signal while stopping restores the default behaviour (a second
SIGTERM kills at once, a second Ctrl-C raises `KeyboardInterrupt`), losing only the work since
the last checkpoint. With several processes, every process stops at the first step at which any
of them has been signalled (agreed by a tiny all-gather per step).
"""
from __future__ import annotations

import signal

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list = []
_previous: dict = {}


class Interrupted(Exception):
    """The run stopped at a checkpoint after a signal; `exit_code` is 128 + the signal."""

    def __init__(self, signum: int, where: str):
        self.signum, self.where = signum, where
        self.exit_code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} received: stopped after saving {where}; "
                         "rerun the same command to resume exactly from there.")


def _handler(signum, frame):  # pylint: disable=unused-argument
    _received.append(signum)
    for s, old in _previous.items():   # a second signal acts at once
        signal.signal(s, old if old is not None else signal.SIG_DFL)


def install():
    """Route SIGTERM and SIGINT to the flag (main thread only; a no-op if already installed)."""
    _received.clear()
    for s in _SIGNALS:
        old = signal.signal(s, _handler)
        if old is not _handler:
            _previous[s] = old


def uninstall():
    for s, old in _previous.items():
        signal.signal(s, old if old is not None else signal.SIG_DFL)
    _previous.clear()
    _received.clear()


def requested(collective: bool = False) -> int | None:
    """The first signal received (a number), or None. `collective=True` (call it on every
    process at the same point) returns a signal when any process has received one."""
    local = _received[0] if _received else 0
    if collective:
        import jax  # pylint: disable=import-outside-toplevel
        if jax.process_count() > 1:
            import numpy as np  # pylint: disable=import-outside-toplevel

            from vl4pose_jax import parallel  # pylint: disable=import-outside-toplevel
            (all_,) = parallel.gather_rows(np.array([local], np.int64))
            local = int(max(all_)) if len(all_) else 0
    return local or None
