"""Seconds per MNIST epoch: the floor, the common reference and this project, in one run.

Rows (same model, batch size, data split, loss, SGD and clipping by value 1.0 in all):

* ``floor``: a plain eager PyTorch loop over batches cut from a preloaded tensor, with no
  logging and no framework: the cost of the model's own compute.
* ``reference``: the loop of pytorch/examples ``vae/main.py``: ``torchvision.datasets.MNIST``
  with ``ToTensor``, a ``DataLoader`` (one worker and pinned memory on GPU, as there), a
  ``loss.item()`` per step, a print every 10 batches, and per epoch, as there, a PNG of 8
  validation images beside their reconstructions and one of 64 samples (the project writes
  its sample and reconstruction grids to TensorBoard).
* ``project``: ``Trainer.fit`` with ``VAEModule`` and ``MNISTDataModule`` built from
  ``configs/default.yaml`` through the project's CLI (``main(args, run=False)``), so progress
  bar, TensorBoard logging, image callbacks and checkpoints are those users run, and so are
  its numeric settings: denormals flushed (``flush_denormal: true``), which the plain floor
  and reference loops do not do; ``--options`` adds the floor with them flushed too.

One epoch is a pass over the 55,000 training images plus an evaluation of the 5,000
validation images (the seeded split of ``vae_lightning.data.train_val_split``). Each row runs
in its own fresh Python process, started one after the other by this script, so its peak
memory is its own: ``peak_rss_mb`` is the process's peak resident set (VmHWM, imports
included) and ``peak_rss_above_imports_mb`` the peak above the resident set reached after
the imports (the peak is reset there via ``/proc/self/clear_refs``). On GPU the memory is
``torch.cuda.max_memory_allocated``. Seconds per epoch are the median over the epochs after
``--warmup``; images/s counts training images.

    python benchmarks/epoch_time.py                      # CPU or GPU, whichever is present
    python benchmarks/epoch_time.py --device cuda --options --scaling
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_HIDDEN = [512, 256]
VAL_SIZE, SPLIT_SEED, CLIP_VALUE, LR, MOMENTUM = 5000, 42, 1.0, 3e-3, 0.9  # as in configs/default.yaml
TARGETS = {  # the CPU targets at batch size 128 (issue "Performance")
    "project_over_floor_time": ("<=", 1.15),
    "reference_over_project_time": (">=", 2.0),
    "project_over_floor_memory": ("<=", 1.25),
}
NO_GPU = (
    "No CUDA GPU is available here (torch.cuda.is_available() is False). Run with --device cpu, "
    "or on a GPU machine: python benchmarks/epoch_time.py --device cuda --options --scaling"
)


# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Make the kernel's peak-RSS counter (VmHWM) restart from the current RSS (Linux only)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Memory:
    """Peak memory of the running row: host RSS on CPU, allocated tensor memory on GPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.device = device
        self.rss_after_imports_kb = _status_kb("VmRSS")
        self.process_peak_before_kb = _status_kb("VmHWM")
        self.reset_ok = reset_peak_rss()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def report(self) -> dict[str, float | None]:
        import torch

        peak_kb = _status_kb("VmHWM")
        out: dict[str, float | None] = {"peak_rss_mb": None, "peak_rss_above_imports_mb": None}
        if peak_kb is not None:
            whole = max(peak_kb, self.process_peak_before_kb or 0)
            out["peak_rss_mb"] = round(whole / 1024, 1)
            if self.reset_ok and self.rss_after_imports_kb is not None:
                out["peak_rss_above_imports_mb"] = round((peak_kb - self.rss_after_imports_kb) / 1024, 1)
        if self.device == "cuda":
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out


# --------------------------------------------------------------------------- shared pieces


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _apply_backends(spec: dict[str, Any]) -> None:
    import torch

    if spec.get("matmul_precision"):
        torch.set_float32_matmul_precision(spec["matmul_precision"])  # TF32 on GPU with "high"
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("flush_denormal"):  # before any parallel work, so every CPU thread inherits it
        torch.set_flush_denormal(True)


def _split(data_dir: str):
    """MNIST training images as uint8 (60000, 784) with labels, and the project's split indices."""
    from torchvision import datasets

    from vae_lightning.data import train_val_split

    ds = datasets.MNIST(data_dir, train=True, download=False)
    train_idx, val_idx = train_val_split(len(ds.data), VAL_SIZE, SPLIT_SEED)
    return ds, train_idx, val_idx


def _build_vae(spec: dict[str, Any], device: str):
    import torch

    from vae_lightning.model import VAE

    torch.manual_seed(0)
    model = VAE(hidden_dims=spec.get("hidden_dims", DEFAULT_HIDDEN)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    return model, optimizer


def loss_terms(model, x):
    """``{"loss", "rl", "kl"}`` of one batch, as ``VAEModule`` computes them."""
    import torch

    from vae_lightning.losses import elbo_terms

    logits, mu, logvar = model(x)
    return elbo_terms(x, torch.sigmoid(logits), mu, logvar)


def train_step(model, optimizer, x):
    """One eager SGD step with gradients clipped by value: the model's own compute."""
    import torch

    loss = loss_terms(model, x)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
    optimizer.step()
    return loss.detach()


def _limited(batches, limit: int | None):
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            return
        yield batch


def _epochs_summary(
    times: list[float], cpu: list[float], warmup: int, train_images: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Median wall seconds per epoch after the warm-up, and the process CPU seconds of the same
    epochs (all threads): on a busy machine the CPU seconds move far less than the wall time."""
    seconds = statistics.median(times[warmup:] or times[-1:])
    return {
        "epoch_seconds": [round(t, 4) for t in times],
        "seconds_per_epoch": round(seconds, 4),
        "cpu_seconds_per_epoch": round(statistics.median(cpu[warmup:] or cpu[-1:]), 4),
        "train_images_per_epoch": train_images,
        "images_per_s": round(train_images / seconds, 1),
        **extra,
    }


# --------------------------------------------------------------------------- the rows


def run_floor(spec: dict[str, Any], memory: Memory) -> dict[str, Any]:
    """Plain eager loop over a preloaded float tensor; optional torch.compile or a CUDA graph."""
    import torch

    from vae_lightning.data import to_pixels

    device, bs, limit = spec["device"], spec["batch_size"], spec.get("limit_batches")
    ds, train_idx, val_idx = _split(spec["data_dir"])
    flat = ds.data.reshape(len(ds.data), -1)
    train_x = to_pixels(flat[train_idx].to(device))  # as MNISTDataModule: cut uint8, then one float copy
    val_x = to_pixels(flat[val_idx].to(device))
    del ds, flat
    model, optimizer = _build_vae(spec, device)
    step = train_step
    if spec.get("compile"):
        model = torch.compile(model, mode=None if spec["compile"] == "default" else spec["compile"])
    if spec.get("cuda_graph"):
        step = _cuda_graph_step(model, optimizer, train_x[:bs])
    generator = torch.Generator().manual_seed(0)
    times, cpu, val_loss = [], [], float("nan")
    for _ in range(spec["epochs"]):
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        batches = order.split(bs)
        if spec.get("cuda_graph") and len(batches[-1]) != bs:
            batches = batches[:-1]  # a graph has fixed shapes: drop the partial last batch
        for idx in _limited(batches, limit):
            step(model, optimizer, train_x[idx])
        model.eval()
        if spec.get("validate", True):
            with torch.no_grad():
                total = sum(loss_terms(model, xb)["loss"] * len(xb) for xb in _limited(val_x.split(bs), limit))
            val_loss = float(total) / min(len(val_x), (limit or math.inf) * bs)
        _sync(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    n_train = min(len(batches), limit or math.inf) * bs if spec.get("cuda_graph") else min(len(train_x), (limit or math.inf) * bs)
    return _epochs_summary(times, cpu, spec["warmup"], int(n_train), {"val_loss": round(val_loss, 3)})


def _cuda_graph_step(model, optimizer, example):
    """The whole training step (forward, backward, clipping, SGD) captured once as a CUDA graph;
    each call copies the batch into the static input and replays the graph (PyTorch docs,
    "CUDA Graphs", whole-network capture)."""
    import torch

    static_x = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream (allocates momentum buffers, grads)
            train_step(model, optimizer, static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss = loss_terms(model, static_x)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
        optimizer.step()

    def replay(model, optimizer, x):
        static_x.copy_(x)
        graph.replay()
        return loss

    return replay


def run_reference(spec: dict[str, Any], memory: Memory) -> dict[str, Any]:
    """pytorch/examples ``vae/main.py``: torchvision MNIST + ToTensor + DataLoader, eager loop."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms
    from torchvision.utils import save_image

    device, bs, limit = spec["device"], spec["batch_size"], spec.get("limit_batches")
    _, train_idx, val_idx = _split(spec["data_dir"])
    full = datasets.MNIST(spec["data_dir"], train=True, download=False, transform=transforms.ToTensor())
    kwargs = {"num_workers": 1, "pin_memory": True} if device == "cuda" else {}
    torch.manual_seed(0)
    train_loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=bs, shuffle=True, **kwargs)
    val_loader = DataLoader(Subset(full, val_idx.tolist()), batch_size=bs, shuffle=False, **kwargs)
    model, optimizer = _build_vae(spec, device)
    log = open(os.devnull, "w") if spec.get("quiet") else sys.stdout
    images = tempfile.TemporaryDirectory()
    times, cpu, val_loss = [], [], float("nan")
    for epoch in range(spec["epochs"]):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        train_loss = 0.0
        for batch_idx, (data, _) in enumerate(_limited(train_loader, limit)):
            data = data.to(device).view(-1, 784)
            optimizer.zero_grad()
            loss = loss_terms(model, data)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), CLIP_VALUE)
            train_loss += loss.item()
            optimizer.step()
            if batch_idx % 10 == 0:
                print(f"Train Epoch: {epoch} [{batch_idx * len(data)}]\tLoss: {loss.item():.6f}", file=log)
        model.eval()
        total, seen = 0.0, 0
        with torch.no_grad():
            for i, (data, _) in enumerate(_limited(val_loader, limit)):
                data = data.to(device).view(-1, 784)
                total += loss_terms(model, data)["loss"].item() * len(data)
                seen += len(data)
                if i == 0:
                    recon = torch.sigmoid(model(data)[0][0])
                    comparison = torch.cat([data[:8], recon[:8]]).view(-1, 1, 28, 28)
                    save_image(comparison.cpu(), f"{images.name}/reconstruction_{epoch}.png", nrow=8)
            sample = model.sample(64).cpu()
            save_image(sample.view(64, 1, 28, 28), f"{images.name}/sample_{epoch}.png")
        val_loss = total / seen
        _sync(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    images.cleanup()
    n_train = min(len(train_idx), (limit or math.inf) * bs)
    return _epochs_summary(times, cpu, spec["warmup"], int(n_train), {"val_loss": round(val_loss, 3)})


def project_args(spec: dict[str, Any], save_dir: str) -> list[str]:
    """CLI arguments on top of ``configs/default.yaml`` for one project row."""
    limit = spec.get("limit_batches")
    args = [
        "--config",
        str(DEFAULT_CONFIG),
        f"--data.data_dir={spec['data_dir']}",
        "--data.download=false",
        f"--data.batch_size={spec['batch_size']}",
        f"--model.hidden_dims={json.dumps(spec.get('hidden_dims', DEFAULT_HIDDEN))}",
        f"--trainer.max_epochs={spec['epochs']}",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.accelerator={'gpu' if spec['device'] == 'cuda' else 'cpu'}",
        "--trainer.devices=1",
    ]
    if limit is not None:
        args += [f"--trainer.limit_train_batches={limit}", f"--trainer.limit_val_batches={limit}"]
    return args + list(spec.get("cli_args", []))


def run_project(spec: dict[str, Any], memory: Memory) -> dict[str, Any]:
    """``Trainer.fit`` as users run it: the default config through ``vae_lightning.cli.main``."""
    import torch
    from lightning.pytorch import Callback

    from vae_lightning.cli import main

    device = spec["device"]

    class EpochClock(Callback):
        """Wall time from each training epoch's start to the next one's (the last: to fit's end)."""

        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            _sync(device)
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, trainer, pl_module) -> None:
            _sync(device)
            self.marks.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as save_dir:
        cli = main(project_args(spec, save_dir), run=False)
        clock = EpochClock()
        cli.trainer.callbacks.append(clock)
        if spec.get("compile"):
            mode = None if spec["compile"] == "default" else spec["compile"]
            cli.model.model = torch.compile(cli.model.model, mode=mode)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        times = [b[0] - a[0] for a, b in zip(clock.marks[:-1], clock.marks[1:])]
        cpu = [b[1] - a[1] for a, b in zip(clock.marks[:-1], clock.marks[1:])]
        n_train = cli.trainer.num_training_batches
        n_train = min(len(cli.datamodule.splits["train"][0]), n_train * spec["batch_size"])
        val_loss = float(cli.trainer.callback_metrics.get("val/loss", float("nan")))
    return _epochs_summary(times, cpu, spec["warmup"], int(n_train), {"val_loss": round(val_loss, 3)})


RUNNERS = {"floor": run_floor, "reference": run_reference, "project": run_project}


def run_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one row in this process (called in a fresh child process by ``measure``)."""
    import torch  # noqa: F401  (imports first, so the memory baseline includes them)
    import torchvision  # noqa: F401

    import vae_lightning.cli  # noqa: F401

    _apply_backends(spec)
    memory = Memory(spec["device"])
    result = RUNNERS[spec["kind"]](spec, memory)
    from vae_lightning.numerics import denormal_flush_share

    return {**result, **memory.report(), "denormal_flush_share": denormal_flush_share()}


# --------------------------------------------------------------------------- the parent


def measure(spec: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run ``spec`` in a fresh Python process; its stdout/stderr (progress bar, prints) go to a log."""
    name = spec["name"]
    log_name = _slug(name) + spec.get("log_suffix", "")
    print(f"  {name:<36}", end="", flush=True)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result, open(log_dir / f"{log_name}.log", "w") as log:
        proc = subprocess.run(
            [sys.executable, __file__, "--run-row", json.dumps(spec), "--result-file", result.name],
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,
            env={**os.environ, **spec.get("env", {})},
        )
        text = Path(result.name).read_text()
    if proc.returncode != 0 or not text:
        print(f"failed (exit {proc.returncode}); see {log_dir / (log_name + '.log')}")
        return {**_public(spec), "error": f"exit {proc.returncode}"}
    row = {**_public(spec), **json.loads(text)}
    mem = row.get("peak_cuda_mb") if spec["device"] == "cuda" else row.get("peak_rss_mb")
    print(f"{row['seconds_per_epoch']:8.3f} s/epoch {row['images_per_s']:10.0f} img/s  {mem} MB")
    return row


def measure_in_process(spec: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run ``spec`` in this process: quick, but every row's peak memory includes the earlier rows'."""
    print(f"  {spec['name']:<36}", flush=True)
    return {**_public(spec), **run_row(spec)}


def measure_interleaved(specs: list[dict[str, Any]], repeats: int, run, log_dir: Path) -> list[dict[str, Any]]:
    """Run ``specs`` round-robin ``repeats`` times (floor, reference, project, floor, ...), each run
    in a fresh process, and combine each row's runs: on a shared machine whose speed drifts over
    minutes, rows measured side by side, several times, give ratios that one pass cannot."""
    runs: dict[str, list[dict[str, Any]]] = {spec["name"]: [] for spec in specs}
    for i in range(repeats):
        for spec in specs:
            runs[spec["name"]].append(run({**spec, "log_suffix": f"_{i + 1}" if repeats > 1 else ""}, log_dir))
    return [combine_runs(row_runs) for row_runs in runs.values()]


def combine_runs(row_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of it: the median of their per-run medians, the highest peak memory."""
    failed = [r for r in row_runs if "error" in r]
    if failed or len(row_runs) == 1:
        return failed[0] if failed else row_runs[0]
    row = dict(row_runs[0])
    for key in ("seconds_per_epoch", "cpu_seconds_per_epoch", "val_loss"):
        row[f"runs_{key}"] = [r[key] for r in row_runs]
        row[key] = round(statistics.median(row[f"runs_{key}"]), 4)
    row["images_per_s"] = round(row["train_images_per_epoch"] / row["seconds_per_epoch"], 1)
    for key in ("peak_rss_mb", "peak_rss_above_imports_mb", "peak_cuda_mb"):
        values = [r[key] for r in row_runs if r.get(key) is not None]
        if values:
            row[key] = max(values)
    row["epoch_seconds"] = [r["epoch_seconds"] for r in row_runs]
    return row


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _public(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("data_dir", "quiet", "log_suffix")}


def main_rows(base: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**base, "name": "floor", "kind": "floor"},
        {**base, "name": "reference", "kind": "reference", "quiet": False},
        {**base, "name": "project", "kind": "project"},
    ]


def option_rows(base: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed options, each one change to the floor or the project row."""
    rows = [
        {**base, "name": "floor, denormals flushed", "kind": "floor", "flush_denormal": True},
        {**base, "name": "project, denormals kept", "kind": "project", "cli_args": ["--flush_denormal=false"]},
        {**base, "name": "project, no progress bar", "kind": "project", "cli_args": ["--trainer.enable_progress_bar=false"]},
        {**base, "name": "floor, batch 1024", "kind": "floor", "batch_size": 1024},
        {**base, "name": "project, batch 1024", "kind": "project", "batch_size": 1024},
        {**base, "name": "project, bf16-mixed", "kind": "project", "cli_args": ["--trainer.precision=bf16-mixed"]},
        {**base, "name": "project, fused SGD", "kind": "project", "cli_args": ["--model.optimizer.init_args.fused=true"]},
        {**base, "name": "floor + torch.compile", "kind": "floor", "compile": "default"},
        {**base, "name": "project + torch.compile", "kind": "project", "compile": "default"},
    ]
    if base["device"] == "cuda":
        on_device = ["--data.data_on_device=true"]
        rows += [
            {**base, "name": "floor, CUDA graph", "kind": "floor", "cuda_graph": True},
            {**base, "name": "project, data on GPU", "kind": "project", "cli_args": on_device},
            {**base, "name": "project, data on GPU, bf16-mixed", "kind": "project",
             "cli_args": on_device + ["--trainer.precision=bf16-mixed"]},
            {**base, "name": "project, data on GPU, TF32", "kind": "project",
             "cli_args": on_device + ["--float32_matmul_precision=high"]},
            {**base, "name": "project, data on GPU, compile reduce-overhead", "kind": "project",
             "cli_args": on_device, "compile": "reduce-overhead"},
            {**base, "name": "project, data on GPU, batch 1024", "kind": "project", "batch_size": 1024,
             "cli_args": on_device},
        ]
    else:
        other_threads = 1 if (base["threads"] or os.cpu_count()) != 1 else os.cpu_count()
        rows += [
            {**base, "name": f"project, {other_threads} thread(s)", "kind": "project", "threads": other_threads},
            {**base, "name": "project, OMP_WAIT_POLICY=PASSIVE", "kind": "project",
             "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
            {**base, "name": "floor, matmul precision medium", "kind": "floor", "matmul_precision": "medium"},
            {**base, "name": "project, matmul precision medium", "kind": "project",
             "cli_args": ["--float32_matmul_precision=medium"]},
        ]
    return rows


def scaling_rows(base: dict[str, Any], images: int) -> list[dict[str, Any]]:
    """Epoch time against batch size and hidden width, from ``images`` training images per point."""
    rows = []  # training steps only: the floor skips its validation, the project gets limit_val_batches=0
    points = [("batch", bs, DEFAULT_HIDDEN) for bs in (32, 128, 512, 1024, 4096)]
    points += [("width", 128, [w, w // 2]) for w in (256, 512, 1024, 2048)]
    for axis, bs, hidden in points:
        limit = max(1, math.ceil(images / bs))
        for kind in ("floor", "project"):
            rows.append(
                {**base, "name": f"{kind}, batch {bs}, hidden {hidden}", "kind": kind, "axis": axis,
                 "batch_size": bs, "hidden_dims": hidden, "limit_batches": limit, "epochs": 2, "warmup": 1, "validate": False,
                 "cli_args": ["--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0"]}
            )
    return rows


def ratios(rows: list[dict[str, Any]], device: str) -> dict[str, Any]:
    by = {r["name"]: r for r in rows if "error" not in r}
    if not {"floor", "reference", "project"} <= by.keys():
        return {}
    mem_key = "peak_cuda_mb" if device == "cuda" else "peak_rss_mb"
    out = {
        "project_over_floor_time": by["project"]["seconds_per_epoch"] / by["floor"]["seconds_per_epoch"],
        "reference_over_project_time": by["reference"]["seconds_per_epoch"] / by["project"]["seconds_per_epoch"],
        "project_over_floor_memory": by["project"][mem_key] / by["floor"][mem_key],
    }
    if device == "cpu":  # the same ratios from process CPU seconds, which a busy machine disturbs less
        out["project_over_floor_cpu_time"] = by["project"]["cpu_seconds_per_epoch"] / by["floor"]["cpu_seconds_per_epoch"]
        out["reference_over_project_cpu_time"] = (
            by["reference"]["cpu_seconds_per_epoch"] / by["project"]["cpu_seconds_per_epoch"]
        )
        above = [by[k].get("peak_rss_above_imports_mb") for k in ("project", "floor")]
        if all(above):
            out["project_over_floor_memory_above_imports"] = above[0] / above[1]
    return {k: round(v, 3) for k, v in out.items()}


def per_run_ratios(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The time ratios of each interleaved run of the three rows (``--repeats``): their spread is
    the uncertainty of the combined ratios."""
    by = {r["name"]: r for r in rows if "error" not in r}
    if not {"floor", "reference", "project"} <= by.keys() or "runs_seconds_per_epoch" not in by["project"]:
        return []
    runs = zip(*(by[name]["runs_seconds_per_epoch"] for name in ("floor", "reference", "project")))
    return [
        {"floor": f, "reference": r, "project": p,
         "project_over_floor_time": round(p / f, 3), "reference_over_project_time": round(r / p, 3)}
        for f, r, p in runs
    ]


def targets(r: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, (op, bound) in TARGETS.items():
        if key in r:
            ok = r[key] <= bound if op == "<=" else r[key] >= bound
            out[key] = {"value": r[key], "target": f"{op} {bound}", "met": ok}
    return out


def markdown(report: dict[str, Any]) -> str:
    device = report["device"]
    mem_head = "peak GPU MB (max_memory_allocated)" if device == "cuda" else "peak RSS MB (process)"
    if not report["rows"]:
        return _scaling_markdown(report)
    lines = [
        f"Device: {report['device_name']}; batch size {report['batch_size']}; "
        f"{report['threads']} torch threads; {report['epochs']} epochs, median of the last "
        f"{report['epochs'] - report['warmup']}; load average {report['load_average_start_end']} (start, end).",
        "",
        f"| row | s/epoch | CPU s/epoch | images/s | {mem_head} | RSS above imports MB | val loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | | | |")
            continue
        mem = r.get("peak_cuda_mb") if device == "cuda" else r.get("peak_rss_mb")
        lines.append(
            f"| {r['name']} | {r['seconds_per_epoch']:.3f} | {r['cpu_seconds_per_epoch']:.3f} | {r['images_per_s']:.0f} | {mem} | "
            f"{r.get('peak_rss_above_imports_mb')} | {r['val_loss']} |"
        )
    if report["ratios"]:
        lines += ["", "| ratio | value | target | met |", "|---|---:|---|---|"]
        for key, value in report["ratios"].items():
            t = report["targets"].get(key)
            lines.append(f"| {key} | {value:.3f} | {t['target'] if t else ''} | {t['met'] if t else ''} |")
    if report.get("runs"):
        lines += [
            "",
            f"Each of the three rows above is the median of {len(report['runs'])} runs, interleaved "
            "(floor, reference, project, floor, ...); the runs one by one:",
            "",
            "| run | floor s/epoch | reference s/epoch | project s/epoch | project/floor | reference/project |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for i, run in enumerate(report["runs"], start=1):
            lines.append(
                f"| {i} | {run['floor']:.3f} | {run['reference']:.3f} | {run['project']:.3f} | "
                f"{run['project_over_floor_time']:.3f} | {run['reference_over_project_time']:.3f} |"
            )
    if report.get("scaling"):
        lines += ["", _scaling_markdown(report)]
    return "\n".join(lines) + "\n"


def _scaling_markdown(report: dict[str, Any]) -> str:
    scale = report["scaling"]
    images = scale[0]["limit_batches"] * scale[0]["batch_size"] if scale else 0
    lines = [
        f"Scaling on {report['device_name']}, {report['threads']} torch threads, load average "
        f"{report['load_average_start_end']} (start, end): training steps only, no validation; each "
        f"point one warm-up and one measured pass over ~{images} images; s/epoch = 55,000 / images per second.",
        "",
        "| batch | hidden | floor s/epoch | project s/epoch | project/floor | project/floor, CPU s | project images/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for f, p in zip(scale[::2], scale[1::2]):
        if "error" in f or "error" in p:
            continue
        fe, pe = 55_000 / f["images_per_s"], 55_000 / p["images_per_s"]
        cpu = p["cpu_seconds_per_epoch"] / f["cpu_seconds_per_epoch"]
        lines.append(
            f"| {p['batch_size']} | {p['hidden_dims']} | {fe:.2f} | {pe:.2f} | {pe / fe:.2f} | {cpu:.2f} | "
            f"{p['images_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="cuda needs a GPU; auto picks cuda when one is present, else cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=4, help="epochs per row, warm-up included")
    p.add_argument("--warmup", type=int, default=1, help="first epochs left out of the median")
    p.add_argument("--limit-batches", type=int, default=None, help="cut each epoch to this many batches (smoke runs)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for every row (default: torch's, one per core); 1 is faster on a busy machine")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="folder holding MNIST/raw")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"), help="folder for the JSON and Markdown")
    p.add_argument("--options", action="store_true", help="also measure the speed options (compile, bf16, ...)")
    p.add_argument("--scaling", action="store_true", help="also measure epoch time against batch size and width")
    p.add_argument("--no-main", action="store_true", help="skip the floor, reference and project rows")
    p.add_argument("--scaling-images", type=int, default=8192, help="training images timed per scaling point")
    p.add_argument("--repeats", type=int, default=1,
                   help="run the floor, reference and project rows this many times, interleaved; each row is "
                   "the median of its runs (steadier ratios on a shared machine)")
    p.add_argument("--in-process", action="store_true",
                   help="run the rows in this process (quick smoke runs; peak memory is then not per row)")
    p.add_argument("--run-row", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup >= args.epochs:
        p.error(f"--epochs ({args.epochs}) must exceed --warmup ({args.warmup}) to leave epochs to measure")
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.run_row:
        Path(args.result_file).write_text(json.dumps(run_row(json.loads(args.run_row))))
        return None
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(NO_GPU)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    if device == "cpu":
        print("No GPU here: measuring on CPU. The GPU rows (CUDA graph, data on GPU, TF32) need --device cuda.")
    if not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
        sys.exit(f"MNIST not found in {args.data_dir}/MNIST/raw: pass --data-dir pointing at the folder holding MNIST/raw")
    out = Path(args.out)
    log_dir = out / f"logs_{device}"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = {"device": device, "batch_size": args.batch_size, "epochs": args.epochs, "warmup": args.warmup,
            "limit_batches": args.limit_batches, "data_dir": str(Path(args.data_dir).resolve()), "quiet": True,
            "threads": args.threads}
    device_name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
    load_start = round(os.getloadavg()[0], 2)
    print(f"{device_name}; load average {load_start}; logs in {log_dir}")
    run = measure_in_process if args.in_process else measure
    rows = [] if args.no_main else measure_interleaved(main_rows(base), args.repeats, run, log_dir)
    if args.options:
        rows += [run(spec, log_dir) for spec in option_rows(base)]
    scaling = [run(spec, log_dir) for spec in scaling_rows(base, args.scaling_images)] if args.scaling else []
    r = ratios(rows, device)
    report = {
        "device": device, "device_name": device_name, "cpu_count": os.cpu_count(),
        "load_average_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "torch": torch.__version__, "python": platform.python_version(),
        "command": "python benchmarks/epoch_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "batch_size": args.batch_size, "epochs": args.epochs, "warmup": args.warmup, "repeats": args.repeats,
        "threads": args.threads or torch.get_num_threads(), "limit_batches": args.limit_batches, "rows": rows, "ratios": r, "targets": targets(r) if device == "cpu" else {},
        "runs": per_run_ratios(rows), "scaling": scaling,
    }
    stem = f"epoch_time_{device}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (out / f"{stem}.md").write_text(table)
    print()
    print(table)
    return report


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or 'CPU'} ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
