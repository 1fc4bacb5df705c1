"""Test-time measures: likelihoods against torch.distributions, the IWAE bound, PSNR/SSIM,
denoising, the `test` subcommand, and the linear autoencoder against PCA on real MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.distributions import Bernoulli, Normal
from torch.utils.data import DataLoader, TensorDataset

from tb import read_events
from vae_lightning.cli import main
from vae_lightning.evaluation import iwae_bounds, reconstruction_metrics, update_image_metrics
from vae_lightning.likelihoods import log_likelihood, reconstruction_term
from vae_lightning.losses import kl_divergence, reconstruction_loss
from vae_lightning.module import VAEModule

D = 784


@pytest.fixture(scope="module")
def trained(trained_run: Path) -> VAEModule:
    return VAEModule.load_from_checkpoint(trained_run / "checkpoints" / "last.ckpt", map_location="cpu").eval()


@pytest.fixture(scope="module")
def test_batch(mnist_dir: Path) -> torch.Tensor:
    from vae_lightning.data import MNISTDataModule

    datamodule = MNISTDataModule(data_dir=str(mnist_dir))
    datamodule.setup("test")
    return next(iter(datamodule.test_dataloader()))[0][:64]


def test_gaussian_and_bernoulli_likelihoods_match_torch_distributions() -> None:
    torch.manual_seed(0)
    x = torch.rand(5, D)
    logits = torch.randn(3, 5, D)  # 3 samples of z
    mean = torch.sigmoid(logits)
    gaussian = log_likelihood(x, logits, "gaussian", log_std=math.log(0.2))
    assert torch.allclose(gaussian, Normal(mean, 0.2).log_prob(x).sum(-1), rtol=1e-5)
    binary = torch.bernoulli(x)
    bernoulli = log_likelihood(binary, logits, "bernoulli")
    assert bernoulli.shape == (3, 5)
    assert torch.allclose(bernoulli, Bernoulli(logits=logits).log_prob(binary).sum(-1), rtol=1e-5)


def test_mse_is_the_log_density_of_a_gaussian_with_variance_one_half() -> None:
    torch.manual_seed(0)
    x, logits = torch.rand(4, D), torch.randn(4, D)
    x_hat = torch.sigmoid(logits)
    expected = Normal(x_hat, math.sqrt(0.5)).log_prob(x).sum(-1)
    assert torch.allclose(log_likelihood(x, logits, "mse"), expected, rtol=1e-5)
    # ... whose negative is the report's squared error plus D/2 log(pi) = 448.7 nats
    squared_error = (x - x_hat).pow(2).sum(-1)
    assert torch.allclose(-expected, squared_error + D / 2 * math.log(math.pi), rtol=1e-5)
    assert torch.isclose(reconstruction_term(x, logits, "mse"), reconstruction_loss(x, x_hat))


def test_bernoulli_likelihood_stays_finite_for_saturated_logits() -> None:
    x = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[200.0, -200.0]])
    assert torch.isclose(log_likelihood(x, logits, "bernoulli"), torch.tensor([0.0]))
    assert torch.isclose(log_likelihood(1 - x, logits, "bernoulli"), torch.tensor([-400.0]))


def test_iwae_bound_is_above_the_elbo_and_tightens_with_k(trained: VAEModule, test_batch: torch.Tensor) -> None:
    model = trained.model
    with torch.no_grad():
        mu, logvar = model.encode(test_batch)
        logits = model.decode_logits(model.reparameterize(mu, logvar, 200))
        elbo = trained.log_likelihood(test_batch, logits).mean() - kl_divergence(mu, logvar)
    generator = torch.Generator().manual_seed(0)
    bounds = iwae_bounds(model, test_batch, [1, 10, 100], trained.log_likelihood, chunk_size=16, generator=generator)
    l1, l10, l100 = (bounds[k].mean() for k in (1, 10, 100))
    assert abs(l1 - elbo) < 1.0  # L_1 is a one-sample estimate of the ELBO
    assert elbo + 0.1 < l10 < l100
    # chunking is only a memory setting: one chunk gives the same bound up to sampling noise
    unchunked = iwae_bounds(model, test_batch, [100], trained.log_likelihood, chunk_size=100, generator=generator)
    assert abs(unchunked[100].mean() - l100) < 0.3


def test_iwae_refuses_a_sample_count_below_one(trained: VAEModule, test_batch: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="iwae_samples"):
        iwae_bounds(trained.model, test_batch, [0, 5], trained.log_likelihood)


def test_psnr_ssim_and_mse_of_identical_and_of_shifted_images() -> None:
    torch.manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(16, D)
    identical = reconstruction_metrics("test/")
    update_image_metrics(identical, x.clone(), x)
    scores = identical.compute()
    assert torch.isinf(scores["test/psnr"]) and scores["test/psnr"] > 0
    assert torch.isclose(scores["test/ssim"], torch.tensor(1.0))
    assert scores["test/mse"] == 0
    shifted = reconstruction_metrics("test/")
    update_image_metrics(shifted, x + 0.1, x)
    scores = shifted.compute()
    assert torch.isclose(scores["test/mse"], torch.tensor(0.01), rtol=1e-3)
    assert torch.isclose(scores["test/psnr"], torch.tensor(20.0), rtol=1e-3)  # 10 log10(1 / 0.01)
    assert scores["test/ssim"] < 1


def test_noise_std_corrupts_the_encoder_input_but_scores_the_clean_image(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = VAEModule(noise_std=0.5)
    seen: dict[str, torch.Tensor] = {}
    module.model.encoder.register_forward_hook(lambda m, args, out: seen.update(input=args[0], mu=out[0], logvar=out[1]))
    module.model.decoder.register_forward_hook(lambda m, args, out: seen.update(logits=out.detach()))
    x = torch.rand(32, D)
    trainer = Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(x, torch.zeros(32)), batch_size=32))
    noise = seen["input"] - x
    assert 0.45 < noise.std() < 0.55 and abs(noise.mean()) < 0.01
    rl = reconstruction_loss(x, torch.sigmoid(seen["logits"]))  # against the clean x
    assert torch.isclose(trainer.callback_metrics["train/rl_epoch"], rl)  # one step: epoch = step
    kl = kl_divergence(seen["mu"].detach(), seen["logvar"].detach())
    assert torch.isclose(trainer.callback_metrics["train/loss_epoch"], rl + kl)


def test_a_linear_bernoulli_model_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="linear.*sigmoid"):
        VAEModule(linear=True, likelihood="bernoulli")


def test_test_subcommand_reports_likelihood_reconstruction_and_denoising(
    trained_run: Path, cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cli = main(
        [
            "test",
            *cli_args,
            f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
            "--model.iwae_samples=[1, 20]",
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


def test_linear_autoencoder_decoder_spans_the_top_principal_subspace(cli_args: list[str], tmp_path: Path) -> None:
    latent_dim = 2
    cli = main(
        [
            "fit",
            *cli_args,
            "--model.linear=true",
            "--model.deterministic=true",
            f"--model.latent_dim={latent_dim}",
            "--model.hidden_dims=[256]",
            "--model.optimizer=torch.optim.Adam",
            "--model.optimizer.lr=0.001",
            "--data.batch_size=1000",
            "--trainer.gradient_clip_val=null",
            "--trainer.max_epochs=4",
            "--trainer.limit_train_batches=60",
            "--trainer.limit_val_batches=0",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
        ]
    )
    train_images = cli.datamodule.splits["train"][0][:20000]
    _, _, principal = torch.pca_lowrank(train_images, q=latent_dim + 4, center=True, niter=4)
    principal = principal[:, :latent_dim]  # (D, d), orthonormal
    decoder = cli.model.model
    with torch.no_grad():  # columns of the decoder's linear map z -> x_hat, less its offset
        columns = (decoder.decode(torch.eye(latent_dim)) - decoder.decode(torch.zeros(1, latent_dim))).T
    spanned, _ = torch.linalg.qr(columns)
    cosines = torch.linalg.svdvals(spanned.T @ principal).clamp(max=1.0)
    angles = torch.rad2deg(torch.acos(cosines))
    assert angles.max() < 5, f"principal angles {angles.tolist()} degrees"
    assert cli.trainer.callback_metrics["train/kl_epoch"] == 0
