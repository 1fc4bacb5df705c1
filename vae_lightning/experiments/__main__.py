"""``python -m vae_lightning.experiments {run,report} EXPERIMENT.yaml``."""

import sys

from vae_lightning.experiments.cli import main

sys.exit(main())
