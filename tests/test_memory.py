"""A long run holds its memory flat (the soak test): every default callback each epoch, and nothing
accumulates from epoch to epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.compare import find_callback
from helpers.recorders import ResidentMemory
from helpers.runs import cpu_run_args, with_callback

from vae_lightning.cli import main


@pytest.mark.slow
def test_memory_stays_flat_over_a_30_epoch_run(mnist_dir: Path, tmp_path: Path) -> None:
    """30 epochs of 20 batches with every default callback each epoch (image grids, gradient and
    latent diagnostics, checkpoints): after the first epochs' one-off imports and allocator
    warm-up, nothing accumulates."""
    cli = main(
        [
            "fit",
            *cpu_run_args(mnist_dir, tmp_path),
            "--trainer.max_epochs=30",
            "--trainer.limit_train_batches=20",
            "--trainer.limit_val_batches=5",
            "--trainer.log_every_n_steps=5",
            with_callback(ResidentMemory),
        ]
    )
    memory = find_callback(cli, ResidentMemory)
    print("RSS per epoch (MB):", " ".join(f"{r:.0f}" for r in memory.rss_mb))
    print("live tensors (count, MB):", memory.tensors[4], "->", memory.tensors[-1])
    print("Python objects:", memory.objects[4], "->", memory.objects[-1])
    assert memory.tensors[-1] == memory.tensors[4]  # no tensor kept from epoch to epoch
    assert abs(memory.objects[-1] - memory.objects[4]) < 1000
    assert max(memory.rss_mb[5:]) - memory.rss_mb[4] < 100  # MB: allocator noise, no trend
