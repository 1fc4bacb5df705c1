"""``python -m vae_lightning``: the LightningCLI (fit, validate, test, predict)."""

from vae_lightning.cli import main

main()
