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

from vae_lightning.runtime.errors import CheckpointError

_EXAMPLE = "lightning_logs/version_0/checkpoints/last.ckpt"


#: The network's input shape as a checkpoint's settings name it.
LINKED_SETTING = "network.image_shape"


def names_a_local_file(ckpt_path: Any) -> bool:
    """Whether ``ckpt_path`` is a path to read here, not ``last``/``best``/``hpc`` or a remote URL."""
    return ckpt_path is not None and ckpt_path not in ("last", "best", "hpc") and "://" not in str(ckpt_path)


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
        with path.open("rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format: a zip archive, its index at the end
        if zipped and isinstance(err, RuntimeError):
            raise CheckpointError(
                f"{path} is incomplete: a PyTorch file cut short ({path.stat().st_size:,} bytes, its index missing), "
                f"as a copy or a save that was interrupted leaves it. Copy it again, or pass another checkpoint "
                f"(e.g. the run's other .ckpt files, or {_EXAMPLE})."
            ) from err
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


def checkpoint_error(path: str | Path, err: Exception, overrides: list[str]) -> Exception:
    """What went wrong when Lightning's ``load_from_checkpoint`` failed on ``path``: a
    ``CheckpointError`` naming the file's problem (missing, not a checkpoint, weights of another
    shape), or ``err`` itself when the file is not the cause. The file is read again only here,
    on the way to an error."""
    local = names_a_local_file(path)
    if local:
        try:
            saved = read_checkpoint(path).get("hyper_parameters") or {}
        except CheckpointError as problem:
            return problem
    if not isinstance(err, RuntimeError):
        return err
    details = " ".join(line.strip() for line in str(err).splitlines()[1:4])
    # objects built in Python are left out of a checkpoint's settings (a prior may hold weights too)
    missing = [name for name in ("network", "prior") if name not in saved]
    again = f"pass {'it' if len(missing) == 1 else 'them'} again, load_from_checkpoint(path, {', '.join(f'{name}=...' for name in missing)})"
    fix = (
        "Load it without overriding its architecture."
        if not local or "network" in saved
        else "Its module was built in Python, not by the CLI, so the checkpoint does not describe "
        f"the {' or the '.join(missing)}: {again}."
    )
    return CheckpointError(
        f"checkpoint {path} does not fit the model built from its settings with the overrides {overrides}: {details} {fix}"
    )


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


class CheckpointGate:
    """``--ckpt_path`` checked before Lightning touches it, the file read once: when the arguments
    are parsed (the settings it holds replace the configured ones, :meth:`differing_settings` says
    which differ), then against the model built from them (:meth:`resolve`).

    Args:
        ckpt_path: the command line's ``--ckpt_path``: a local file (read here; ``CheckpointError``
            when it cannot be), ``last`` (the newest ``last.ckpt`` of the experiment), another of
            Lightning's names or a remote URL (left to Lightning), or ``None``.
    """

    def __init__(self, ckpt_path: str | Path | None) -> None:
        self.path = ckpt_path
        self.contents = read_checkpoint(ckpt_path) if names_a_local_file(ckpt_path) else None

    def differing_settings(self, configured: Mapping[str, Any] | Namespace) -> list[str]:
        """The model settings the checkpoint holds that differ from ``configured``, the network's
        input shape aside (set from the data when the classes are built, so not yet configured)."""
        if self.contents is None:
            return []
        saved = self.contents.get("hyper_parameters") or {}
        return [s for s in differing_settings(saved, configured) if not s.startswith(f"{LINKED_SETTING}=")]

    def resolve(self, model: nn.Module, log_root: str | Path | None) -> str | Path | None:
        """The checkpoint to start from: ``last`` as the newest ``last.ckpt`` under ``log_root``
        (``<logger save_dir>/<name>``; left as ``last`` when there is none), a local file once its
        weights are checked against ``model`` (``CheckpointError`` when they do not fit)."""
        if self.path == "last":
            found = newest_last_checkpoint(log_root) if log_root else None
            return str(found) if found is not None else self.path
        if self.contents is not None and (mismatch := architecture_mismatch(self.contents, model)):
            raise CheckpointError(
                f"checkpoint {self.path} is for a different architecture than the configured model ({mismatch}). "
                f"Run with the configuration it was trained with: --config <its run folder>/config.yaml."
            )
        return self.path


def newest_last_checkpoint(log_root: str | Path) -> Path | None:
    """The most recently written ``version_*/checkpoints/last.ckpt`` under ``log_root``
    (``<logger save_dir>/<logger name>``), or ``None``."""
    candidates = list(Path(log_root).glob("version_*/checkpoints/last.ckpt"))
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None
