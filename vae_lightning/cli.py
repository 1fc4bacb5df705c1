"""The command line: LightningCLI over ``VAEModule`` and ``ImageDataModule``.

``python -m vae_lightning {fit,validate,test,predict} --config configs/default.yaml``; any
option of the YAML can be overridden as ``--section.key value``. Everything a run is made of
(network, likelihood, callbacks, progress bar) is configuration; this class adds only what
LightningCLI cannot do by itself: the process-wide numeric settings before anything is built,
the image shape handed from the data to the network, the callbacks' own sections, and one
checkpoint gate before a run starts.
"""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from vae_lightning import callbacks
from vae_lightning.data import ImageDataModule
from vae_lightning.models.conditional import check_conditioning
from vae_lightning.module import VAEModule
from vae_lightning.runtime import settings
from vae_lightning.runtime.checkpoints import CheckpointGate
from vae_lightning.runtime.console import quiet_library_noise
from vae_lightning.runtime.errors import (
    CheckpointError,
    UserError,
    run_reporting_user_errors,
)
from vae_lightning.runtime.numerics import MATMUL_PRECISIONS, apply_numerics

#: The callbacks a user tunes, each configured in a section of its own (``--latent_figures.every_n_epochs 1``).
CALLBACK_SECTIONS = {
    "sample_grid": callbacks.SampleGrid,
    "reconstruction_grid": callbacks.ReconstructionGrid,
    "latent_figures": callbacks.LatentSpaceFigures,
    "gradient_diagnostics": callbacks.GradientDiagnostics,
    "latent_diagnostics": callbacks.LatentDiagnostics,
    "sample_quality": callbacks.SampleQualityMonitor,
    "progress_bar": TQDMProgressBar,
    "evaluation": callbacks.Evaluator,  # acts in `test` only
    "prediction": callbacks.ImagePredictionWriter,  # acts in `predict` only
}

#: The subcommands that evaluate weights rather than train them: they need a checkpoint.
EVALUATING = ("validate", "test", "predict")


def _own_reason(err: BaseException) -> str:
    """The message of the exception that started ``err``: the class's own reason for refusing a
    value, where jsonargparse wraps it (for an optional argument, in a report of every member of
    the type union it tried)."""
    while (inner := err.__cause__ if err.__cause__ is not None or err.__suppress_context__ else err.__context__) is not None:
        err = inner
    return str(err)


class VAECLI(LightningCLI):
    """LightningCLI that sets the numerics first, links the data's image shape to the network, and
    refuses a bad value or checkpoint before the run starts (see docs/reliability.md)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--float32_matmul_precision",
            choices=MATMUL_PRECISIONS,
            default="highest",
            help="torch.set_float32_matmul_precision for the run: highest (exact float32), high (TF32 on "
            "NVIDIA GPUs) or medium (also bf16); faster matmuls, slightly different numbers",
        )
        parser.add_argument(
            "--flush_denormal",
            type=bool,
            default=True,
            help="torch.set_flush_denormal for the run: float32 values below 1.2e-38 become 0 on x86 CPUs, "
            "which compute on them many times slower (SGD momentum decays through them); values that small "
            "are below the last bit of the weights (vae_lightning/runtime/numerics.py)",
        )
        parser.add_argument(
            "--allow_untrained",
            type=bool,
            default=False,
            help="validate, test or predict without --ckpt_path (the model's freshly initialised weights), "
            "and fit with --ckpt_path last start from scratch when the experiment has no last.ckpt yet; "
            "without it both stop with an error, so untrained weights are never evaluated by accident",
        )
        # the network's input shape is the data's: switching datasets needs no second setting
        parser.link_arguments("data.image_shape", "model.network.init_args.image_shape", apply_on="instantiate")
        for section, callback_class in CALLBACK_SECTIONS.items():
            parser.add_lightning_class_args(callback_class, section)

    def init_parser(self, **kwargs: Any):
        """LightningCLI's parser, whose report of a value of the wrong type names the key and the
        expected type in one line rather than every member of the option's type union."""
        parser = super().init_parser(**kwargs)
        report = parser.error
        parser.error = lambda message, *rest, **named: report(settings.plain_type_error(str(message)), *rest, **named)  # type: ignore[method-assign]
        return parser

    def parse_arguments(self, parser, args: ArgsType) -> None:
        """Parse as usual, then read and check a ``--ckpt_path`` file before Lightning reads the
        model settings stored in it (which replace the configured ones; a warning lists any that differ).
        Settings jsonargparse would accept or misreport are refused first (runtime/settings.py)."""
        given = [str(arg) for arg in (sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else [])]
        if problem := settings.config_file_problem(given) or settings.non_finite_option(given):
            parser.error(problem)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        trainer = config.get("trainer") or {}
        logger = trainer.get("logger")
        save_dir = (logger.get("init_args") or {}).get("save_dir") if isinstance(logger, (dict, Namespace)) else None
        if problem := (settings.non_finite_setting(config) or settings.negative_clip_value(trainer)
                       or settings.unwritable_folder(trainer.get("default_root_dir"), "--trainer.default_root_dir", "lightning_logs")
                       or settings.unwritable_folder(save_dir, "--trainer.logger.init_args.save_dir")):
            parser.error(problem)
        if subcommand in EVALUATING and config.get("ckpt_path") is None and not config.get("allow_untrained"):
            parser.error(
                f"{subcommand} needs trained weights: pass --ckpt_path <run>/checkpoints/last.ckpt (or --ckpt_path last "
                f"for the newest of the experiment), or --allow_untrained true to {subcommand} the freshly initialised model."
            )
        try:
            self.checkpoint_gate = CheckpointGate(config.get("ckpt_path"))
        except CheckpointError as err:
            parser.error(str(err))
        if differing := self.checkpoint_gate.differing_settings(config.get("model") or {}):
            rank_zero_warn(f"{self.checkpoint_gate.path}: the checkpoint's model settings replace the configured ones: {', '.join(differing)}")

    def before_instantiate_classes(self) -> None:
        """Apply the numeric settings before anything is built (the denormal mode reaches every
        CPU thread only if set before they start), and on every run: a previous run in the same
        process may have changed them."""
        apply_numerics(self._get(self.config, "float32_matmul_precision"), self._get(self.config, "flush_denormal"))

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer; a value they refuse (``latent_dim`` 0, a negative
        learning rate, an unknown clipping algorithm, an accelerator whose package is missing) is a
        usage error naming it, raised before any run folder is written."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException) as err:
            if isinstance(err, UserError):
                raise
            self.parser.error(f"invalid configuration: {_own_reason(err)}")
        except ModuleNotFoundError as err:
            if err.name is not None:  # an import of the code itself failed: a bug or a broken install
                raise
            # Lightning's check of an optional package (``Trainer(accelerator="tpu")`` without torch_xla)
            self.parser.error(f"invalid configuration: {err}; or choose an accelerator this machine has (e.g. --trainer.accelerator cpu).")

    def _gate_checkpoint(self) -> None:
        """Resolve ``--ckpt_path last`` to the newest ``last.ckpt`` of the experiment (each run has
        its own ``version_N`` folder), and check a given file's weights against the model built."""
        config = self.config_init[self.subcommand]
        if config.get("weights_only", "unset") is None:
            config["weights_only"] = True  # no pickled code from a checkpoint (--weights_only false allows it)
        try:
            resolved = self.checkpoint_gate.resolve(self.model, getattr(self.trainer.logger, "root_dir", None))
        except CheckpointError as err:
            self.parser.error(str(err))
        if resolved == "last":  # no run of the experiment has written a last.ckpt
            root = getattr(self.trainer.logger, "root_dir", None) or self.trainer.default_root_dir
            if not self._get(self.config, "allow_untrained"):
                start = "start training from scratch" if self.subcommand == "fit" else f"{self.subcommand} the freshly initialised model"
                self.parser.error(
                    f"--ckpt_path last: there is nothing to resume, no version_*/checkpoints/last.ckpt under {root}. "
                    f"Pass the path of a checkpoint (--ckpt_path <run>/checkpoints/last.ckpt), point the logger at the "
                    f"experiment's folder (--trainer.default_root_dir), or add --allow_untrained true to {start}."
                )
            rank_zero_info(f"--ckpt_path last: no last.ckpt under {root}; starting from freshly initialised weights (--allow_untrained)")
            resolved = None
        if resolved != config.get("ckpt_path"):
            if resolved is not None:
                rank_zero_info(f"--ckpt_path {config.get('ckpt_path')}: resuming from {resolved}")
            config["ckpt_path"] = resolved

    def _read_data_first(self) -> None:
        """In one process, read the subcommand's data before the Trainer starts, so missing or bad
        files stop the run before its logger makes a run folder (Lightning's own ``setup`` then
        reuses the tensors). Several processes read it as Lightning does: downloading is rank 0's."""
        if self.trainer.world_size != 1:
            return
        if self.datamodule.download:
            self.datamodule.prepare_data()
        self.datamodule.setup(self.subcommand)

    def _before_run(self) -> None:
        """Refuse a conditional network that the data's labels do not fit, gate the checkpoint, and
        read the data before any run folder is made."""
        check_conditioning(self.model.network, self.datamodule.num_classes, self.datamodule.dataset)
        self._gate_checkpoint()
        self._read_data_first()

    before_fit = before_validate = before_test = before_predict = _before_run


def main(args: ArgsType = None, run: bool = True, trainer_defaults: dict[str, Any] | None = None) -> VAECLI:
    """Run the CLI on ``args`` (the command line when ``None``); returns it for tests and scripts.
    Errors are raised, not printed: :func:`run_cli` is the command line's own entry point.

    ``trainer_defaults`` adds Trainer arguments a config file cannot express, such as callback
    objects built in code (the sweep's pruning callback); its ``callbacks`` join the config's.
    """
    quiet_library_noise()
    return VAECLI(VAEModule, ImageDataModule, seed_everything_default=0, args=args, run=run, trainer_defaults=trainer_defaults)


def run_cli(argv: list[str] | None = None) -> int:
    """``python -m vae_lightning``: :func:`main`, with a user's mistake (missing or corrupt data, an
    unreadable checkpoint, a diverged run) reported as one ``error:`` paragraph and an exit status
    (``vae_lightning.runtime.errors``); ``--traceback`` shows the traceback too."""

    def run(args: list[str]) -> None:
        if argv is not None:
            main(args)
            return
        # the process's own command line, less --traceback: DDP's launcher starts the other
        # processes from sys.argv, so the arguments stay there rather than in args=
        sys.argv[1:] = args
        main()

    return run_reporting_user_errors(run, argv)


if __name__ == "__main__":
    sys.exit(run_cli())
