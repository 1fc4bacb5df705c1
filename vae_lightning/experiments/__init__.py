"""Sweeps of the VAE's options: experiment files, an Optuna study whose trials are ordinary CLI
runs, and the figures and tables made from them (``python -m vae_lightning.experiments``)."""

from vae_lightning.experiments.spec import Experiment, ExperimentError, load_experiment

__all__ = ["Experiment", "ExperimentError", "load_experiment"]
