"""The command line: LightningCLI over ``VAEModule`` and ``ImageDataModule``.

``python -m vae_lightning {fit,validate,test,predict} --config configs/default.yaml``; any
option of the YAML can be overridden as ``--section.key value``. Everything a run is made of
(network, likelihood, callbacks, progress bar) is configuration; this class adds only what
LightningCLI cannot do by itself: the process-wide numeric settings before anything is built,
the image shape handed from the data to the network, the ``evaluation`` (``test``) and
``prediction`` (``predict``) sections, and checkpoint checks before a run starts.
"""

from __future__ import annotations

import sys
from typing import Any
from unittest.mock import patch

from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from vae_lightning.callbacks import ImagePredictionWriter
from vae_lightning.checkpoints import check_checkpoint, differing_settings, newest_last_checkpoint, read_checkpoint
from vae_lightning.console import quiet_library_noise
from vae_lightning.data import ImageDataModule
from vae_lightning.errors import CheckpointError, UserError, run_reporting_user_errors
from vae_lightning.evaluation import Evaluator
from vae_lightning.module import VAEModule
from vae_lightning.numerics import MATMUL_PRECISIONS, apply_numerics

def names_a_local_file(ckpt_path: Any) -> bool:
    """Whether ``--ckpt_path`` is a path to read here, not ``last``/``best``/``hpc`` or a remote URL."""
    return ckpt_path is not None and ckpt_path not in ("last", "best", "hpc") and "://" not in str(ckpt_path)


#: The network's input shape as a checkpoint's settings name it: set from the data when the
#: classes are built, so a parsed configuration does not hold it yet.
LINKED_SETTING = "network.image_shape"


def _refusal(err: Exception) -> str:
    """The class's own reason for refusing a value. For an optional class argument (a network, a
    likelihood) jsonargparse reports every member of the type union it tried, ``None`` among them;
    the reason is the line that is not about ``None``."""
    text = str(err)
    if "Does not validate against any of the Union subtypes" not in text:
        return text
    reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ") and "NoneType" not in line]
    return "; ".join(reasons) or text


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
            "are below the last bit of the weights (vae_lightning/numerics.py)",
        )
        # the network's input shape is the data's: switching datasets needs no second setting
        parser.link_arguments("data.image_shape", "model.network.init_args.image_shape", apply_on="instantiate")
        # the settings of `test` and `predict` as sections of their own (callbacks LightningCLI adds
        # to the trainer's), so those commands take them on their command line: --evaluation.iwae_samples
        parser.add_lightning_class_args(Evaluator, "evaluation")
        parser.add_lightning_class_args(ImagePredictionWriter, "prediction")

    def before_instantiate_classes(self) -> None:
        """Apply the numeric settings before anything is built (the denormal mode reaches every
        CPU thread only if set before they start), and on every run: a previous run in the same
        process may have changed them."""
        apply_numerics(self._get(self.config, "float32_matmul_precision"), self._get(self.config, "flush_denormal"))

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer; a value they refuse (``latent_dim`` 0, a negative
        learning rate, an unknown clipping algorithm) is a usage error naming it, raised before
        any run folder is written."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException) as err:
            if isinstance(err, UserError):
                raise
            self.parser.error(f"invalid configuration: {_refusal(err)}")
        try:
            self.model.configure_optimizers()  # the optimizer's own checks (lr >= 0, ...)
        except ValueError as err:
            self.parser.error(f"invalid configuration: model.optimizer: {err}")

    def parse_arguments(self, parser, args) -> None:
        """Parse as usual, then check a ``--ckpt_path`` file before Lightning reads the model
        settings stored in it (which replace the configured ones; a warning lists any that differ)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not names_a_local_file(ckpt_path):
            return
        try:
            self._checkpoint = (ckpt_path, read_checkpoint(ckpt_path))  # read once, checked again in before_*
        except CheckpointError as err:
            parser.error(str(err))
        saved = self._checkpoint[1].get("hyper_parameters") or {}
        differing = [
            setting
            for setting in differing_settings(saved, self.config[subcommand].get("model") or {})
            if not setting.startswith(f"{LINKED_SETTING}=")
        ]
        if differing:
            rank_zero_warn(f"{ckpt_path}: the checkpoint's model settings replace the configured ones: {', '.join(differing)}")

    def _check_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last`` to the newest ``last.ckpt`` of the experiment (each run has
        its own ``version_N`` folder), and check a given path before the Trainer touches it."""
        config = self.config_init[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if config.get("weights_only", "unset") is None:
            config["weights_only"] = True  # no pickled code from a checkpoint (--weights_only false allows it)
        if ckpt_path == "last":
            log_root = getattr(self.trainer.logger, "root_dir", None)
            found = newest_last_checkpoint(log_root) if log_root else None
            if found is not None:
                rank_zero_info(f"--ckpt_path last: resuming from {found}")
                config["ckpt_path"] = str(found)
        elif names_a_local_file(ckpt_path):
            read_path, contents = getattr(self, "_checkpoint", (None, None))
            try:
                check_checkpoint(ckpt_path, self.model, contents if read_path == ckpt_path else None)
            except CheckpointError as err:
                self.parser.error(str(err))

    def before_fit(self) -> None:
        self._check_ckpt_path()

    def before_validate(self) -> None:
        self._check_ckpt_path()

    def before_test(self) -> None:
        self._check_ckpt_path()

    def before_predict(self) -> None:
        self._check_ckpt_path()


def main(args: ArgsType = None, run: bool = True, trainer_defaults: dict[str, Any] | None = None) -> VAECLI:
    """Run the CLI on ``args`` (``sys.argv`` when ``None``); returns it for tests and scripts.
    Errors are raised, not printed: :func:`run_cli` is the command line's own entry point.

    ``trainer_defaults`` adds Trainer arguments a config file cannot express, such as callback
    objects built in code (the sweep's pruning callback); its ``callbacks`` join the config's.
    """
    quiet_library_noise()
    # ``args`` stand in for the command line: hide the calling program's own arguments (a
    # sweep's, a benchmark's, pytest's), which LightningCLI would otherwise warn about.
    with patch.object(sys, "argv", sys.argv if args is None else sys.argv[:1]):
        return VAECLI(
            VAEModule,
            ImageDataModule,
            seed_everything_default=0,
            args=args,
            run=run,
            trainer_defaults=trainer_defaults,
        )


def run_cli(argv: list[str] | None = None) -> int:
    """``python -m vae_lightning``: :func:`main`, with a user's mistake (missing or corrupt data, an
    unreadable checkpoint, a diverged run) reported as one ``error:`` paragraph and an exit status
    (``vae_lightning.errors``); ``--traceback`` shows the traceback too."""

    def run(args: list[str]) -> None:
        # as sys.argv, not args=: DDP's launcher starts the other processes from sys.argv
        with patch.object(sys, "argv", [sys.argv[0], *args]):
            main()

    return run_reporting_user_errors(run, argv)


if __name__ == "__main__":
    sys.exit(run_cli())
