"""One default per setting: every value that configs/default.yaml writes out is the code's own
default, so the YAML is the complete, readable list of settings and neither can drift."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
import yaml
from helpers.runs import DEFAULT_CONFIG

from vae_lightning.callbacks import ImagePredictionWriter, SampleQualityMonitor
from vae_lightning.callbacks.evaluation import Evaluator
from vae_lightning.data import ImageDataModule
from vae_lightning.module import DEFAULT_LR, DEFAULT_MOMENTUM, VAEModule

CONFIG = yaml.safe_load(DEFAULT_CONFIG.read_text())

# Lightning's and torch's own classes keep their defaults; the YAML sets what the project chooses.
PROJECT_CHOICES = {"torch.optim.SGD", "lightning.pytorch.loggers.TensorBoardLogger", "lightning.pytorch.callbacks.ModelCheckpoint",
                   "lightning.pytorch.callbacks.TQDMProgressBar"}


def _class(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _disagreements(cls: type, settings: dict[str, Any]) -> list[str]:
    parameters = inspect.signature(cls).parameters
    return [
        f"{cls.__name__}.{key}: YAML {value!r}, code {_plain(parameters[key].default)!r}"
        for key, value in settings.items()
        if key not in parameters or _plain(parameters[key].default) != value
    ]


def _classes_in_config() -> list[tuple[str, dict[str, Any]]]:
    model = CONFIG["model"]
    entries = [(model[key]["class_path"], model[key].get("init_args") or {}) for key in ("network", "likelihood", "prior", "objective")]
    entries += [(c["class_path"], c.get("init_args") or {}) for c in CONFIG["trainer"]["callbacks"]]
    return [(path, args) for path, args in entries if path not in PROJECT_CHOICES]


@pytest.mark.parametrize(("class_path", "init_args"), _classes_in_config(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_project_class_in_the_default_config_has_the_yamls_values_as_its_defaults(class_path: str, init_args: dict) -> None:
    assert _disagreements(_class(class_path), init_args) == []


def test_the_module_data_evaluation_prediction_and_sample_quality_sections_are_the_code_defaults() -> None:
    model = {key: value for key, value in CONFIG["model"].items() if key not in ("network", "likelihood", "optimizer", "prior", "objective")}
    assert _disagreements(VAEModule, model) == []
    assert _disagreements(ImageDataModule, CONFIG["data"]) == []
    assert _disagreements(Evaluator, CONFIG["evaluation"]) == []
    assert _disagreements(ImagePredictionWriter, CONFIG["prediction"]) == []
    assert _disagreements(SampleQualityMonitor, CONFIG["sample_quality"]) == []


def test_the_default_network_likelihood_and_optimizer_are_the_yamls() -> None:
    module = VAEModule()
    model = CONFIG["model"]
    assert f"{type(module.network).__module__.rsplit('.', 1)[0]}.{type(module.network).__name__}" == model["network"]["class_path"]
    assert f"{type(module.likelihood).__module__}.{type(module.likelihood).__name__}" == model["likelihood"]["class_path"]
    assert f"{type(module.prior).__module__}.{type(module.prior).__name__}" == model["prior"]["class_path"]
    assert f"{type(module.objective).__module__}.{type(module.objective).__name__}" == model["objective"]["class_path"]
    optimizer = module.configure_optimizers()
    assert f"torch.optim.{type(optimizer).__name__}" == model["optimizer"]["class_path"]
    assert model["optimizer"]["init_args"] == {"lr": DEFAULT_LR, "momentum": DEFAULT_MOMENTUM}
    assert optimizer.param_groups[0]["lr"] == DEFAULT_LR and optimizer.param_groups[0]["momentum"] == DEFAULT_MOMENTUM


def test_a_disagreement_would_be_caught() -> None:
    assert _disagreements(Evaluator, {"denoise_std": 0.25}) == ["Evaluator.denoise_std: YAML 0.25, code 0.5"]
