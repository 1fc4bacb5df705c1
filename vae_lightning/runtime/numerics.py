"""Process-wide numeric settings, applied by the CLI before anything is built.

- ``float32_matmul_precision``: ``torch.set_float32_matmul_precision``. "highest" keeps float32
  matmuls exact; "high" allows TF32 on NVIDIA GPUs; "medium" also bf16 (on CPUs with AMX,
  oneDNN's bf16 matmuls). The faster ones change the numbers slightly.
- ``flush_denormal``: ``torch.set_flush_denormal``, float32 values below 1.2e-38 become 0 on x86
  CPUs. SGD momentum of weights that rarely get a gradient (those of MNIST's border pixels)
  decays geometrically and spends about 150 steps in that range, and x86 CPUs compute on such
  values many times slower: without flushing, a CPU epoch of the default model takes up to
  twice as long after a few epochs (docs/performance.md). Values that small are below the last
  bit of the weights they update: after 5 epochs of the default model, the weights trained with
  and without flushing were identical bit for bit.

The CPU flush mode is a per-thread setting that new threads inherit, so it reaches all of
torch's CPU threads only when set before they start (before the first parallel torch
operation of the process), as ``python -m vae_lightning`` does.
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

MATMUL_PRECISIONS = ("highest", "high", "medium")


def denormal_flush_share() -> float:
    """The share of torch's CPU work that flushes denormals: 1.0 when every intra-op thread does,
    0.0 when none does, in between when threads started before the last change kept the old mode.
    Measured on a probe of denormals large enough to be split over all threads, made from integer
    bits (converting a float would already flush it on this thread)."""
    probe = torch.ones(torch.get_num_threads() * 65536, dtype=torch.int32).view(torch.float32)  # 1.4e-45
    return float((probe * 1.0 == 0).float().mean())


def apply_numerics(float32_matmul_precision: str = "highest", flush_denormal: bool = True) -> None:
    """Set both for this process, and say so where the flush mode could not reach every thread."""
    if float32_matmul_precision not in MATMUL_PRECISIONS:
        raise ValueError(f"float32_matmul_precision must be one of {MATMUL_PRECISIONS}, got {float32_matmul_precision!r}")
    torch.set_float32_matmul_precision(float32_matmul_precision)
    if not torch.set_flush_denormal(flush_denormal):
        if flush_denormal:
            rank_zero_info("flush_denormal: this CPU has no flush-to-zero mode; denormal values are kept")
        return
    share = denormal_flush_share()
    if share != (1.0 if flush_denormal else 0.0):
        rank_zero_warn(
            f"flush_denormal={str(flush_denormal).lower()} reached only part of torch's CPU threads "
            f"({share:.0%} of a probe was flushed): threads started before it was set keep their mode. "
            "Set it before any other torch work in the process (as `python -m vae_lightning` does), or "
            "call torch.set_flush_denormal() first thing."
        )
