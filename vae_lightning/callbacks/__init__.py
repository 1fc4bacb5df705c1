"""Callbacks, each listed in ``configs/default.yaml``'s ``trainer.callbacks`` (turn one off by
leaving it out): TensorBoard image grids, training diagnostics, latent-space figures, the
non-finite-loss guard, exact resume and the ``predict`` image writer. The test-time metrics are
``vae_lightning.evaluation.Evaluator``."""

from vae_lightning.callbacks.diagnostics import GradientDiagnostics, LatentDiagnostics
from vae_lightning.callbacks.guards import NonFiniteLossGuard
from vae_lightning.callbacks.images import ReconstructionGrid, SampleGrid
from vae_lightning.callbacks.latent_figures import LatentSpaceFigures
from vae_lightning.callbacks.prediction import ImagePredictionWriter
from vae_lightning.callbacks.resume import ExactResume

__all__ = [
    "ExactResume",
    "GradientDiagnostics",
    "ImagePredictionWriter",
    "LatentDiagnostics",
    "LatentSpaceFigures",
    "NonFiniteLossGuard",
    "ReconstructionGrid",
    "SampleGrid",
]
