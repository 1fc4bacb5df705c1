"""``python -m vae_lightning``: the LightningCLI (fit, validate, test, predict)."""

import sys

from vae_lightning.cli import run_cli

sys.exit(run_cli())
