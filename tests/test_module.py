"""The LightningModule built in Python, as a fork's own script would: its checkpoints hold no
pickled objects and name what a load needs; the loss is RL + KL of its network and likelihood."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from vae_lightning.latent import reparameterize
from vae_lightning.likelihoods import Bernoulli
from vae_lightning.models import MLPVAE
from vae_lightning.module import VAEModule
from vae_lightning.runtime.errors import CheckpointError


def _train_one_step(module: VAEModule, tmp_path: Path) -> Path:
    images = torch.rand(16, 1, 28, 28)
    trainer = Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", default_root_dir=tmp_path, enable_checkpointing=False,
    )
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(images, torch.zeros(16)), batch_size=16))
    path = tmp_path / "module.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_a_module_built_in_python_saves_a_safe_checkpoint_that_loads_with_its_network(tmp_path: Path) -> None:
    module = VAEModule(network=MLPVAE(hidden_dims=[32], latent_dim=3), likelihood=Bernoulli(), kl_weight=0.5)
    path = _train_one_step(module, tmp_path)
    saved = torch.load(path, weights_only=True)  # only tensors and plain values: no pickled network
    assert saved["hyper_parameters"]["kl_weight"] == 0.5
    assert "network" not in saved["hyper_parameters"]
    with pytest.raises(CheckpointError, match=r"network=\.\.\."):
        VAEModule.load_from_checkpoint(path)  # the default network does not fit, and the message says why
    loaded = VAEModule.load_from_checkpoint(path, network=MLPVAE(hidden_dims=[32], latent_dim=3), likelihood=Bernoulli())
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert loaded.hparams.kl_weight == 0.5


def test_forward_gives_the_likelihoods_mean_image_of_one_draw_per_mc_sample() -> None:
    torch.manual_seed(0)
    module = VAEModule(mc_samples=3)
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    x_hat, mu, logvar = module(x)
    assert x_hat.shape == (3, 8, 1, 28, 28)
    torch.manual_seed(1)  # the same draws of z, by hand
    logits = module.network.decode(reparameterize(mu, logvar, samples=3))
    assert torch.equal(x_hat, torch.sigmoid(logits))
    # the report's RL: the squared error summed over pixels, averaged over the draws and the images
    rl = (x_hat - x).pow(2).flatten(-3).sum(-1).mean()
    assert torch.isclose(module.likelihood.reconstruction_loss(x, logits), rl)


@pytest.mark.parametrize(("kwargs", "message"), [({"mc_samples": 0}, "mc_samples"), ({"noise_std": -1.0}, "noise_std"), ({"kl_warmup": -1}, "kl_warmup")])
def test_bad_module_settings_are_refused_with_the_option_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAEModule(**kwargs)


def test_a_network_without_the_interface_is_refused_naming_what_it_lacks() -> None:
    with pytest.raises(TypeError, match="decode"):
        VAEModule(network=torch.nn.Linear(2, 2))
