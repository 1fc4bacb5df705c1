"""Train the feature network of the sample metrics on a dataset's labelled training split:

    python -m vae_lightning.quality.train_features --dataset mnist --data_dir data --out features/mnist.pt

writes ``mnist.pt`` (the weights and what they were trained on) and ``mnist.json`` (its SHA-256, its
accuracy on the test split, the command); ``--evaluation.feature_network features/mnist.pt`` then
uses it. The MNIST network this wrote ships as ``vae_lightning/quality/weights/mnist.pt``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import get_args

import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch import Tensor
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from vae_lightning.data import ImageDataModule
from vae_lightning.data.sources import DatasetName
from vae_lightning.quality.network import FeatureNetwork, save_feature_network
from vae_lightning.runtime.errors import UserError, run_reporting_user_errors


class FeatureClassifier(LightningModule):
    """Fits a :class:`FeatureNetwork` to the labels by cross-entropy with Adam, its learning rate
    annealed to 0 along a cosine over the epochs; shows ``val/accuracy`` on the held-out training
    images after each epoch and logs ``test/accuracy``."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.network = FeatureNetwork(image_shape[0], num_classes, image_shape[1], image_shape[2])
        self.lr = lr
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.accuracy = MulticlassAccuracy(num_classes, average="micro")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.network.classify(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_accuracy.update(self.network.classify(x), y)
        self.log("val/accuracy", self.val_accuracy, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.accuracy.update(self.network.classify(x), y)
        self.log("test/accuracy", self.accuracy, on_epoch=True)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        # the rate decays to 0 along a cosine over the epochs: the last epochs settle the weights
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def train(args: argparse.Namespace) -> dict:
    """Train on the training split (less the datamodule's validation images), test on the test split,
    write the weights and their record; returns the record."""
    seed_everything(args.seed, verbose=False)
    data = ImageDataModule(
        data_dir=args.data_dir, dataset=args.dataset, batch_size=args.batch_size, val_size=args.val_size, download=args.download,
        image_size=args.image_size, channels=args.channels,
    )  # fmt: skip
    num_classes = data.num_classes
    if num_classes is None or num_classes < 2:
        has = "no class labels" if num_classes is None else "one class folder"
        raise UserError(
            f"--dataset {args.dataset} has {has}, and the feature network is a classifier trained on them: train it on "
            "a labelled dataset (the MNIST family, CIFAR-10, or an image_folder with a subfolder per class) of the "
            "VAE's image shape, and give its weights as --evaluation.feature_network"
        )
    data.prepare_data()
    data.setup("fit")
    shape = data.image_shape
    classifier = FeatureClassifier(shape, num_classes, args.lr)
    trainer = Trainer(
        max_epochs=args.epochs, accelerator=args.accelerator, devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, default_root_dir=str(args.out.parent),
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(classifier, datamodule=data)
    seconds = time.perf_counter() - start
    (result,) = trainer.test(classifier, datamodule=data, verbose=False)
    about = {
        "dataset": args.dataset, "image_shape": list(shape), "num_classes": num_classes,
        "test_accuracy": round(float(result["test/accuracy"]), 5),
    }  # fmt: skip
    digest = save_feature_network(classifier.network.cpu(), args.out, about)
    record = {
        **about,
        "sha256": digest,
        "epochs": args.epochs,
        "training_images": len(data.splits["train"][0]),
        "test_images": len(data.splits["test"][0]),
        "training_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "command": shlex.join(["python", "-m", "vae_lightning.quality.train_features", *args.argv]),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.out}: test accuracy {about['test_accuracy']:.2%}, sha256 {digest}")
    return record


def _count_or_fraction(text: str) -> int | float:
    """``5000`` as a count of images, ``0.1`` as a fraction of them, as ``data.val_size`` reads them."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vae_lightning.quality.train_features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=get_args(DatasetName), default="mnist")
    parser.add_argument("--data_dir", default="data", help="as data.data_dir of the VAE's config")
    parser.add_argument("--out", type=Path, required=True, help="the weights file to write (.pt); its .json record goes beside it")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument(
        "--val_size", type=_count_or_fraction, default=None,
        help="as data.val_size (a count, a fraction such as 0.1, or 5,000 or a tenth when not given): training images left out, as the VAE leaves them",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--image_size", type=int, default=None, help="as data.image_size: the VAE's images must have this size")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None, help="as data.channels")
    parser.add_argument("--download", action="store_true", help="fetch the dataset into data_dir when it is missing")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    return run_reporting_user_errors(lambda a: train(parse(a)), argv)


if __name__ == "__main__":
    sys.exit(main())
