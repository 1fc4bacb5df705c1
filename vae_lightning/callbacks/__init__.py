"""The project's callbacks, one concern each. ``configs/default.yaml`` gives the ones a user tunes
their own sections (``sample_grid``, ``reconstruction_grid``, ``latent_figures``,
``gradient_diagnostics``, ``latent_diagnostics``, ``sample_quality``, ``progress_bar``; ``evaluation`` for ``test``,
``prediction`` for ``predict``), so an overlay or ``--latent_figures.every_n_epochs 1`` changes
one without rewriting a list; ``every_n_*: 0`` turns a periodic one off. ``trainer.callbacks``
holds what keeps a run's work: ``ModelCheckpoint``, the non-finite-loss guard, exact resume.
"""

from vae_lightning.callbacks.evaluation import Evaluator
from vae_lightning.callbacks.figures import LatentSpaceFigures
from vae_lightning.callbacks.gradients import GradientDiagnostics
from vae_lightning.callbacks.guards import NonFiniteLossGuard
from vae_lightning.callbacks.images import ReconstructionGrid, SampleGrid
from vae_lightning.callbacks.posterior import LatentDiagnostics
from vae_lightning.callbacks.prediction import ImagePredictionWriter
from vae_lightning.callbacks.quality import SampleQualityMonitor
from vae_lightning.callbacks.resume import ExactResume

__all__ = [
    "Evaluator",
    "ExactResume",
    "GradientDiagnostics",
    "ImagePredictionWriter",
    "LatentDiagnostics",
    "LatentSpaceFigures",
    "NonFiniteLossGuard",
    "ReconstructionGrid",
    "SampleGrid",
    "SampleQualityMonitor",
]
