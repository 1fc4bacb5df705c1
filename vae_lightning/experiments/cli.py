"""``python -m vae_lightning.experiments {run,report} EXPERIMENT.yaml``: run a sweep (and write
its report), or rewrite the report of a stored study. Options after the experiment file that the
command does not know (``--data.data_dir ../shared/data``) go to every trial's CLI run."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import optuna
import torch

from vae_lightning.experiments.report import make_report
from vae_lightning.experiments.spec import ExperimentError, load_experiment
from vae_lightning.experiments.study import Sweep, open_study


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vae_lightning.experiments", description="Sweeps of the VAE's options with Optuna; each trial is a run of the project's CLI.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run (or resume, or join) the experiment's sweep, then write its report"), ("report", "rewrite the figures and table from the stored study and run logs")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("experiment", type=Path, help="experiment file, e.g. configs/experiments/clip_value.yaml")
        command.add_argument("--storage", help="Optuna storage URL shared by all workers (e.g. postgresql://user:pw@host/db); default: sqlite:///<output_dir>/<name>/study.db")
        command.add_argument("--fast", action="store_true", help="the experiment's reduced runs (few batches and epochs), in their own study")
        command.add_argument("--out", type=Path, help="folder for figures and table (default: <output_dir>/<name>/report)")
        if name == "run":
            command.add_argument("--n-trials", type=int, help="train at most this many trials in this process, then stop")
            command.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
            command.add_argument("--threads", type=int, help="torch CPU threads for this worker (1 is much faster on a busy machine; run one worker per core)")
            command.add_argument("--grace-period", type=int, default=60, help="seconds without a heartbeat after which a worker counts as dead and its trial runs again")
            command.add_argument("--verbose", action="store_true", help="show each trial's own output (Lightning's banners, progress bars, warnings) here, not only in its log.txt")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if bad := [a for a in extra if a.startswith("-") and not a.startswith("--")]:
        parser.error(f"unknown option(s) {bad}; trial options are written --section.key=value")
    if args.command == "report" and extra:
        parser.error(f"report takes no trial options, got {extra}")
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)  # a line per trial is printed instead
    try:
        experiment = load_experiment(args.experiment)
        if args.command == "run":
            if (args.n_trials is not None and args.n_trials < 1) or args.grace_period < 1:
                raise ExperimentError("--n-trials and --grace-period must be at least 1")
            if args.threads is not None:
                torch.set_num_threads(args.threads)
            study = open_study(experiment, fast=args.fast, storage=args.storage, grace_period=args.grace_period)
            Sweep(experiment, study, fast=args.fast, extra_args=extra, max_trials=args.n_trials, verbose=verbose).run()
            if args.no_report:
                return 0
        else:
            study = open_study(experiment, fast=args.fast, storage=args.storage)
        print(f"report: {make_report(experiment, study, args.out or experiment.run_dir(args.fast) / 'report', fast=args.fast)}")
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
