"""The conditional VAE of configs/conditional.yaml: writes docs/results/conditional.json.

    python -m tools.conditional          # from the repository root; about 5 min on 2 busy CPU cores

Runs, into ``runs/docs/conditional/``::

    python -m vae_lightning fit --config configs/default.yaml --config configs/conditional.yaml \\
        --data.data_dir ../shared/data --trainer.max_epochs 5
    python -m vae_lightning test --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt

then draws ``--per_class`` images of each class from the last checkpoint (seed 0) and records
the share the shipped MNIST classifier (vae_lightning/quality/weights/mnist.json) assigns to the
class asked for, over all draws and per class: how well the samples follow the class, next to
the classifier's own accuracy on the test images. The first 8 draws of each class are the rows of
docs/pictures/class_samples.png. The test loss compares with the unconditional
default model's after the same 5 epochs (docs/results/mlp_vs_conv.json, ``mlp_mnist``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from vae_lightning.module import VAEModule
from vae_lightning.pictures.grids import save_image_grid
from vae_lightning.quality.network import load_feature_network
from vae_lightning.runs import read_scalars

from tools.common import ROOT, RESULTS, cli, machine, rounded, script_parser, shrink_png, test_metrics, timed_commands, write_json

OUT = Path("runs/docs/conditional")
PICTURE = ROOT / "docs/pictures/class_samples.png"
SHOWN_PER_CLASS = 8


@torch.no_grad()
def class_agreement(checkpoint: Path, per_class: int) -> dict[str, object]:
    """The share of ``per_class`` draws of each class that the shipped classifier gives that class."""
    model = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    features = load_feature_network("mnist")
    asked = torch.arange(model.num_classes).repeat_interleave(per_class)
    images = model.generate(len(asked), torch.Generator().manual_seed(0), classes=asked)
    seen = torch.cat([features.network.classify(chunk).argmax(dim=1) for chunk in images.split(1000)])
    per = [rounded((seen[asked == c] == c).float().mean(), 4) for c in range(model.num_classes)]
    shown = images.view(model.num_classes, per_class, *images.shape[1:])[:, :SHOWN_PER_CLASS].flatten(0, 1)
    shrink_png(save_image_grid(shown, PICTURE, nrow=SHOWN_PER_CLASS))
    return {
        "draws_per_class": per_class,
        "classified_as_asked": rounded((seen == asked).float().mean(), 4),
        "classified_as_asked_per_class": per,
        "worst_class": int(torch.tensor(per).argmin()),
        "picture": str(PICTURE.relative_to(ROOT)),
        "classifier": features.describe(),
        "classifier_test_accuracy": features.test_accuracy,
    }


def main(data_dir: str, epochs: int, per_class: int, summarize_only: bool) -> None:
    version = OUT / "lightning_logs/version_0"
    ckpt = version / "checkpoints/last.ckpt"
    commands = None
    if not summarize_only:
        shutil.rmtree(ROOT / OUT, ignore_errors=True)
        configs = ["--config", "configs/default.yaml", "--config", "configs/conditional.yaml", "--data.data_dir", data_dir]
        commands = {
            "fit": (cli("fit", *configs, "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(OUT)), ROOT / OUT / "fit.log"),
            "test": (cli("test", "--config", str(version / "config.yaml"), "--data.data_dir", data_dir, "--ckpt_path", str(ckpt)), ROOT / OUT / "test.log"),
        }
    timings = timed_commands(ROOT / OUT, commands)
    trained = read_scalars(ROOT / version)
    tested = test_metrics(ROOT / OUT / "lightning_logs/version_1")
    result = {
        "description": "configs/conditional.yaml (the default 784-512-256-2 MLP VAE given the one-hot class on the encoder's "
        "input and on z; squared error, SGD lr 3e-3 momentum 0.9, batch 128) on MNIST, tested on the 10,000 test images",
        "script": "python -m tools.conditional",
        "machine": machine(),
        **timings,
        "epochs": len(trained["val/loss"]),
        "val_loss_per_epoch": [rounded(v) for v in trained["val/loss"]],
        "test_metrics": tested,
        "samples": class_agreement(ROOT / ckpt, per_class),
        "unconditional_reference": {"file": "docs/results/mlp_vs_conv.json", "run": "mlp_mnist", "epochs": 5},
    }
    write_json(RESULTS / "conditional.json", result)


if __name__ == "__main__":
    parser = script_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--per_class", type=int, default=1000, help="draws of each class scored by the classifier")
    args = parser.parse_args()
    main(args.data_dir, args.epochs, args.per_class, args.summarize_only)
