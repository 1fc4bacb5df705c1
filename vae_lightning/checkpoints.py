"""Checkpoint checks before use: the path exists, the file is a Lightning checkpoint that loads
with ``weights_only=True`` (no pickled code is run), and its weights fit the configured model.

Without them a wrong ``--ckpt_path`` fails deep inside the Trainer, after the run folder has
been created, with messages such as "Weights only load failed ... re-running with
weights_only=False will likely succeed" (advice that would run code from the file).
Also resolves ``--ckpt_path last`` across the runs of an experiment: each ``fit`` writes a new
``version_N`` folder, where Lightning alone would look for ``last.ckpt`` and find none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from torch import nn

from vae_lightning.errors import CheckpointError

_EXAMPLE = "lightning_logs/version_0/checkpoints/last.ckpt"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load ``path`` on the CPU with ``weights_only=True``; ``CheckpointError`` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(
            f"checkpoint {path} {where}. Pass the path of a .ckpt file written by training "
            f"(e.g. --ckpt_path {_EXAMPLE}), or --ckpt_path last for the newest last.ckpt of the experiment."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # bytes that are no checkpoint fail in many ways (UnpicklingError, KeyError, ...)
        raise CheckpointError(
            f"{path} is not a checkpoint that can be loaded safely ({type(err).__name__}): it is not a "
            f"PyTorch file, or it holds objects other than tensors and plain values, which could run code "
            f"when loaded. Pass a .ckpt file written by this project's training, e.g. {_EXAMPLE}."
        ) from err
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a Lightning checkpoint (it has no 'state_dict'). "
            f"Pass a .ckpt file written by training, e.g. {_EXAMPLE}."
        )
    return dict(checkpoint)


def architecture_mismatch(checkpoint: Mapping[str, Any], model: nn.Module) -> str | None:
    """What differs between the checkpoint's weights and ``model``'s, or ``None`` if they fit."""
    saved = checkpoint["state_dict"]
    expected = model.state_dict()
    problems = [
        f"{name}: {tuple(saved[name].shape)} in the checkpoint, {tuple(t.shape)} here"
        for name, t in expected.items()
        if name in saved and tuple(saved[name].shape) != tuple(t.shape)
    ]
    missing = [name for name in expected if name not in saved]
    unexpected = [name for name in saved if name not in expected]
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing[:4])}")
    if unexpected:
        problems.append(f"not in this model: {', '.join(unexpected[:4])}")
    if not problems:
        return None
    differing = differing_settings(checkpoint.get("hyper_parameters") or {}, getattr(model, "hparams", {}))
    if differing:
        problems.insert(0, "settings differ: " + ", ".join(differing))
    return "; ".join(problems[:6])


def _flat_settings(settings: Mapping[str, Any] | Namespace, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys, lists for tuples, the ``init_args`` level left out:
    ``{"network": {"class_path": ..., "init_args": {"latent_dim": 2}}}`` ->
    ``{"network": <class path>, "network.latent_dim": 2}``."""
    if isinstance(settings, Namespace):  # the CLI's parsed configuration (nested), not a Mapping
        settings = settings.as_dict()
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if "class_path" in value:
                flat[name] = value["class_path"]
            flat.update(_flat_settings(value.get("init_args", value), f"{name}."))
        elif key not in ("class_path", "_class_path", "_instantiator"):
            flat[name] = list(value) if isinstance(value, (list, tuple)) else value
    return flat


def differing_settings(saved: Mapping[str, Any], configured: Mapping[str, Any] | Namespace) -> list[str]:
    """``key=<saved> (configured: <value>)`` for each model setting present in both that differs
    (the optimizer aside: it does not shape the weights)."""
    saved_flat, configured_flat = _flat_settings(saved), _flat_settings(configured)
    return [
        f"{key}={value!r} (configured: {configured_flat[key]!r})"
        for key, value in saved_flat.items()
        if key in configured_flat and not key.startswith("optimizer") and value != configured_flat[key]
    ]


def check_checkpoint(path: str | Path, model: nn.Module, checkpoint: Mapping[str, Any] | None = None) -> None:
    """Raise ``CheckpointError`` unless ``path`` is a readable checkpoint whose weights fit ``model``;
    ``checkpoint`` is its contents when already read (``read_checkpoint``)."""
    mismatch = architecture_mismatch(checkpoint if checkpoint is not None else read_checkpoint(path), model)
    if mismatch:
        raise CheckpointError(
            f"checkpoint {path} is for a different architecture than the configured model ({mismatch}). "
            f"Run with the configuration it was trained with: --config <its run folder>/config.yaml."
        )


def newest_last_checkpoint(log_root: str | Path) -> Path | None:
    """The most recently written ``version_*/checkpoints/last.ckpt`` under ``log_root``
    (``<logger save_dir>/<logger name>``), or ``None``."""
    candidates = list(Path(log_root).glob("version_*/checkpoints/last.ckpt"))
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None
