"""The command line: LightningCLI over the VAE module and the MNIST datamodule.

``python -m vae_lightning {fit,validate,test,predict} --config configs/default.yaml``; any
option of the YAML can be overridden as ``--section.key value``.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import ArgsType, LightningCLI

from vae_lightning.data import MNISTDataModule
from vae_lightning.module import DEFAULT_LR, DEFAULT_MOMENTUM, VAEModule


class VAECLI(LightningCLI):
    """LightningCLI whose ``--print_config`` shows the default optimizer spelled out."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "model.optimizer": {
                    "class_path": "torch.optim.SGD",
                    "init_args": {"lr": DEFAULT_LR, "momentum": DEFAULT_MOMENTUM},
                }
            }
        )


def main(args: ArgsType = None, run: bool = True, trainer_defaults: dict[str, Any] | None = None) -> VAECLI:
    """Run the CLI on ``args`` (``sys.argv`` when ``None``); returns it for tests and scripts.

    ``trainer_defaults`` adds Trainer arguments a config file cannot express, such as callback
    objects built in code (the sweep's pruning callback); its ``callbacks`` join the config's.
    """
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
