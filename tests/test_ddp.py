"""DDP on two CPU processes through the real command line (``python -m vae_lightning fit
--trainer.strategy ddp --trainer.devices 2``), small enough for every test run: each process
trains on its own shard, metrics are reduced over both, rank 0 alone writes; a run stopped by
SIGTERM mid-epoch resumes to the weights of a run that never stopped; a plain autoencoder
(no log-variance head) trains under ``ddp`` without unused parameters."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.compare import assert_same_weights
from helpers.faults import SignalAt
from helpers.runs import conf_args, cpu_run_args, run_command, with_callback
from lightning.pytorch import Callback

from vae_lightning.cli import main
from vae_lightning.data import TensorBatchLoader
from vae_lightning.data.loader import PixelBatch
from vae_lightning.likelihoods import MSE, Bernoulli, Gaussian
from vae_lightning.models import MLPVAE, ConvVAE
from vae_lightning.module import VAEModule
from vae_lightning.runs import read_events, scalar_values
from vae_lightning.runtime.errors import STOPPED_EXIT_CODE


def ddp_fit(mnist_dir: Path, save_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``fit`` with the default config under plain ``ddp`` on two CPU processes (tests/conf/ddp.yaml:
    2 epochs of 4 batches of 32 per process, 8 optimizer steps), writing under ``save_dir``."""
    return run_command("vae_lightning", ["fit", *cpu_run_args(mnist_dir, save_dir), *conf_args("ddp"), *extra])


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


class RecordShards(Callback):
    """Each process writes what it saw to ``<out_dir>/rank<r>.json``: a digest of every training
    image, its own mean loss over the last validation, and the ``val/loss`` it logged then
    (reduced across processes)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.train_images: list[str] = []
        self.val_total, self.val_count, self.logged_val_loss = 0.0, 0, math.nan

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pixels = (batch[0] * 255).round().to(torch.uint8).cpu()
        self.train_images += [hashlib.md5(image.numpy().tobytes()).hexdigest() for image in pixels]

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.val_total, self.val_count = 0.0, 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.val_total += float(outputs["loss"]) * len(batch[0])
        self.val_count += len(batch[0])

    def on_validation_end(self, trainer, pl_module) -> None:
        self.logged_val_loss = float(trainer.callback_metrics["val/loss"])

    def on_fit_end(self, trainer, pl_module) -> None:
        record = {
            "train_images": self.train_images,
            "own_val_loss": self.val_total / self.val_count,
            "logged_val_loss": self.logged_val_loss,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class RecordWeights(Callback):
    """Each process writes its parameters' names with digests of their values at the start
    and at the end of training to ``<out_dir>/rank<r>.json``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.start: dict[str, str] = {}

    @staticmethod
    def digests(pl_module) -> dict[str, str]:
        return {
            name: hashlib.md5(p.detach().cpu().numpy().tobytes()).hexdigest() for name, p in pl_module.named_parameters()
        }

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = self.digests(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"start": self.start, "end": self.digests(pl_module)}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def read_ranks(folder: Path) -> list[dict[str, Any]]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_the_loader_gives_each_process_its_own_disjoint_shard_and_together_all_images() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    shards = [
        [int(y) for _, labels in TensorBatchLoader(images, torch.arange(10), 2, shuffle=True, pixels=PixelBatch(),
                                                   num_replicas=2, rank=rank) for y in labels]
        for rank in (0, 1)
    ]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(10))


@pytest.fixture(scope="module")
def ddp_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 2-process run; returns its ``save_dir`` (records in ``seen/``)."""
    save_dir = tmp_path_factory.mktemp("ddp")
    result = ddp_fit(mnist_dir, save_dir, with_callback(RecordShards, out_dir=str(save_dir / "seen")))
    assert result.returncode == 0, result.stderr[-3000:]
    return save_dir


def test_each_process_trains_on_its_own_half_of_each_global_batch_and_metrics_are_reduced(
    ddp_run: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    single = main(
        [
            "fit",
            *cpu_run_args(mnist_dir, tmp_path),
            *conf_args("ddp"),
            "--trainer.strategy=auto",  # the same run in one process, on the global batch of 64
            "--trainer.devices=1",
            "--data.batch_size=64",
            with_callback(RecordShards, out_dir=str(tmp_path / "seen")),
        ]
    )
    ranks = read_ranks(ddp_run / "seen")
    (whole,) = [json.loads((tmp_path / "seen" / "rank0.json").read_text())]
    # Each process trained on its own half of each global batch of 64: the same images as one process.
    assert len(ranks[0]["train_images"]) == len(ranks[1]["train_images"]) == 2 * 4 * 32
    assert not set(ranks[0]["train_images"]) & set(ranks[1]["train_images"])
    assert sorted(ranks[0]["train_images"] + ranks[1]["train_images"]) == sorted(whole["train_images"])
    # Each validated on its own half; the logged val/loss is the mean over both, on both processes.
    assert ranks[0]["own_val_loss"] != pytest.approx(ranks[1]["own_val_loss"], rel=1e-3)
    reduced = (ranks[0]["own_val_loss"] + ranks[1]["own_val_loss"]) / 2
    assert ranks[0]["logged_val_loss"] == pytest.approx(reduced, rel=1e-5)
    assert ranks[1]["logged_val_loss"] == pytest.approx(reduced, rel=1e-5)
    single_val_loss = float(single.trainer.callback_metrics["val/loss"])
    print(f"val/loss: DDP {ranks[0]['logged_val_loss']:.4f} (ranks {ranks[0]['own_val_loss']:.4f}, "
          f"{ranks[1]['own_val_loss']:.4f}), one process {single_val_loss:.4f}")
    # Same data, same global batch: the metrics agree with one process up to the sampled noise.
    assert ranks[0]["logged_val_loss"] == pytest.approx(single_val_loss, rel=0.02)


def test_rank_zero_alone_writes_the_run_folder_events_and_checkpoints(ddp_run: Path) -> None:
    runs = list((ddp_run / "lightning_logs").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # one run folder
    (run_dir,) = runs
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert len(list((run_dir / "checkpoints").iterdir())) == 2  # last.ckpt and the best, once
    events = read_events(run_dir)
    assert len(events.Images("samples")) == 2 and len(events.Images("reconstructions")) == 2  # one per epoch
    logged = read_ranks(ddp_run / "seen")[0]["logged_val_loss"]
    val_losses = scalar_values(events, "val/loss")
    assert len(val_losses) == 2 and val_losses[-1] == pytest.approx(logged, rel=1e-6)


def test_a_run_stopped_by_sigterm_mid_epoch_resumes_to_the_weights_of_one_that_was_not(
    ddp_run: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    stopped = ddp_fit(mnist_dir, tmp_path, with_callback(SignalAt, step=6, signum=int(signal.SIGTERM)))
    assert stopped.returncode == STOPPED_EXIT_CODE, stopped.stderr[-3000:]  # stopped, not finished
    run_dir = tmp_path / "lightning_logs" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file(), stopped.stderr[-3000:]
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 6  # stopped after step 6, in the middle of epoch 1
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_served": 2}]

    resumed = run_command("vae_lightning", ["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path=last"])

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 8
    reference = checkpoint_weights(ddp_run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    largest = max(float((final["state_dict"][name] - t).abs().max()) for name, t in reference.items())
    print(f"resumed DDP run: largest weight difference from the uninterrupted one {largest}")
    assert_same_weights(final["state_dict"], reference)


def test_a_deterministic_autoencoder_trains_under_plain_ddp_with_every_parameter_used(
    mnist_dir: Path, tmp_path: Path
) -> None:
    result = ddp_fit(
        mnist_dir,
        tmp_path,
        "--model.network.init_args.deterministic=true",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3",  # an unused parameter fails DDP's second step
        with_callback(RecordWeights, out_dir=str(tmp_path / "weights")),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = read_ranks(tmp_path / "weights")
    assert not any("logvar" in name for name in ranks[0]["end"])  # no log-variance head to leave unused
    assert ranks[0]["end"] == ranks[1]["end"]  # the processes stay in step
    changed = [name for name in ranks[0]["start"] if ranks[0]["start"][name] != ranks[0]["end"][name]]
    print(f"deterministic autoencoder under ddp: {len(changed)} of {len(ranks[0]['start'])} parameters trained")
    assert changed == list(ranks[0]["start"])  # every parameter was trained


@pytest.mark.parametrize(
    ("network", "likelihood"),
    [
        (MLPVAE(deterministic=True), MSE()),
        (MLPVAE(tied_weights=True, deterministic=True), MSE()),
        (MLPVAE(linear=True, deterministic=True), MSE(link="identity")),
        (ConvVAE(deterministic=True), Bernoulli()),
        (MLPVAE(), Gaussian(learn_std=True)),
        (ConvVAE(), MSE()),
    ],
    ids=["MLP plain", "MLP tied plain", "MLP linear plain", "Conv plain", "MLP learned std", "Conv"],
)
def test_every_parameter_gets_a_gradient_from_the_loss_so_plain_ddp_needs_no_unused_parameter_search(
    network: torch.nn.Module, likelihood: torch.nn.Module
) -> None:
    module = VAEModule(network=network, likelihood=likelihood)
    x = torch.rand(8, 1, 28, 28)
    module.validation_step((x, torch.zeros(8, dtype=torch.long)), 0)["loss"].backward()  # RL + KL
    unused = [name for name, p in module.named_parameters() if p.grad is None]
    assert unused == []
