"""``python -m vae_lightning.experiments {run,report} EXPERIMENT.yaml``: run a sweep (and write
its report), or rewrite the report of a stored study. Options after the experiment file that the
command does not know (``--data.data_dir ../shared/data``) go to every trial's CLI run."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

import optuna
import torch

from vae_lightning.experiments.report import make_report
from vae_lightning.experiments.record import check_context, context
from vae_lightning.experiments.spec import ExperimentError, load_experiment
from vae_lightning.experiments.study import Sweep, counted, open_study


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors read ``error: ...`` on a line of their own, as the
    command's other errors do (argparse puts the program's name first)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m vae_lightning.experiments", description="Sweeps with Optuna; each trial is a CLI run.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume, or join) the experiment's sweep, then write its report")
    report = commands.add_parser("report", help="rewrite the figures and table from the stored study and run logs")
    for command in (run, report):
        command.add_argument("experiment", type=Path, help="experiment file, e.g. configs/experiments/clip_value.yaml")
        command.add_argument("--storage", help="Optuna storage URL shared by all workers (e.g. postgresql://user:pw@host/db); "
                             "default: sqlite:///<output_dir>/<name>/study.db")
        command.add_argument("--fast", action="store_true", help="the experiment's reduced runs (few batches and epochs), in their own study")
        command.add_argument("--out", type=Path, help="folder for figures and table (default: <output_dir>/<name>/report)")
    run.add_argument("--n-trials", type=int, help="train at most this many trials in this process, then stop")
    run.add_argument("--restart", action="store_true", help="discard the study's trials and start it afresh (their run folders stay "
                     "on disk); for a study whose trials ran with other settings. Give it to one worker only")
    run.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    run.add_argument("--threads", type=int, help="torch CPU threads of this worker (1 is fastest on a busy machine; one worker per core)")
    run.add_argument("--grace-period", type=int, default=60, help="seconds without a heartbeat after which a worker's trial runs again")
    run.add_argument("--verbose", action="store_true", help="show each trial's own output (Lightning's banners, progress bars, warnings) "
                     "here too, not only in its log.txt")
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
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)  # the sweep prints a line per trial
    try:
        experiment = load_experiment(args.experiment)
        if args.command == "run":
            if (args.n_trials is not None and args.n_trials < 1) or args.grace_period < 1:
                raise ExperimentError("--n-trials and --grace-period must be at least 1")
            if args.threads is not None:
                torch.set_num_threads(args.threads)
            study = open_study(experiment, fast=args.fast, storage=args.storage, grace_period=args.grace_period, restart=args.restart)
            Sweep(experiment, study, fast=args.fast, extra_args=extra, max_trials=args.n_trials, verbose=verbose).run()
            if args.no_report:
                return 0
        else:
            study = open_study(experiment, fast=args.fast, storage=args.storage)
            trials = counted(experiment, study.get_trials(deepcopy=False))
            check_context(experiment, trials, context(experiment, args.fast, []), study.study_name, compare_extra_args=False)
        print(f"report: {make_report(experiment, study, args.out or experiment.run_dir(args.fast) / 'report', fast=args.fast)}")
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
