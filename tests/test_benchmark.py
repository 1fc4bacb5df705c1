"""The paired benchmark (tools/benchmark.py) builds its loops through the CLI, pairs their steps
and writes its ratios; the project's default training path (uint8 tensor batches, self.log, all
default callbacks) computes exactly the losses of a plain DataLoader loop with the floor's step."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch
from helpers.recorders import StepLosses
from helpers.runs import REPO_ROOT
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision import datasets, transforms

from vae_lightning.cli import main
from vae_lightning.data import train_val_split
from tools import benchmark
from vae_lightning.runs import read_events, scalar_values


def test_benchmark_writes_the_paired_ratios_and_the_cost_of_self_log(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "benchmark.json"
    benchmark.main(["--data_dir", str(mnist_dir), "--steps", "4", "--repeats", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    loops = {"lightning", "project", benchmark.PROJECT_LIGHTNING_CALLBACKS}
    assert set(report["paired"]) == set(report["epoch_over_floor"]) == loops
    assert len(report["runs"]) == 2  # --repeats 2: each figure is the median of the two runs
    for loop, figures in report["paired"].items():
        assert all(math.isfinite(v) and v > 0 for k, v in figures.items() if k != "epoch_end_s"), (loop, figures)
        assert figures["step_ms"] == round(statistics.median(run[loop]["step_ms"] for run in report["runs"]), 4)  # as the report rounds it
        assert math.isfinite(report["epoch_over_floor"][loop]) and report["epoch_over_floor"][loop] > 0
    assert 0 < report["self_log_ms_per_step"] < report["paired"]["project"]["step_ms"]
    assert report["machine"]["torch"] == torch.__version__
    assert report["command"].startswith("python -m tools.benchmark")


def test_benchmark_builds_the_floor_from_the_default_config_through_the_cli(mnist_dir: Path, tmp_path: Path) -> None:
    default = benchmark.Floor(str(mnist_dir), str(tmp_path))
    assert type(default.module.network).__name__ == "MLPVAE"
    assert (default.clip_val, default.clip_algorithm, default.batch_size) == (1.0, "value", 128)
    assert default.optimizer.defaults["lr"] == 0.003 and default.optimizer.defaults["momentum"] == 0.9
    conv = benchmark.Floor(str(mnist_dir), str(tmp_path), "--config", str(REPO_ROOT / "configs/conv.yaml"))
    assert type(conv.module.network).__name__ == "ConvVAE"
    assert not hasattr(conv.module.network, "hidden_dims")  # the overlay's class replaces the MLP's arguments


def test_default_path_trains_exactly_like_a_plain_dataloader_loop(cli_args: list[str], mnist_dir: Path, tmp_path: Path) -> None:
    steps = 6
    # the project's path: the default config (tensor batch loader, lean step logging, its callbacks)
    cli = main(
        [
            *cli_args,
            f"--trainer.limit_train_batches={steps}",
            "--trainer.limit_val_batches=2",
            "--trainer.max_epochs=1",
            "--trainer.num_sanity_val_steps=0",  # validation draws noise too: keep the RNG streams aligned
            "--trainer.log_every_n_steps=2",
        ],
        run=False,
    )
    recorder = StepLosses()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    # plain path: torchvision MNIST + ToTensor, a standard DataLoader with the same sampler order,
    # and the benchmark's plain eager step (loss_terms, backward, clipping, SGD) on the CLI's module
    data = cli.datamodule
    train_idx, _ = train_val_split(60_000, data.val_size, data.split_seed)
    dataset = Subset(datasets.MNIST(str(mnist_dir), train=True, transform=transforms.ToTensor()), train_idx.tolist())
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=data.split_seed)
    batches = iter(DataLoader(dataset, batch_size=data.batch_size, sampler=sampler))  # draws a worker seed
    training = benchmark.Floor(str(mnist_dir), str(tmp_path))  # the CLI seeds as for the project's run
    plain = []
    for step, (images, _) in enumerate(batches):
        if step == steps:
            break
        plain.append(float(training.train_step(images)))

    assert len(recorder.losses) == steps
    torch.testing.assert_close(torch.tensor(recorder.losses), torch.tensor(plain), rtol=0, atol=0)  # bit for bit
    assert recorder.losses[-1] < recorder.losses[0]  # it trains

    # what users see is unchanged: per-step values on the logged steps, the epoch's weighted mean
    events = read_events(Path(cli.trainer.logger.log_dir))
    for term in ("loss", "rl", "kl"):
        assert len(scalar_values(events, f"train/{term}_step")) == steps // 2
    (epoch_loss,) = scalar_values(events, "train/loss_epoch")
    assert math.isclose(epoch_loss, sum(recorder.losses) / steps, rel_tol=1e-5)  # equal batches: plain mean
    logged_steps = scalar_values(events, "train/loss_step")
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(logged_steps, recorder.losses[1::2]))


def test_default_progress_bar_redraws_every_20_steps_and_refresh_rate_0_turns_it_off(cli_args: list[str]) -> None:
    bar = main(cli_args, run=False).trainer.progress_bar_callback
    assert isinstance(bar, TQDMProgressBar) and bar.refresh_rate == 20 and bar.is_enabled
    off = main([*cli_args, "--progress_bar.refresh_rate=0"], run=False).trainer.progress_bar_callback
    assert isinstance(off, TQDMProgressBar) and off.is_disabled


def test_benchmark_pairs_each_measured_step_of_a_lightning_loop_with_a_floor_step(mnist_dir: Path) -> None:
    result = benchmark.paired(str(mnist_dir), steps=6, first=1)
    assert set(result) == {"lightning", "project", benchmark.PROJECT_LIGHTNING_CALLBACKS}
    for loop in result.values():
        # the first epoch is a warm-up; the second's first step follows the validation, not a step
        assert loop["steps_measured"] == 5
        assert 0.3 < loop["step_over_floor"] < 10
        assert loop["step_ms"] > 0 and loop["floor_step_ms"] > 0
        assert loop["validation_s"] > 0 and loop["floor_validation_s"] > 0
    assert result["project"]["epoch_end_s"] > result["lightning"]["epoch_end_s"]  # the project writes checkpoints
    assert result["project"]["self_log_ms_per_step"] > 0


def test_the_log_clock_counts_each_logged_value_once_through_log_dict() -> None:
    class Stepping(LightningModule):
        training, current_epoch = True, 1

        def log(self, *args, **kwargs) -> None:
            time.sleep(0.01)

    module = Stepping()
    clock = benchmark.LogClock(module)
    module.log_dict({"train/loss": 1.0, "train/rl": 0.5, "train/kl": 0.5})
    module.log("train/kl_weight", 1.0)
    assert 0.04 <= clock.seconds < 0.06  # four values of 10 ms, not the dict's three again
