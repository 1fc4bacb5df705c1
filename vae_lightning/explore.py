"""Write the latent-space pictures of a trained VAE as PNG files.

    python -m vae_lightning.explore --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --out pictures

The data settings (dataset, data_dir, ...) come from the run's ``config.yaml`` beside the
checkpoint (``version_N/config.yaml`` for ``version_N/checkpoints/*.ckpt``) where there is one;
``--data_dir`` overrides the folder. The figures are those of ``vae_lightning.figures``, drawn on
the test set.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import auto_cli

from vae_lightning.data import ImageDataModule
from vae_lightning.errors import run_reporting_user_errors
from vae_lightning.figures import latent_figures
from vae_lightning.module import VAEModule


def run_config(ckpt_path: Path) -> Path | None:
    """The ``config.yaml`` that ``fit`` saved for the run of ``ckpt_path``, or ``None``."""
    for folder in (ckpt_path.parent.parent, ckpt_path.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def datamodule_from_run(ckpt_path: Path, data_dir: str | None = None) -> ImageDataModule:
    """The datamodule with the run's ``data`` settings (defaults without a config), ``data_dir`` overriding."""
    settings: dict[str, Any] = {}
    config = run_config(ckpt_path)
    if config is not None:
        data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
        settings = dict(data.get("init_args", data))
    if data_dir is not None:
        settings["data_dir"] = data_dir
    return ImageDataModule(**settings)


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
    ckpt_path, out = Path(ckpt_path), Path(out)
    module = VAEModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    images, labels = load_test_set(datamodule_from_run(ckpt_path, data_dir))
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
