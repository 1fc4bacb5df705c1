"""Seconds per MNIST epoch of the default model: the fair floor, the common reference, Lightning's
bare loop and this project, in one run.

    python benchmarks/epoch_time.py                      # CPU or GPU, whichever is present
    python benchmarks/epoch_time.py --repeats 5          # the rows round-robin, five times
    python benchmarks/epoch_time.py --options --scaling  # also the options and the scaling table

The rows (``rows.py``) train the model of ``configs/default.yaml`` with its optimizer, clipping,
data split and batch size (``settings.py``); the loops are in ``loops.py``. Each row runs in a
fresh Python process (``measure.py``); the ratios, their targets and the tables are in
``report.py``. The run writes ``epoch_time_<device>.json`` and ``.md`` into ``--out`` and each
row's output into ``logs_<device>/`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import measure
import report
import rows
from settings import DEFAULT_DATA_DIR, REPO_ROOT, load

NO_GPU = (
    "No CUDA GPU is available here (torch.cuda.is_available() is False). Run with --device cpu, "
    "or on a GPU machine: python benchmarks/epoch_time.py --device cuda --options --scaling"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="cuda needs a GPU; auto picks cuda when one is present, else cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's data.batch_size")
    p.add_argument("--epochs", type=int, default=4, help="epochs per row, warm-up included")
    p.add_argument("--warmup", type=int, default=1, help="first epochs left out of the median")
    p.add_argument("--limit-batches", type=int, default=None, help="cut each epoch to this many batches (smoke runs)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for every row (default: torch's, one per core); 1 is faster on a busy machine")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="folder holding MNIST/raw")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"), help="folder for the JSON and Markdown")
    p.add_argument("--options", action="store_true", help="also measure the options (compile, bf16, counting every step, ...)")
    p.add_argument("--scaling", action="store_true", help="also measure epoch time against batch size, width and ConvVAE")
    p.add_argument("--no-main", action="store_true", help="skip the main rows (floor, reference, project, ...)")
    p.add_argument("--scaling-images", type=int, default=8192, help="training images timed per scaling point")
    p.add_argument("--repeats", type=int, default=1,
                   help="run each group of rows (main, options, scaling) this many times, interleaved (every second time "
                   "in reverse order); each row is its fastest run (steadier on a shared machine, whose noise only slows runs down)")
    p.add_argument("--in-process", action="store_true",
                   help="run the rows in this process (quick smoke runs; peak memory is then not per row)")
    args = p.parse_args(argv)
    if args.warmup >= args.epochs:
        p.error(f"--epochs ({args.epochs}) must exceed --warmup ({args.warmup}) to leave epochs to measure")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or 'CPU'} ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
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
    batch_size = args.batch_size or load().batch_size
    base = {"device": device, "batch_size": batch_size, "epochs": args.epochs, "warmup": args.warmup,
            "limit_batches": args.limit_batches, "data_dir": str(Path(args.data_dir).resolve()), "quiet": True,
            "threads": args.threads}
    device_name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
    load_start = round(os.getloadavg()[0], 2)
    print(f"{device_name}; load average {load_start}; logs in {log_dir}")
    run = measure.measure_in_process if args.in_process else measure.measure
    main_rows = [] if args.no_main else measure.measure_interleaved(rows.main_rows(base), args.repeats, run, log_dir)
    main_rows.sort(key=lambda row: list(report.MAIN_ROWS).index(row["name"]))  # the table's order
    option_rows = measure.measure_interleaved(rows.option_rows(base), args.repeats, run, log_dir) if args.options else []
    scaling = measure.measure_interleaved(rows.scaling_rows(base, args.scaling_images), args.repeats, run, log_dir) if args.scaling else []
    ratios = report.ratios(main_rows, device)
    result = {
        "device": device, "device_name": device_name, "cpu_count": os.cpu_count(),
        "load_average_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "torch": torch.__version__, "python": platform.python_version(),
        "command": "python benchmarks/epoch_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "batch_size": batch_size, "epochs": args.epochs, "warmup": args.warmup, "repeats": args.repeats,
        "threads": args.threads or torch.get_num_threads(), "limit_batches": args.limit_batches,
        "rows": main_rows + option_rows, "ratios": ratios, "targets": report.targets(ratios) if device == "cpu" else {},
        "runs": report.per_run_ratios(main_rows), "scaling": scaling,
    }
    stem = f"epoch_time_{device}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    table = report.markdown(result)
    (out / f"{stem}.md").write_text(table)
    print()
    print(table)
    return result


if __name__ == "__main__":
    main()
