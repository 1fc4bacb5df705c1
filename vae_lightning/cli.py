"""The command line: LightningCLI over the VAE module and the MNIST datamodule.

``python -m vae_lightning {fit,validate,test,predict} --config configs/default.yaml``; any
option of the YAML can be overridden as ``--section.key value``.
"""

from __future__ import annotations

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


def main(args: ArgsType = None, run: bool = True) -> VAECLI:
    """Run the CLI on ``args`` (``sys.argv`` when ``None``); returns it for tests and scripts."""
    return VAECLI(
        VAEModule,
        MNISTDataModule,
        seed_everything_default=0,
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
