"""A prior or objective overlay run as a user runs it: fit, test, predict and resume through the
CLI on real MNIST, a few batches on the CPU, all in one log folder."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.runs import CONFIGS, cpu_run_args

from vae_lightning.cli import main
from vae_lightning.runs import read_events, scalar_values

#: Batches of each training epoch; the run trains two epochs, then resumes for a third.
BATCHES = 40


class VariantRun:
    """``fit`` of ``configs/default.yaml`` with ``overlay`` for two short epochs, then ``test`` and
    ``predict`` of its last checkpoint, and a resumed ``fit`` (``--ckpt_path last``) for a third epoch."""

    def __init__(self, data_dir: Path, save_dir: Path, overlay: str, *overrides: str) -> None:
        args = [
            *cpu_run_args(data_dir, save_dir), "--config", str(CONFIGS / overlay),
            "--trainer.max_epochs=2", f"--trainer.limit_train_batches={BATCHES}", "--trainer.limit_val_batches=4",
            "--trainer.log_every_n_steps=5", "--progress_bar.refresh_rate=0", "--latent_figures.every_n_epochs=1",
            "--latent_figures.num_images=200", *overrides,
        ]
        fit = main(["fit", *args])
        self.model = fit.model
        self.run_dir = Path(fit.trainer.log_dir)
        self.checkpoint = self.run_dir / "checkpoints" / "last.ckpt"
        self.scalars = read_events(self.run_dir)
        test = main(["test", *args, f"--ckpt_path={self.checkpoint}", "--trainer.limit_test_batches=2",
                     "--evaluation.iwae_samples=[1, 20]", "--evaluation.feature_network=null"])
        self.test_metrics = {name: float(value) for name, value in test.trainer.callback_metrics.items()}
        self.predictions = save_dir / "predictions"
        main(["predict", *args, f"--ckpt_path={self.checkpoint}", "--data.predict_size=8", f"--prediction.output_dir={self.predictions}"])
        resumed = main(["fit", "--config", str(self.run_dir / "config.yaml"), "--ckpt_path=last", "--trainer.max_epochs=3"])
        self.resumed_steps = resumed.trainer.global_step
        self.resumed_checkpoint = Path(resumed.trainer.log_dir) / "checkpoints" / "last.ckpt"

    def values(self, tag: str) -> list[float]:
        return scalar_values(self.scalars, tag)

    def hyper_parameters(self, checkpoint: Path) -> dict:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
