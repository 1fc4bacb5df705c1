"""The priors (vae_lightning/priors.py): N(0, I) with its closed-form KL, the mixture of Gaussians
and the VampPrior with Monte-Carlo KLs that agree with it where they coincide, and the places that
draw from or score the prior (generate, the IWAE bounds, the diagnostics) using the configured one;
each trains, tests, predicts and resumes through the CLI, and checkpoints without a prior load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.runs import CONFIGS, in_process
from helpers.variants import BATCHES, VariantRun
from lightning.pytorch import Trainer
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence
from torch.utils.data import DataLoader, TensorDataset

from vae_lightning.callbacks.evaluation import iwae_bounds
from vae_lightning.cli import main
from vae_lightning.latent import reparameterize
from vae_lightning.likelihoods import Bernoulli
from vae_lightning.models import MLPVAE
from vae_lightning.module import VAEModule
from vae_lightning.objectives import ELBO
from vae_lightning.priors import MixtureOfGaussians, StandardNormal, VampPrior
from vae_lightning.runtime.errors import CheckpointError


def _posteriors(count: int = 64, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, d, generator=generator), 0.5 * torch.randn(count, d, generator=generator) - 0.5


def _bound(prior, d: int = 4):
    prior.bind(MLPVAE(hidden_dims=[32], latent_dim=d))
    return prior


def _as_standard_normal(mixture: MixtureOfGaussians) -> MixtureOfGaussians:
    with torch.no_grad():
        mixture.means.zero_()
        mixture.logvars.zero_()
    return mixture


def _mixture_distribution(means, logvars, log_weights) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=log_weights), Independent(Normal(means, torch.exp(0.5 * logvars)), 1))


def test_the_standard_normals_kl_is_the_closed_form() -> None:
    mu, logvar = _posteriors()
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(dim=1).mean()
    prior = _bound(StandardNormal())
    assert torch.allclose(prior.kl_divergence(mu, logvar, reparameterize(mu, logvar)), expected)
    assert torch.allclose(prior.kl_divergence_per_dim(mu, logvar).sum(), expected)
    z = torch.randn(3, 5, 4)
    assert torch.allclose(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(dim=-1))


def test_a_one_component_mixture_at_the_standard_normal_gives_its_kl_by_monte_carlo() -> None:
    mu, logvar = _posteriors()
    mixture = _as_standard_normal(_bound(MixtureOfGaussians(components=1)))
    analytic = _bound(StandardNormal()).kl_divergence(mu, logvar, None)
    torch.manual_seed(0)
    estimate = mixture.kl_divergence(mu, logvar, reparameterize(mu, logvar, 4000))
    assert float(estimate) == pytest.approx(float(analytic), rel=0.01)
    per_dim = torch.stack([mixture.kl_divergence_per_dim(mu.repeat(200, 1), logvar.repeat(200, 1)) for _ in range(5)]).mean(dim=0)
    assert torch.allclose(per_dim, _bound(StandardNormal()).kl_divergence_per_dim(mu, logvar), atol=0.03)


def test_the_mixtures_log_density_is_that_of_torch_distributions() -> None:
    mixture = _bound(MixtureOfGaussians(components=5, init_spread=2.0))
    with torch.no_grad():
        mixture.logvars.normal_(0.0, 0.5)
        mixture.weight_logits.normal_()
    z = 3 * torch.randn(7, 11, 4)
    assert torch.allclose(mixture.log_prob(z), _mixture_distribution(*mixture.components()).log_prob(z), atol=1e-4)


def test_the_vampprior_is_the_mean_of_the_encoders_posteriors_at_its_pseudo_inputs() -> None:
    network = MLPVAE(hidden_dims=[32], latent_dim=3)
    prior = VampPrior(components=6)
    prior.bind(network)
    pseudo_inputs = prior.pseudo_inputs()
    assert pseudo_inputs.shape == (6, 1, 28, 28) and 0 < pseudo_inputs.min() and pseudo_inputs.max() < 1
    means, logvars = network.encode(pseudo_inputs)
    z = torch.randn(5, 9, 3)
    expected = _mixture_distribution(means, logvars, torch.zeros(6)).log_prob(z)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-4)
    assert "network" not in dict(prior.named_children())  # the encoder's weights are the network's only


def test_mixture_draws_follow_the_weights_and_repeat_with_the_seed() -> None:
    mixture = _bound(MixtureOfGaussians(components=2), d=2)
    with torch.no_grad():
        mixture.means.copy_(torch.tensor([[-10.0, 0.0], [10.0, 0.0]]))
        mixture.logvars.fill_(-4.0)
        mixture.weight_logits.copy_(torch.log(torch.tensor([0.25, 0.75])))
    draws = mixture.sample(4000, torch.Generator().manual_seed(3))
    assert float((draws[:, 0] > 0).float().mean()) == pytest.approx(0.75, abs=0.03)
    assert (draws[:, 0].abs() - 10).abs().max() < 1.0
    assert torch.equal(draws, mixture.sample(4000, torch.Generator().manual_seed(3)))


def test_generate_and_the_iwae_bound_use_the_configured_prior() -> None:
    torch.manual_seed(0)
    standard = VAEModule(network=MLPVAE(hidden_dims=[32], latent_dim=2), likelihood=Bernoulli())
    mixture = VAEModule(network=MLPVAE(hidden_dims=[32], latent_dim=2), likelihood=Bernoulli(), prior=MixtureOfGaussians(1))
    mixture.network.load_state_dict(standard.network.state_dict())
    _as_standard_normal(mixture.prior)
    x = (torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    bound = {name: iwae_bounds(model, x, [10], generator=torch.Generator().manual_seed(2))[10]
             for name, model in [("standard", standard), ("mixture", mixture)]}
    assert torch.allclose(bound["standard"], bound["mixture"], atol=1e-4)  # the same prior, written twice
    with torch.no_grad():
        mixture.prior.means.fill_(6.0)  # a prior far from the posteriors: a looser bound, other samples
    assert (iwae_bounds(mixture, x, [10], generator=torch.Generator().manual_seed(2))[10] < bound["standard"] - 5).all()
    draws = mixture.prior.sample(8, torch.Generator().manual_seed(4))
    assert (draws > 3).all()
    assert torch.equal(mixture.generate(8, torch.Generator().manual_seed(4)), mixture.decode(draws))


def test_a_vampprior_whose_pseudo_inputs_do_not_fit_the_images_is_refused_naming_both_settings(
    cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, err = in_process(["fit", *cli_args, "--model.prior=vae_lightning.priors.VampPrior", "--model.prior.init_args.image_shape=[1, 32, 32]"], capsys)
    assert status == 2 and "model.prior.init_args.image_shape [1, 32, 32] (VampPrior's pseudo-inputs) does not match" in err
    assert "the network's image shape [1, 28, 28] (model.network.init_args.image_shape, set from the data)" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_a_vampprior_with_a_conditional_network_is_refused_naming_both_settings(
    cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overlays = ["--config", str(CONFIGS / "conditional.yaml"), "--config", str(CONFIGS / "vampprior.yaml")]
    status, err = in_process(["fit", *cli_args, *overlays], capsys)
    assert status == 2 and "a VampPrior's pseudo-inputs are images without a class" in err
    assert "model.network ConditionalMLPVAE conditions its encoder on one (num_classes 10)" in err
    assert "StandardNormal or MixtureOfGaussians" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_a_checkpoint_without_prior_or_objective_settings_loads_as_the_standard_vae(cli_args: list[str], tmp_path: Path) -> None:
    fit = main(["fit", *cli_args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=1",
                "--progress_bar.refresh_rate=0"])
    saved = torch.load(fit.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=True)
    for name in ("prior", "objective"):  # as written before the prior and the objective were settings
        del saved["hyper_parameters"][name]
    assert not any(key.startswith(("prior.", "objective.")) for key in saved["state_dict"])
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    model = VAEModule.load_from_checkpoint(old, map_location="cpu")
    assert isinstance(model.prior, StandardNormal) and isinstance(model.objective, ELBO)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][name]), name
    test = main(["test", *cli_args, f"--ckpt_path={old}", "--trainer.limit_test_batches=1", "--evaluation.iwae_samples=[1]",
                 "--evaluation.feature_network=null"])
    assert float(test.trainer.callback_metrics["test/loss"]) < 300


@pytest.mark.parametrize("overlay", ["vampprior.yaml", pytest.param("mog.yaml", marks=pytest.mark.slow)])
def test_each_prior_trains_tests_predicts_and_resumes_through_the_cli(overlay: str, mnist_dir: Path, tmp_path: Path) -> None:
    # a smaller VampPrior than the paper's 500 pseudo-inputs keeps the run short
    run = VariantRun(mnist_dir, tmp_path, overlay, *(["--model.prior.init_args.components=50"] if overlay == "vampprior.yaml" else []))
    prior = run.model.prior
    train_loss = run.values("train/loss_step")
    assert train_loss[-1] < train_loss[0] - 10
    val_loss = run.values("val/loss")
    assert val_loss[-1] < val_loss[0]
    assert {f"latent/kl_dim{i}" for i in (1, 2)} <= set(run.scalars.Tags()["scalars"])
    assert "latent_space/manifold" in run.scalars.Tags()["images"]
    assert run.test_metrics["test/iwae_k20"] >= run.test_metrics["test/iwae_k1"]
    assert (run.predictions / "samples.png").is_file()
    assert run.resumed_steps == 3 * BATCHES
    trained = torch.load(run.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert any(key.startswith("prior.") for key in trained), "the prior's learned parameters are saved with the model"
    assert run.hyper_parameters(run.resumed_checkpoint)["prior"]["class_path"] == f"vae_lightning.priors.{type(prior).__name__}"


def test_a_module_built_in_python_saves_its_learned_prior_and_names_it_for_the_load(tmp_path: Path) -> None:
    module = VAEModule(network=MLPVAE(hidden_dims=[16], latent_dim=3), likelihood=Bernoulli(), prior=MixtureOfGaussians(4))
    trainer = Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      accelerator="cpu", default_root_dir=tmp_path, enable_checkpointing=False)
    images = (torch.rand(16, 1, 28, 28) < 0.2).float()
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(images, torch.zeros(16)), batch_size=8))
    path = tmp_path / "module.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"pass them again, load_from_checkpoint\(path, network=\.\.\., prior=\.\.\.\)"):
        VAEModule.load_from_checkpoint(path, network=MLPVAE(hidden_dims=[16], latent_dim=3))
    loaded = VAEModule.load_from_checkpoint(path, network=MLPVAE(hidden_dims=[16], latent_dim=3), prior=MixtureOfGaussians(4))
    assert torch.equal(loaded.prior.means, module.prior.means)
    assert not torch.equal(loaded.prior.weight_logits, torch.zeros(4))  # the weights were learned, not the initial ones
