"""A network of the user's own, named only by its class path in a YAML file, trains through the CLI
(helpers/networks.py holds the classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.networks import EncoderOnly, PlainVAE, TinyVAE
from helpers.recorders import StepLosses
from helpers.runs import conf_args, cpu_run_args

from vae_lightning.cli import main
from vae_lightning.module import VAEModule


def network_overlay(path: Path, class_path: str, **init_args: int) -> Path:
    """A YAML overlay choosing the network, as a user would write it."""
    lines = ["model:", "  network:", f"    class_path: {class_path}", "    init_args:"]
    lines += [f"      {name}: {value}" for name, value in init_args.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fit(mnist_dir: Path, tmp_path: Path, overlay: Path) -> tuple[VAEModule, list[float]]:
    """A short run of the default config with ``overlay`` on top; the module and its step losses."""
    losses = StepLosses()
    cli = main(
        [
            "fit",
            *cpu_run_args(mnist_dir, tmp_path),
            *conf_args("one_epoch"),
            "--config",
            str(overlay),
        ],
        trainer_defaults={"callbacks": [losses]},
    )
    return cli.model, losses.losses


def test_a_vae_network_subclass_named_only_in_yaml_trains_and_reloads(mnist_dir: Path, tmp_path: Path) -> None:
    overlay = network_overlay(tmp_path / "tiny.yaml", "helpers.networks.TinyVAE", latent_dim=3, hidden_dim=32)
    module, losses = fit(mnist_dir, tmp_path, overlay)
    assert isinstance(module.network, TinyVAE)
    assert module.network.image_shape == (1, 28, 28) and module.network.latent_dim == 3  # the shape from the data
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    # the checkpoint rebuilds the user's class from the saved configuration
    (checkpoint,) = tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    restored = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu")
    assert isinstance(restored.network, TinyVAE)
    assert all(torch.equal(a, b) for a, b in zip(restored.network.state_dict().values(), module.network.state_dict().values()))


def test_a_plain_module_with_encode_decode_and_latent_dim_gets_the_gaussian_posterior(mnist_dir: Path, tmp_path: Path) -> None:
    overlay = network_overlay(tmp_path / "plain.yaml", "helpers.networks.PlainVAE", latent_dim=3)
    module, losses = fit(mnist_dir, tmp_path, overlay)
    assert isinstance(module.network, PlainVAE) and module.network.image_shape == (1, 28, 28)
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:5]), losses
    # the module samples z from N(mu, sigma^2) and adds the Gaussian KL term for it
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        first, _, _ = module(x)
        second, _, _ = module(x)
    assert not torch.equal(first, second)  # a fresh z each pass
    kl = module.trainer.callback_metrics["train/kl_epoch"]
    assert torch.isfinite(kl) and kl > 0


def test_a_network_without_decode_is_refused_naming_what_it_lacks(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overlay = network_overlay(tmp_path / "encoder_only.yaml", "helpers.networks.EncoderOnly", latent_dim=3)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *cpu_run_args(mnist_dir, tmp_path), "--config", str(overlay)])
    assert exit_info.value.code == 2
    assert "model.network EncoderOnly lacks decode" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()  # refused before a run folder is written
    with pytest.raises(TypeError, match="lacks decode"):
        VAEModule(network=EncoderOnly())
