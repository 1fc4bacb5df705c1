"""``python -m vae_lightning.experiments {run,report} EXPERIMENT.yaml``: run a sweep (and write
its report), or rewrite the report of a stored study.

Options after the experiment file that the command does not know (``--data.data_dir
../shared/data``) are passed to every trial's CLI run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from vae_lightning.experiments.report import make_report
from vae_lightning.experiments.spec import ExperimentError, load_experiment
from vae_lightning.experiments.study import Sweep, open_study


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_lightning.experiments",
        description="Sweeps of the VAE's options with Optuna; each trial is a run of the project's CLI.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "run (or resume, or join) the experiment's sweep, then write its report"),
        ("report", "rewrite the figures and results table from the stored study and run logs"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("experiment", type=Path, help="experiment file, e.g. configs/experiments/clip_value.yaml")
        command.add_argument(
            "--storage",
            default=None,
            help="Optuna storage URL shared by all workers (e.g. postgresql://user:pw@host/db); "
            "default: sqlite:///<output_dir>/<name>/study.db beside the runs",
        )
        command.add_argument("--fast", action="store_true", help="the experiment's reduced runs (few batches, 1-2 epochs), in their own study")
        command.add_argument("--out", type=Path, default=None, help="folder for figures and table (default: <output_dir>/<name>/report)")
        if name == "run":
            command.add_argument("--n-trials", type=int, default=None, help="train at most this many trials in this process, then stop")
            command.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
            command.add_argument(
                "--threads",
                type=int,
                default=None,
                help="torch CPU threads for this worker (1 is much faster on a busy machine; "
                "run one worker per core instead)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") and not a.startswith("--")]
    if bad:
        parser.error(f"unknown option(s) {bad}; trial options are written --section.key=value")
    if args.command == "report" and extra:
        parser.error(f"report takes no trial options, got {extra}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # one line per event file read otherwise
    try:
        experiment = load_experiment(args.experiment)
        study = open_study(experiment, fast=args.fast, storage=args.storage)
        if args.command == "run":
            if args.n_trials is not None and args.n_trials < 1:
                raise ExperimentError(f"--n-trials must be at least 1, got {args.n_trials}")
            if args.threads is not None:
                torch.set_num_threads(args.threads)
            Sweep(experiment, study, fast=args.fast, extra_args=extra, max_trials=args.n_trials).run()
            if args.no_report:
                return 0
        out_dir = args.out or experiment.run_dir(args.fast) / "report"
        report = make_report(experiment, study, out_dir, fast=args.fast)
        print(f"report: {report.markdown}")
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


__all__ = ["main", "build_parser"]
