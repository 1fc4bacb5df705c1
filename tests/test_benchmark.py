"""The epoch-time benchmark runs and reports its three rows, and the fast default training path
(tensor batches, lean logging) computes exactly the losses of a plain DataLoader loop."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision import datasets, transforms

from recorders import StepLosses
from tb import read_events, scalar_values
from vae_lightning.cli import PROGRESS_BAR_REFRESH_RATE, main
from vae_lightning.data import train_val_split
from vae_lightning.model import VAE

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "epoch_time.py"


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("epoch_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_json_and_table_with_floor_reference_and_project(mnist_dir: Path, tmp_path: Path) -> None:
    args = ["--device", "cpu", "--epochs", "1", "--warmup", "0", "--limit-batches", "3", "--threads", "1", "--in-process",
            "--repeats", "2"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--data-dir", str(mnist_dir), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No GPU here" in proc.stdout  # CPU-only machines are told the GPU rows need --device cuda
    report = json.loads((tmp_path / "epoch_time_cpu.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == {"floor", "reference", "project"}
    for row in rows.values():
        assert "error" not in row, row
        for key in ("seconds_per_epoch", "cpu_seconds_per_epoch", "images_per_s", "peak_rss_mb", "val_loss"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key, row[key])
        assert row["train_images_per_epoch"] == 3 * 128
        # --repeats 2: each row is the median of its two interleaved runs, which the report keeps
        assert len(row["runs_seconds_per_epoch"]) == 2
        assert row["seconds_per_epoch"] == round(sum(row["runs_seconds_per_epoch"]) / 2, 4)
    assert set(report["ratios"]) >= {"project_over_floor_time", "reference_over_project_time", "project_over_floor_memory"}
    assert all(math.isfinite(v) for v in report["ratios"].values())
    assert [run["project"] for run in report["runs"]] == rows["project"]["runs_seconds_per_epoch"]
    table = (tmp_path / "epoch_time_cpu.md").read_text()
    assert all(f"| {name} |" in table for name in rows)
    assert "median of 2 runs, interleaved" in table


def test_benchmark_refuses_cuda_without_a_gpu_and_says_so(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        return  # on a GPU machine --device cuda is valid; the CPU-only message has nothing to say
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "No CUDA GPU is available" in proc.stderr


def test_fast_default_path_trains_exactly_like_a_plain_dataloader_loop(
    cli_args: list[str], mnist_dir: Path, tmp_path: Path
) -> None:
    steps = 6
    # fast path: the default config (tensor batch loader, lean step logging, its callbacks)
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
    # and the benchmark's plain eager step (loss, backward, clip by value 1, SGD)
    bench = _benchmark_module()
    data = cli.datamodule
    train_idx, _ = train_val_split(60_000, data.val_size, data.split_seed)
    dataset = Subset(datasets.MNIST(str(mnist_dir), train=True, transform=transforms.ToTensor()), train_idx.tolist())
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=data.split_seed)
    batches = iter(DataLoader(dataset, batch_size=data.batch_size, sampler=sampler))  # draws a worker seed
    torch.manual_seed(0)  # the config's seed_everything, so init and noise draws match the fast path
    hp = cli.model.hparams
    model = VAE(hp.input_dim, hp.hidden_dims, hp.latent_dim, hp.mc_samples, hp.tied_weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    plain = []
    for step, (images, _) in enumerate(batches):
        if step == steps:
            break
        plain.append(float(bench.train_step(model, optimizer, images.view(len(images), -1))))

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


def test_default_progress_bar_redraws_every_20_steps_and_stays_off_when_disabled(cli_args: list[str]) -> None:
    shown = [arg for arg in cli_args if not arg.startswith("--trainer.enable_progress_bar")]
    bar = main(shown, run=False).trainer.progress_bar_callback
    assert isinstance(bar, TQDMProgressBar) and bar.refresh_rate == PROGRESS_BAR_REFRESH_RATE == 20
    assert main(cli_args, run=False).trainer.progress_bar_callback is None  # --trainer.enable_progress_bar=false
