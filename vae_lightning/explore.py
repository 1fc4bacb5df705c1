"""Write the latent-space pictures of a trained VAE as PNG files.

    python -m vae_lightning.explore --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --out pictures

The model and its data settings (dataset, data_dir, ...) come from the checkpoint
(``vae_lightning.runs.load_run``); ``--data_dir`` overrides the folder. The figures are those of
``vae_lightning.pictures.latent_space``, drawn on the test set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from jsonargparse import auto_cli

from vae_lightning.data import ImageDataModule
from vae_lightning.pictures import latent_figures
from vae_lightning.runs import load_run
from vae_lightning.runtime.errors import run_reporting_user_errors


def load_test_set(datamodule: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """All test images (N, C, H, W) and labels (N,), on the CPU, in the datamodule's order."""
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())
    return torch.cat([x for x, _ in batches]).cpu(), torch.cat([y for _, y in batches]).cpu()


def explore(ckpt_path: Path, out: Path, data_dir: str | None = None, seed: int = 0, dpi: int = 120) -> list[Path]:
    """Write the latent-space figures of a checkpoint from ``fit`` as PNGs into ``out``.

    Args:
        ckpt_path: a checkpoint written by ``python -m vae_lightning fit``.
        out: folder for scatter.png, manifold.png (2-D latent space only), interpolations.png,
            samples.png and reconstructions.png; created if missing.
        data_dir: folder holding the dataset, instead of the run's ``data.data_dir``.
        seed: seed of the interpolation pairs and the prior samples.
        dpi: resolution of the PNGs.

    Returns:
        The paths written.
    """
    module, datamodule = load_run(ckpt_path, **({"data_dir": data_dir} if data_dir is not None else {}))
    images, labels = load_test_set(datamodule)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in latent_figures(module, images, labels, seed=seed).items():
        path = out / f"{name}.png"
        figure.savefig(path, dpi=dpi)
        written.append(path)
    return written


def main(args: list[str] | None = None) -> list[Path]:
    """Command line entry point: ``python -m vae_lightning.explore --help``."""
    written = auto_cli(explore, args=args, as_positional=False)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
