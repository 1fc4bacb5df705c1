"""The process-wide numeric settings: flushing denormals keeps SGD's weights bit for bit while
keeping its momentum free of the slow denormal values, and reaches every CPU thread only when
set before they start."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from vae_lightning.runtime.numerics import apply_numerics

TINY = torch.finfo(torch.float32).tiny


def _sgd_after_one_gradient(flush: bool, steps: int) -> tuple[list[torch.Tensor], int]:
    """Weights after each step, and the steps whose momentum held denormals, for SGD (the
    default's lr and momentum) on weights that get one gradient and then none, like the weights
    of a pixel that is rarely non-zero."""
    torch.set_flush_denormal(flush)
    try:
        weights = torch.nn.Parameter(torch.linspace(-0.05, 0.05, 1000))
        optimizer = torch.optim.SGD([weights], lr=3e-3, momentum=0.9)
        history, denormal_steps = [], 0
        for step in range(steps):
            weights.grad = torch.linspace(-1e-3, 1e-3, 1000) if step == 0 else torch.zeros(1000)
            optimizer.step()
            buffer = optimizer.state[weights]["momentum_buffer"]
            denormal_steps += bool(((buffer != 0) & (buffer.abs() < TINY)).any())
            history.append(weights.detach().clone())
        return history, denormal_steps
    finally:
        torch.set_flush_denormal(False)


def test_flushing_denormals_keeps_the_sgd_weights_and_rids_the_momentum_of_denormals() -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    kept, denormal_steps_kept = _sgd_after_one_gradient(flush=False, steps=1000)
    flushed, denormal_steps_flushed = _sgd_after_one_gradient(flush=True, steps=1000)
    assert denormal_steps_kept > 100  # momentum 0.9 decays through the denormal range for ~150 steps
    assert denormal_steps_flushed == 0
    assert all(torch.equal(a, b) for a, b in zip(kept, flushed))  # the same weights at every step


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_the_flush_mode_reaches_every_thread_only_when_set_first_and_a_late_setting_says_so() -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    first = _run(
        """
        import torch
        torch.set_num_threads(2)
        from vae_lightning.runtime.numerics import apply_numerics, denormal_flush_share
        apply_numerics(flush_denormal=True)
        torch.ones(1 << 20).mul_(2)  # threads start after the setting
        print(denormal_flush_share())
        """
    )
    assert first.returncode == 0, first.stderr
    assert float(first.stdout.split()[-1]) == 1.0
    assert "reached only part" not in first.stderr
    late = _run(
        """
        import torch
        torch.set_num_threads(2)
        torch.ones(1 << 20).mul_(2)  # threads start before the setting
        from vae_lightning.runtime.numerics import apply_numerics, denormal_flush_share
        apply_numerics(flush_denormal=True)
        print(denormal_flush_share())
        """
    )
    assert late.returncode == 0, late.stderr
    assert 0.0 < float(late.stdout.split()[-1]) < 1.0
    assert "reached only part of torch's CPU threads" in late.stderr
    assert "torch.set_flush_denormal() first thing" in late.stderr


def test_an_unknown_matmul_precision_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="highest"):
        apply_numerics("fastest")
