"""Comparing runs: their weights, the files they left, the callbacks they ran with."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch


def find_callback(cli: Any, kind: type) -> Any:
    """The one callback of type ``kind`` that a CLI run's trainer ran with."""
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, kind)]
    return callback


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s state dict, unaffected by later training."""
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """The same tensors under the same names, to float32 rounding (1e-6)."""
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)


def file_digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) and the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}
