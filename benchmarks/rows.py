"""The rows the benchmark measures, each a dict: ``name``, ``kind`` (the loop, ``loops.RUNNERS``)
and what it changes from the default run (``configs`` overlays, ``network`` arguments,
``batch_size``, ``cli_args`` and ``callback_settings`` of the project, numerics, threads, ...).
``base`` holds what every row shares: device, batch size, epochs, warm-up, data folder."""

from __future__ import annotations

import math
import os
from typing import Any

from settings import load

Row = dict[str, Any]

#: The names of the main rows.
FLOOR, PLAIN, REFERENCE, LIGHTNING, PROJECT = "floor", "plain loop (denormals kept)", "reference", "lightning (bare loop)", "project"


def main_rows(base: Row) -> list[Row]:
    """The fair floor (the config's numerics: denormals flushed, the same matmul precision), the
    plain loop as usually written (denormals kept), the pytorch/examples reference as it runs
    there, Lightning's bare loop on the same model, and the project; in the order they run, the
    rows whose ratios are held to targets next to each other."""
    return [
        {**base, "name": PLAIN, "kind": "floor", "flush_denormal": False},
        {**base, "name": LIGHTNING, "kind": "lightning"},
        {**base, "name": FLOOR, "kind": "floor"},
        {**base, "name": PROJECT, "kind": "project"},
        {**base, "name": REFERENCE, "kind": "reference", "flush_denormal": False, "quiet": False},
    ]


def option_rows(base: Row) -> list[Row]:
    """The speed options and the options a user may turn on, each one change to a floor or project row."""
    def project(name: str, **change: Any) -> Row:
        return {**base, "name": f"project, {name}", "kind": "project", **change}

    rows = [
        {**base, "name": "floor, float images preloaded", "kind": "floor", "data": "float"},
        project("denormals kept", cli_args=["--flush_denormal=false"]),
        project("no progress bar", cli_args=["--trainer.callbacks.refresh_rate=0"]),
        project("clipping counted every step", callback_settings={"GradientDiagnostics": {"count_every_step": True}}),
        project("latent histograms", callback_settings={"LatentDiagnostics": {"histograms": True}}),
        {**base, "name": "floor, batch 1024", "kind": "floor", "batch_size": 1024},
        project("batch 1024", batch_size=1024),
        project("bf16-mixed", cli_args=["--trainer.precision=bf16-mixed"]),
        project("fused SGD", cli_args=["--model.optimizer.init_args.fused=true"]),
        {**base, "name": "floor + torch.compile", "kind": "floor", "compile": "default"},
        project("torch.compile", compile="default"),
    ]
    if base["device"] == "cuda":
        on_device = ["--data.data_on_device=true"]
        return rows + [
            {**base, "name": "floor, CUDA graph", "kind": "floor", "cuda_graph": True},
            project("data on GPU", cli_args=on_device),
            project("data on GPU, bf16-mixed", cli_args=on_device + ["--trainer.precision=bf16-mixed"]),
            project("data on GPU, TF32", cli_args=on_device + ["--float32_matmul_precision=high"]),
            project("data on GPU, compile reduce-overhead", cli_args=on_device, compile="reduce-overhead"),
            project("data on GPU, batch 1024", batch_size=1024, cli_args=on_device),
        ]
    other_threads = 1 if (base["threads"] or os.cpu_count()) != 1 else os.cpu_count()
    return rows + [
        project(f"{other_threads} thread(s)", threads=other_threads),
        project("OMP_WAIT_POLICY=PASSIVE", env={"OMP_WAIT_POLICY": "PASSIVE"}),
        {**base, "name": "floor, matmul precision medium", "kind": "floor", "matmul_precision": "medium"},
        project("matmul precision medium", cli_args=["--float32_matmul_precision=medium"]),
    ]


#: The scaling points: (axis, batch size, changes to the default run).
SCALING_POINTS: list[tuple[str, int, Row]] = [
    *(("batch", bs, {}) for bs in (32, 128, 512, 1024, 4096)),
    *(("width", 128, {"network": {"hidden_dims": [w, w // 2]}}) for w in (256, 1024, 2048)),
    ("model", 128, {"configs": ["configs/conv.yaml"]}),
]

def scaling_rows(base: Row, images: int) -> list[Row]:
    """Epoch time against batch size, width and the model (``ConvVAE``, ``configs/conv.yaml``):
    training steps only (the floor skips its validation, the project and the bare Lightning loop
    get no validation batches), ``images`` training images per point, one warm-up pass."""
    default_hidden = load().model["network"]["init_args"]["hidden_dims"]
    rows = []
    no_validation = ["--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0"]
    for axis, bs, change in SCALING_POINTS:
        limit = max(1, math.ceil(images / bs))
        label = "ConvVAE" if change.get("configs") else f"MLP {change.get('network', {}).get('hidden_dims', default_hidden)}"
        for kind in ("floor", "lightning", "project"):
            rows.append(
                {**base, **change, "name": f"{kind}, batch {bs}, {label}", "kind": kind, "axis": axis, "point": label,
                 "batch_size": bs, "limit_batches": limit, "epochs": 2, "warmup": 1, "validate": False,
                 "cli_args": no_validation}
            )
    return rows
