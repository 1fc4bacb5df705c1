"""The report's MLP VAE against the convolutional VAE on MNIST, same CPU, same epochs: writes
docs/results/mlp_vs_conv.json and docs/results/mlp_vs_conv.md.

    python -m tools.mlp_vs_conv          # from the repository root; about 15-40 min on 2 CPU cores
    python -m tools.mlp_vs_conv --threads 2   # torch's default on 2 cores, for a quiet machine

Runs, into ``runs/docs/mlp_vs_conv/<name>/``, for each network::

    python -m vae_lightning fit --config configs/default.yaml [--config configs/conv.yaml] \\
        --data.data_dir ../shared/data --trainer.max_epochs 5
    python -m vae_lightning test --config configs/default.yaml [--config configs/conv.yaml] \\
        --data.data_dir ../shared/data --ckpt_path <run>/checkpoints/last.ckpt

and the ConvVAE on Fashion-MNIST as well where ``<data_dir>/FashionMNIST/raw`` holds its files.
Seconds per epoch are the intervals between the ends of consecutive epochs in the run's
TensorBoard events (training, validation and the per-epoch callbacks, as a user waits for
them), so the start-up and data loading are left out; the machine's load is recorded beside
every timing, since other processes on a shared machine slow a run down. The commands run with
one torch thread (``OMP_NUM_THREADS=1``) unless ``--threads`` says otherwise: on an oversubscribed
machine two threads wait for each other at every operation and a step takes many times longer
(docs/performance.md), which would measure the other processes rather than the networks. The
CPU seconds of each fit process (start-up included) are recorded too, which the load sways less.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
from pathlib import Path
from typing import Any

import torch
from vae_lightning.runs import read_events, read_scalars

from tools.common import ROOT, RESULTS, cli, machine, rounded, run, script_parser, write_json

OUT = Path("runs/docs/mlp_vs_conv")
CONV = ["--config", "configs/conv.yaml"]
#: name -> (network, dataset, extra arguments after configs/default.yaml)
RUNS: dict[str, tuple[str, str, list[str]]] = {
    "mlp_mnist": ("MLPVAE", "mnist", []),
    "conv_mnist": ("ConvVAE", "mnist", CONV),
    "conv_fashion_mnist": ("ConvVAE", "fashion_mnist", [*CONV, "--data.dataset", "fashion_mnist"]),
}
TEST_METRICS = ("loss", "rl", "kl", "iwae_k1", "iwae_k50", "psnr", "ssim")


def network_parameters(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return sum(t.numel() for name, t in state.items() if name.startswith("network."))


def _children_cpu_s() -> float:
    """User and system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(extra: list[str], out: Path, data_dir: str, epochs: int) -> dict[str, Any]:
    """Fit for ``epochs`` and test the last checkpoint; the commands, timings, loads and metrics."""
    shutil.rmtree(ROOT / out, ignore_errors=True)
    configs = ["--config", "configs/default.yaml", *extra, "--data.data_dir", data_dir]
    logs = ["--trainer.default_root_dir", str(out)]
    cpu_before = _children_cpu_s()
    fit = run(cli("fit", *configs, "--trainer.max_epochs", str(epochs), *logs), ROOT / out / "fit.log")
    fit["cpu_s"] = rounded(_children_cpu_s() - cpu_before, 1)
    checkpoint = out / "lightning_logs/version_0/checkpoints/last.ckpt"
    test = run(cli("test", *configs, "--ckpt_path", str(checkpoint), *logs), ROOT / out / "test.log")
    trained = read_scalars(ROOT / out / "lightning_logs/version_0")
    tested = read_scalars(ROOT / out / "lightning_logs/version_1")
    epoch_ends = sorted(e.wall_time for e in read_events(ROOT / out / "lightning_logs/version_0").Scalars("train/loss_epoch"))
    intervals = [b - a for a, b in zip(epoch_ends, epoch_ends[1:])]
    return {
        "fit": fit,
        "test": test,
        "epochs": len(epoch_ends),
        "network_parameters": network_parameters(ROOT / checkpoint),
        "seconds_per_epoch": rounded(statistics.mean(intervals), 1),
        "epoch_intervals_s": [rounded(s, 1) for s in intervals],
        "val_loss_per_epoch": [rounded(v) for v in trained["val/loss"]],
        "test_metrics": {metric: rounded(tested[f"test/{metric}"][-1], 4) for metric in TEST_METRICS},
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as a page: a table, then the commands and the machine."""
    m = result["machine"]
    lines = [
        "# MLPVAE against ConvVAE on MNIST",
        "",
        f"Written by `{result['script']}`; the numbers are those of `mlp_vs_conv.json` beside this page.",
        f"{result['epochs']} epochs each, on {m['cpu']} ({m['cpu_cores']} cores, {result['torch_threads']} torch thread(s) per run), "
        f"Python {m['python']}, torch {m['torch']}, Lightning {m['lightning']}. Test metrics are on the 10,000 test "
        "images from the last checkpoint; s/epoch is the mean time between the ends of consecutive epochs "
        "(training, validation and the per-epoch callbacks); fit CPU s is the whole fit process's CPU time, "
        "start-up included. The machine is shared: the 1-minute load average during each fit is given beside "
        "its time (2 cores: a load above 2 means waiting for a core).",
        "",
        "| run | network parameters | s/epoch | fit CPU s | load during fit (mean / max) | test loss | test RL | test KL | IWAE k=50 | PSNR (dB) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in result["runs"].items():
        t = r["test_metrics"]
        lines.append(
            f"| {name} | {r['network_parameters']:,} | {r['seconds_per_epoch']} | {r['fit']['cpu_s']} | {r['fit']['load_1min_mean']} / "
            f"{r['fit']['load_1min_max']} | {t['loss']:.2f} | {t['rl']:.2f} | {t['kl']:.2f} | {t['iwae_k50']:.2f} | {t['psnr']:.2f} |"
        )
    lines += ["", "Validation loss per epoch:", ""]
    lines += [f"- {name}: {', '.join(str(v) for v in r['val_loss_per_epoch'])}" for name, r in result["runs"].items()]
    if result.get("not_run"):
        lines += ["", *[f"Not run: {name}: {why}" for name, why in result["not_run"].items()]]
    lines += ["", "## Commands", ""]
    for name, r in result["runs"].items():
        lines += [f"{name} (`uptime` before the fit: {r['fit']['uptime_before']}):", "", "```"]
        lines += [f"OMP_NUM_THREADS={result['torch_threads']} {r[step]['command']}" for step in ("fit", "test")]
        lines += ["```", ""]
    return "\n".join(lines)


def main(data_dir: str, epochs: int, threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch in each command
    runs, not_run = {}, {}
    for name, (network, dataset, extra) in RUNS.items():
        folder = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[dataset]
        if not (ROOT / data_dir / folder / "raw").is_dir():
            not_run[name] = f"no {folder}/raw in {data_dir}"
            continue
        runs[name] = {"network": network, "dataset": dataset, **measure(extra, OUT / name, data_dir, epochs)}
    result = {
        "description": "configs/default.yaml (the report's MLPVAE) and with configs/conv.yaml (ConvVAE: "
        "convolutions of 32 and 64 channels, a 256-wide dense layer, latent_dim 2), the same epochs on the same "
        "machine, each tested from its last checkpoint",
        "script": "python -m tools.mlp_vs_conv",
        "machine": machine(),
        "torch_threads": threads,
        "epochs": epochs,
        "runs": runs,
        "not_run": not_run,
    }
    write_json(RESULTS / "mlp_vs_conv.json", result)
    (RESULTS / "mlp_vs_conv.md").write_text(markdown(result) + "\n")


if __name__ == "__main__":
    parser = script_parser(__doc__, summarize=False)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each command (OMP_NUM_THREADS)")
    args = parser.parse_args()
    main(args.data_dir, args.epochs, args.threads)
