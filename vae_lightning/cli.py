"""The command line: LightningCLI over the VAE module and the MNIST datamodule.

``python -m vae_lightning {fit,validate,test,predict} --config configs/default.yaml``; any
option of the YAML can be overridden as ``--section.key value``.
"""

from __future__ import annotations

import sys
from typing import Any
from unittest.mock import patch

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from vae_lightning.checkpoints import (
    CheckpointError,
    check_checkpoint,
    differing_settings,
    newest_last_checkpoint,
    read_checkpoint,
)
from vae_lightning.data import MNISTDataModule
from vae_lightning.module import DEFAULT_LR, DEFAULT_MOMENTUM, VAEModule
from vae_lightning.numerics import MATMUL_PRECISIONS, apply_numerics


#: Steps between progress-bar redraws when the bar is on and not configured.
PROGRESS_BAR_REFRESH_RATE = 20


def names_a_local_file(ckpt_path: Any) -> bool:
    """Whether ``--ckpt_path`` is a path to read here, not ``last``/``best``/``hpc`` or a remote URL."""
    return ckpt_path is not None and ckpt_path not in ("last", "best", "hpc") and "://" not in str(ckpt_path)


class VAECLI(LightningCLI):
    """LightningCLI whose ``--print_config`` shows the default optimizer spelled out, and which
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
        parser.set_defaults(
            {
                "model.optimizer": {
                    "class_path": "torch.optim.SGD",
                    "init_args": {"lr": DEFAULT_LR, "momentum": DEFAULT_MOMENTUM},
                }
            }
        )

    def before_instantiate_classes(self) -> None:
        """Apply the numeric settings before anything is built (the denormal mode reaches every
        CPU thread only if set before they start), and on every run: a previous run in the same
        process may have changed them."""
        apply_numerics(self._get(self.config, "float32_matmul_precision"), self._get(self.config, "flush_denormal"))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer; unless the progress bar is off or configured, it redraws every
        ``PROGRESS_BAR_REFRESH_RATE`` steps rather than every step (a redraw per step costs
        about 8% of a CPU epoch of the default model, docs/performance.md)."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config.get("trainer") or {}
        configured = list(trainer.get("callbacks") or [])
        defaults = self.trainer_defaults.get("callbacks") or []
        defaults = defaults if isinstance(defaults, list) else [defaults]
        has_bar = any(isinstance(c, ProgressBar) for c in [*configured, *defaults])
        if trainer.get("enable_progress_bar") is not False and not has_bar and "callbacks" not in kwargs:
            kwargs["callbacks"] = [*configured, TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_RATE)]
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer; a value they refuse (``latent_dim`` 0, a negative
        learning rate, an unknown clipping algorithm) is a usage error naming it, raised before
        any run folder is written."""
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException) as err:
            self.parser.error(f"invalid configuration: {err}")
        optimizer_factory = getattr(self.model, "optimizer_factory", None)
        if callable(optimizer_factory):
            try:
                optimizer_factory(self.model.parameters())  # the optimizer's own checks (lr >= 0, ...)
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
        differing = differing_settings(saved, self.config[subcommand].get("model") or {})
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

    ``trainer_defaults`` adds Trainer arguments a config file cannot express, such as callback
    objects built in code (the sweep's pruning callback); its ``callbacks`` join the config's.
    """
    # ``args`` stand in for the command line: hide the calling program's own arguments (a
    # sweep's, a benchmark's, pytest's), which LightningCLI would otherwise warn about.
    with patch.object(sys, "argv", sys.argv if args is None else sys.argv[:1]):
        return VAECLI(
            VAEModule,
            MNISTDataModule,
            seed_everything_default=0,
            args=args,
            run=run,
            trainer_defaults=trainer_defaults,
        )


if __name__ == "__main__":
    main()
