"""The test-time evaluation (callbacks/evaluation.py): the IWAE bound, PSNR/SSIM, denoising, the
`test` subcommand and its evaluation section, and the linear autoencoder against PCA on real
MNIST. The likelihoods themselves are tested in test_likelihoods.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers.runs import conf_args
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from vae_lightning.callbacks.evaluation import iwae_bounds, reconstruction_metrics
from vae_lightning.cli import main
from vae_lightning.data import ImageDataModule
from vae_lightning.latent import reparameterize
from vae_lightning.losses import kl_divergence, reconstruction_loss
from vae_lightning.module import VAEModule
from vae_lightning.runs import read_events

SHAPE = (1, 28, 28)
D = 784


@pytest.fixture(scope="module")
def trained(trained_run: Path) -> VAEModule:
    return VAEModule.load_from_checkpoint(trained_run / "checkpoints" / "last.ckpt", map_location="cpu").eval()


@pytest.fixture(scope="module")
def test_batch(mnist_dir: Path) -> torch.Tensor:
    datamodule = ImageDataModule(data_dir=str(mnist_dir), download=False)
    datamodule.setup("test")
    return next(iter(datamodule.test_dataloader()))[0][:64]


def test_iwae_bound_is_above_the_elbo_and_tightens_with_k(trained: VAEModule, test_batch: torch.Tensor) -> None:
    network, log_likelihood = trained.network, trained.likelihood.log_likelihood
    with torch.no_grad():
        mu, logvar = network.encode(test_batch)
        logits = network.decode(reparameterize(mu, logvar, 200))
        elbo = log_likelihood(test_batch, logits).mean() - kl_divergence(mu, logvar)
    generator = torch.Generator().manual_seed(0)
    bounds = iwae_bounds(trained, test_batch, [1, 10, 100], chunk_size=16, generator=generator)
    l1, l10, l100 = (bounds[k].mean() for k in (1, 10, 100))
    assert abs(l1 - elbo) < 1.0  # L_1 is a one-sample estimate of the ELBO
    assert elbo + 0.1 < l10 < l100
    # chunking is only a memory setting: one chunk gives the same bound up to sampling noise
    unchunked = iwae_bounds(trained, test_batch, [100], chunk_size=100, generator=generator)
    assert abs(unchunked[100].mean() - l100) < 0.3


def test_iwae_refuses_a_sample_count_below_one(trained: VAEModule, test_batch: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="iwae_samples"):
        iwae_bounds(trained, test_batch, [0, 5])


def test_psnr_ssim_and_mse_of_identical_and_of_shifted_images() -> None:
    torch.manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(16, *SHAPE)
    identical = reconstruction_metrics("test/")
    identical.update(x.clone(), x)
    scores = identical.compute()
    assert torch.isinf(scores["test/psnr"]) and scores["test/psnr"] > 0
    assert torch.isclose(scores["test/ssim"], torch.tensor(1.0))
    assert scores["test/mse"] == 0
    shifted = reconstruction_metrics("test/")
    shifted.update(x + 0.1, x)
    scores = shifted.compute()
    assert torch.isclose(scores["test/mse"], torch.tensor(0.01), rtol=1e-3)
    assert torch.isclose(scores["test/psnr"], torch.tensor(20.0), rtol=1e-3)  # 10 log10(1 / 0.01)
    assert scores["test/ssim"] < 1


def test_noise_std_corrupts_the_encoder_input_but_scores_the_clean_image(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = VAEModule(noise_std=0.5)
    seen: dict[str, torch.Tensor] = {}
    module.network.encoder[0].register_forward_hook(lambda m, args, out: seen.update(input=args[0]))
    module.network.mu.register_forward_hook(lambda m, args, out: seen.update(mu=out.detach()))
    module.network.logvar.register_forward_hook(lambda m, args, out: seen.update(logvar=out.detach()))
    decode = module.network.decode
    module.network.decode = lambda z: seen.setdefault("logits", decode(z))  # type: ignore[method-assign]
    x = torch.rand(32, *SHAPE)
    trainer = Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(x, torch.zeros(32)), batch_size=32))
    noise = seen["input"].view(32, *SHAPE) - x
    assert 0.45 < noise.std() < 0.55 and abs(noise.mean()) < 0.01
    rl = reconstruction_loss(x, torch.sigmoid(seen["logits"].detach()))  # against the clean x
    assert torch.isclose(trainer.callback_metrics["train/rl_epoch"], rl)  # one step: epoch = step
    kl = kl_divergence(seen["mu"], seen["logvar"])
    assert torch.isclose(trainer.callback_metrics["train/loss_epoch"], rl + kl)


def test_test_subcommand_reports_likelihood_reconstruction_and_denoising(
    trained_run: Path, cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cli = main(
        [
            "test",
            *cli_args,
            f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
            "--evaluation.iwae_samples=[1, 20]",
            "--trainer.limit_test_batches=16",
        ]
    )
    metrics = cli.trainer.callback_metrics
    names = ["loss", "rl", "kl", "iwae_k1", "iwae_k20", "psnr", "ssim", "mse", "denoise_psnr", "noisy_psnr"]
    printed = capsys.readouterr().out
    for name in names:
        assert f"test/{name}" in metrics and f"test/{name}" in printed, name
    (log_dir,) = (tmp_path / "lightning_logs").iterdir()
    logged = set(read_events(log_dir).Tags()["scalars"])
    assert {f"test/{name}" for name in names} <= logged
    # for mse, L_1 estimates -(RL + KL) - D/2 log(pi): the same ELBO in nats of a density
    assert abs(metrics["test/iwae_k1"] + metrics["test/loss"] + D / 2 * math.log(math.pi)) < 1.5
    assert metrics["test/iwae_k20"] > metrics["test/iwae_k1"]
    assert 10 < metrics["test/psnr"] < 40 and 0.2 < metrics["test/ssim"] < 1
    assert torch.isclose(metrics["test/psnr"], -10 * torch.log10(metrics["test/mse"]), rtol=1e-4)
    # the model maps noisy digits back towards clean ones: better than the noisy input itself
    assert metrics["test/denoise_psnr"] > metrics["test/noisy_psnr"] + 3


def test_the_evaluation_section_turns_bounds_and_denoising_off(trained_run: Path, cli_args: list[str]) -> None:
    cli = main(
        [
            "test",
            *cli_args,
            f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
            "--evaluation.iwae_samples=[]",
            "--evaluation.denoise_std=0",
            "--trainer.limit_test_batches=2",
        ]
    )
    logged = set(cli.trainer.callback_metrics)
    assert {"test/loss", "test/psnr"} <= logged
    assert not any(name.startswith(("test/iwae", "test/denoise", "test/noisy")) for name in logged)


def test_linear_autoencoder_decoder_spans_the_top_principal_subspace(cli_args: list[str], tmp_path: Path) -> None:
    cli = main(["fit", *cli_args, *conf_args("linear_autoencoder")])
    latent_dim = cli.model.network.latent_dim
    assert latent_dim == 2
    train_images = cli.datamodule.splits["train"][0][:20000].flatten(1).float() / 255
    centred = (train_images - train_images.mean(dim=0)).double()
    _, eigenvectors = torch.linalg.eigh(centred.T @ centred)  # exact PCA; eigenvalues ascending
    principal = eigenvectors[:, -latent_dim:].float()  # (D, d), orthonormal
    network = cli.model.network
    with torch.no_grad():  # columns of the decoder's linear map z -> x_hat, less its offset
        columns = (network.decode(torch.eye(latent_dim)) - network.decode(torch.zeros(1, latent_dim))).flatten(1).T
    spanned, _ = torch.linalg.qr(columns)
    cosines = torch.linalg.svdvals(spanned.T @ principal).clamp(max=1.0)
    angles = torch.rad2deg(torch.acos(cosines))
    assert angles.max() < 5, f"principal angles {angles.tolist()} degrees"
    assert cli.trainer.callback_metrics["train/kl_epoch"] == 0
