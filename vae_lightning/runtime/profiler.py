"""A profiler that records nothing, at no cost: the default of ``configs/default.yaml``.

Lightning wraps every hook call, for each callback and each step, in ``trainer.profiler.profile(name)``.
Its own no-op default, ``PassThroughProfiler``, builds a generator-based context manager for each
of these calls (about 2 microseconds; a training step of the default config makes about a
hundred), which is 1 to 2% of a CPU step of the report's model. This one hands back a single
shared null context. To profile a run, choose one of Lightning's: ``--trainer.profiler simple``
(or ``advanced``, ``pytorch``).
"""

from __future__ import annotations

from contextlib import nullcontext

from lightning.pytorch.profilers import PassThroughProfiler


class NullProfiler(PassThroughProfiler):
    """``PassThroughProfiler`` whose ``profile`` returns one shared ``nullcontext``."""

    _NOTHING = nullcontext()

    def profile(self, action_name: str) -> nullcontext:  # type: ignore[override]
        return self._NOTHING
