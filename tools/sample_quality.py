#!/usr/bin/env python3
"""Sample quality of three VAEs and what the sample metrics cost: docs/results/sample_quality.json.

    OMP_NUM_THREADS=1 nice -n 10 python -m tools.sample_quality [--epochs 5]   # about 11 min on 2 busy cores
    python -m tools.sample_quality --skip-training    # the costs and references again, the models' rows kept

1. Trains, into ``runs/docs/quality/<name>/``, the default config, the same with a 20-dimensional
   latent space and the ConvVAE (``configs/conv.yaml``) for ``--epochs`` epochs each, and runs
   ``test`` on each last checkpoint (all 10,000 test images, the shipped MNIST feature network):
   test/fid, kid, precision, recall of 10,000 prior samples, and test/recon_* of the reconstructions.
   Two reference rows put them on a scale: 10,000 training images (the best a model can do) and
   10,000 images of uniform noise, each against the test images.
2. Times ``test`` of the default model with and without the sample metrics
   (``--evaluation.feature_network null``), interleaved, ``--repeats`` times each, fastest kept.
3. Times the ``SampleQualityMonitor`` (``sample_quality`` section) in a fit that measures FID
   after every epoch: the seconds its hooks take against the seconds an epoch takes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

from tools.common import ROOT, LoadSampler, cli, machine, rounded, run, test_metrics, uptime, write_json
from vae_lightning.callbacks import SampleQualityMonitor
from vae_lightning.cli import main
from vae_lightning.data import ImageDataModule
from vae_lightning.quality import SampleQuality, load_feature_network

OUT = Path("runs/docs/quality")
MODELS: dict[str, list[str]] = {
    "default (MLP, d = 2)": [],
    "MLP, d = 20": ["--model.network.init_args.latent_dim", "20"],
    "ConvVAE (configs/conv.yaml), d = 2": ["--config", "configs/conv.yaml"],
}
METRICS = ("fid", "kid", "precision", "recall")


def base(data_dir: str, model: list[str], root: Path) -> list[str]:
    """The default config, then the model's overlay or overrides, the data and the run's folder."""
    return ["--config", "configs/default.yaml", *model, "--data.data_dir", data_dir, "--data.download", "false",
            "--trainer.default_root_dir", str(root)]  # fmt: skip


def model_rows(data_dir: str, epochs: int, skip_training: bool) -> list[dict[str, Any]]:
    """Each model's row, also kept in ``<run>/row.json``; with ``skip_training`` read back from there."""
    rows = []
    for i, (name, extra) in enumerate(MODELS.items()):
        folder = OUT / f"model_{i}"  # relative: the commands run from the repository root
        if skip_training:
            rows.append(json.loads((ROOT / folder / "row.json").read_text()))
            continue
        shutil.rmtree(ROOT / folder, ignore_errors=True)  # every run folder is version_0
        fit = run(cli("fit", *base(data_dir, extra, folder), "--trainer.max_epochs", str(epochs)), ROOT / folder / "fit.log")
        checkpoint = folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        test = run(cli("test", *base(data_dir, extra, folder / "test"), "--ckpt_path", str(checkpoint)), ROOT / folder / "test.log")
        scores = test_metrics(ROOT / folder / "test" / "lightning_logs" / "version_0")
        rows.append({"model": name, "epochs": epochs, "fit": fit, "test": test,
                     **{m: scores[m] for m in METRICS}, **{f"recon_{m}": scores[f"recon_{m}"] for m in METRICS}})  # fmt: skip
        (ROOT / folder / "row.json").write_text(json.dumps(rows[-1], indent=2) + "\n")
    return rows


def reference_rows(data_dir: str) -> list[dict[str, Any]]:
    """Training images and uniform noise against the test images, 10,000 each, as ``test`` compares them."""
    data = ImageDataModule(data_dir=data_dir, download=False)
    data.setup()
    test, train = data.splits["test"][0].float() / 255, data.splits["train"][0][:10000].float() / 255
    noise = torch.rand(10000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    features = load_feature_network("mnist")
    rows = []
    for name, images in (("10,000 training images", train), ("uniform noise", noise)):
        quality = SampleQuality(features.network)
        for start in range(0, 10000, 1000):
            quality.update(real=test[start : start + 1000], samples=images[start : start + 1000])
        scores = quality.compute("samples")
        rows.append({"model": name, **{m: rounded(scores[m].item(), 4) for m in METRICS}})
    return rows


def test_cost(data_dir: str, repeats: int) -> dict[str, Any]:
    folder = ROOT / OUT / "model_0"
    checkpoint = folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    times: dict[str, list[float]] = {"without": [], "with": []}
    for i in range(repeats):
        for kind, extra in (("without", ["--evaluation.feature_network=null"]), ("with", [])):
            args = ["test", *base(data_dir, [], folder / f"cost_{kind}_{i}"), f"--ckpt_path={checkpoint}", "--trainer.logger=false", *extra]
            start = time.perf_counter()
            main(args)
            times[kind].append(time.perf_counter() - start)
    fastest = {kind: min(values) for kind, values in times.items()}
    return {
        "command": "python -m vae_lightning test --config configs/default.yaml --ckpt_path <default model> [--evaluation.feature_network null]",
        "seconds_without": rounded(fastest["without"]), "seconds_with": rounded(fastest["with"]),
        "seconds_added": rounded(fastest["with"] - fastest["without"]), "all_seconds": {k: [rounded(v) for v in vs] for k, vs in times.items()},
    }  # fmt: skip


class TimedMonitor(SampleQualityMonitor):
    """The monitor with the seconds of its validation hooks counted, per epoch."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds: list[float] = [0.0]

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().on_validation_batch_end(*args, **kwargs)
        self.seconds[-1] += time.perf_counter() - start

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        start = time.perf_counter()
        super().on_validation_epoch_end(trainer, pl_module)
        self.seconds[-1] += time.perf_counter() - start
        if not trainer.sanity_checking:
            self.seconds.append(0.0)


class EpochClock(Callback):
    """Wall time between the ends of consecutive training epochs (validation included)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.ends.append(time.perf_counter())


def epoch_cost(data_dir: str, epochs: int, num_images: int) -> dict[str, Any]:
    monitor, clock = TimedMonitor(every_n_epochs=1, num_images=num_images), EpochClock()
    args = ["fit", *base(data_dir, [], ROOT / OUT / "epoch_cost"), "--trainer.max_epochs", str(epochs), "--trainer.logger=false"]
    main(args, trainer_defaults={"callbacks": [monitor, clock]})
    epoch_s = statistics.median(b - a for a, b in zip(clock.ends, clock.ends[1:]))
    monitor_s = statistics.median(monitor.seconds[1:epochs])  # the first also encodes the validation images
    return {
        "command": f"python -m vae_lightning fit --config configs/default.yaml --sample_quality.every_n_epochs 1 --sample_quality.num_images {num_images}",
        "epochs": epochs, "num_images": num_images, "epoch_seconds": rounded(epoch_s), "monitor_seconds": rounded(monitor_s, 3),
        "first_monitor_seconds": rounded(monitor.seconds[0], 3), "fraction_of_an_epoch": rounded(monitor_s / epoch_s, 3),
        "fraction_at_every_5_epochs": rounded(monitor_s / epoch_s / 5, 3),
    }  # fmt: skip


def main_script() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-training", action="store_true", help="reuse the models' rows already in runs/docs/quality/")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "sample_quality.json")
    args = parser.parse_args()
    features = load_feature_network("mnist")
    for folder in (ROOT / OUT).glob("model_0/cost_*"):
        shutil.rmtree(folder)
    shutil.rmtree(ROOT / OUT / "epoch_cost", ignore_errors=True)
    before = uptime()
    with LoadSampler() as load:
        models = model_rows(args.data_dir, args.epochs, args.skip_training)
        result = {
            "script": "python -m tools.sample_quality",
            "feature_network": {"file": "vae_lightning/quality/weights/mnist.pt", "sha256": features.sha256, "test_accuracy": features.test_accuracy},
            "machine": machine(),
            "models": models,
            "references": reference_rows(args.data_dir),
            "test_cost": test_cost(args.data_dir, args.repeats),
            "epoch_cost": epoch_cost(args.data_dir, 4, 1000),
        }
    result |= {"uptime_before": before, "uptime_after": uptime(), **load.summary()}
    write_json(args.out, result)


if __name__ == "__main__":
    main_script()
