"""What a user reads on the console of a real run: no library noise, the warnings about the run kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.runs import REPO_ROOT, cpu_run_args


def test_a_run_shows_its_own_warnings_but_not_library_deprecations_or_adverts(mnist_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "vae_lightning", "fit", *cpu_run_args(mnist_dir, tmp_path)]
    command += ["--trainer.max_epochs=1", "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "smaller than the logging interval" in console  # about this run: 5 batches, a log every 50
    assert "LeafSpec" not in console  # a deprecation inside Lightning
    assert "litlogger" not in console  # an advert
    assert "`Trainer.fit` stopped" in console
