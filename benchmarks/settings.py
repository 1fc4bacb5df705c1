"""The default run's settings, read from ``configs/default.yaml`` (and overlays such as
``configs/conv.yaml``), so that the plain loops train exactly what the project trains: the
network, likelihood and optimizer built from the same ``class_path``/``init_args``, the
Trainer's clipping, the data split and batch size, the seed and the numerics."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from vae_lightning.data import validation_count

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The MNIST files kept beside the repository (``MNIST/raw`` in it).
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
MNIST_TRAIN_IMAGES = 60_000


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base``, key by key; an entry naming another ``class_path`` replaces the
    whole entry, as LightningCLI does (the old class's ``init_args`` do not apply to the new one)."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("class_path", old.get("class_path")) == old.get("class_path"):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def instantiate(entry: dict[str, Any], *args: Any, **extra: Any) -> Any:
    """The object a YAML ``class_path``/``init_args`` entry describes."""
    module, _, name = entry["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(*args, **{**entry.get("init_args", {}), **extra})


@dataclass(frozen=True)
class Settings:
    """What a plain loop needs of a config: the ``model`` section as written, and the rest as values."""

    model: dict[str, Any]
    seed: int
    batch_size: int
    val_size: int
    split_seed: int
    clip_val: float | None
    clip_algorithm: str
    flush_denormal: bool
    matmul_precision: str

    @property
    def mc_samples(self) -> int:
        return self.model.get("mc_samples", 1)

    def with_network(self, **init_args: Any) -> Settings:
        """The same settings with some of the network's ``init_args`` replaced (the scaling rows)."""
        network = self.model["network"]
        model = {**self.model, "network": {**network, "init_args": {**network.get("init_args", {}), **init_args}}}
        return replace(self, model=model)


def load(overlays: list[str] | tuple[str, ...] = ()) -> Settings:
    """``configs/default.yaml`` with ``overlays`` (paths relative to the repository) applied in order."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for overlay in overlays:
        config = _merge(config, yaml.safe_load((REPO_ROOT / overlay).read_text()))
    model, data, trainer = config["model"], config["data"], config["trainer"]
    if model.get("kl_weight", 1.0) != 1.0 or model.get("kl_warmup", 0) or model.get("noise_std", 0.0):
        raise ValueError("the plain loops train RL + KL on clean images: kl_weight 1, kl_warmup 0, noise_std 0")
    return Settings(
        model=model,
        seed=config.get("seed_everything", 0),
        batch_size=data["batch_size"],
        val_size=validation_count(data.get("val_size"), MNIST_TRAIN_IMAGES),  # the loops train on MNIST
        split_seed=data["split_seed"],
        clip_val=trainer.get("gradient_clip_val"),
        clip_algorithm=trainer.get("gradient_clip_algorithm") or "norm",
        flush_denormal=config.get("flush_denormal", True),
        matmul_precision=config.get("float32_matmul_precision", "highest"),
    )
