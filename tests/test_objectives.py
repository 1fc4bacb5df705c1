"""The training objectives (vae_lightning/objectives.py): the ELBO and the IWAE bound of Burda et
al. 2015, which is the ELBO at K = 1 and tighter on average at K > 1; IWAE trains, tests, predicts
and resumes through the CLI, and a K below 1 is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.runs import in_process
from helpers.variants import BATCHES, VariantRun

from vae_lightning.likelihoods import Bernoulli
from vae_lightning.models import MLPVAE
from vae_lightning.module import VAEModule
from vae_lightning.objectives import ELBO, IWAE
from vae_lightning.priors import MixtureOfGaussians


def _module(objective, prior=None, seed: int = 0) -> VAEModule:
    torch.manual_seed(seed)  # the same weights for every objective
    return VAEModule(network=MLPVAE(hidden_dims=[64], latent_dim=4), likelihood=Bernoulli(), prior=prior, objective=objective)


def _binary_images(count: int = 32) -> torch.Tensor:
    return (torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.2).float()


def _terms(module: VAEModule, x: torch.Tensor, seed: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # the same draws of z
    return module.loss_terms(x)


def test_iwae_with_one_sample_is_the_elbo() -> None:
    x = _binary_images()
    # a prior without a closed-form KL: both objectives estimate KL from the same single draw
    elbo, iwae = _module(ELBO(), MixtureOfGaussians(3)), _module(IWAE(k=1), MixtureOfGaussians(3))
    elbo_terms, iwae_terms = _terms(elbo, x), _terms(iwae, x)
    for beta in (1.0, 0.3):
        assert torch.allclose(iwae.objective.training_loss(iwae_terms, beta), elbo.objective.training_loss(elbo_terms, beta), rtol=1e-5)
    assert torch.allclose(iwae_terms["iwae_loss"], elbo_terms["loss"], rtol=1e-5)
    assert torch.allclose(iwae_terms["loss"], elbo_terms["loss"])


@pytest.mark.parametrize("prior", [None, MixtureOfGaussians(3)], ids=["standard_normal", "mixture"])
def test_the_iwae_bound_lies_below_the_negative_elbo_on_average_and_tightens_with_k(prior) -> None:
    module, x = _module(IWAE(k=50), prior), _binary_images()
    terms = _terms(module, x)
    # {stage}/loss is the negative ELBO of the same 50 draws; -L_50 is below it
    assert terms["iwae_loss"] < terms["loss"] - 0.5
    losses = {k: IWAE(k).training_loss({"log_px": terms["log_px"][:k], "log_ratio": terms["log_ratio"][:k]}, 1.0) for k in (1, 5, 50)}
    assert losses[50] < losses[5] < losses[1]


def test_the_logged_loss_is_the_negative_elbo_whichever_objective_trains() -> None:
    x = _binary_images(256)
    elbo, iwae = _module(ELBO()), _module(IWAE(k=10))
    assert elbo.hparams.mc_samples == 1
    repeated = torch.stack([_terms(elbo, x, seed)["loss"] for seed in range(10)]).mean()
    # the same weights: the ELBO's 10 single-draw estimates and IWAE's 10-draw estimate agree
    assert float(_terms(iwae, x)["loss"]) == pytest.approx(float(repeated), rel=2e-3)
    assert set(iwae.objective.logged_terms) == {"loss", "rl", "kl", "iwae_loss"}


def test_iwae_trains_on_more_draws_and_its_gradient_reaches_the_encoder() -> None:
    module, x = _module(IWAE(k=5)), _binary_images()
    loss = module.objective.training_loss(_terms(module, x), 1.0)
    loss.backward()
    assert module.network.encoder[0].weight.grad.abs().sum() > 0
    assert _terms(module, x)["log_px"].shape == (5, 32)


def test_iwae_with_fewer_than_one_sample_is_refused_naming_the_setting(
    cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, err = in_process(["fit", *cli_args, "--model.objective=vae_lightning.objectives.IWAE", "--model.objective.init_args.k=0"], capsys)
    assert status == 2 and "model.objective.init_args.k (IWAE's number of importance samples K) must be at least 1, got 0" in err
    assert not (tmp_path / "lightning_logs").exists()  # refused before any run folder is written


def test_iwae_trains_tests_predicts_and_resumes_through_the_cli(mnist_dir: Path, tmp_path: Path) -> None:
    run = VariantRun(mnist_dir, tmp_path, "iwae.yaml")
    assert type(run.model.objective).__name__ == "IWAE" and run.model.objective.k == 5
    train_loss = run.values("train/loss_step")
    assert train_loss[-1] < train_loss[0] - 10  # the negative ELBO drops while the bound is trained on
    val_loss, val_iwae = run.values("val/loss"), run.values("val/iwae_loss")
    assert val_loss[-1] < val_loss[0]
    assert all(bound < loss for bound, loss in zip(val_iwae, val_loss))
    assert run.test_metrics["test/iwae_loss"] < run.test_metrics["test/loss"]
    assert run.test_metrics["test/iwae_k20"] >= run.test_metrics["test/iwae_k1"]
    assert (run.predictions / "samples.png").is_file()
    assert run.resumed_steps == 3 * BATCHES
    assert run.hyper_parameters(run.resumed_checkpoint)["objective"] == {"class_path": "vae_lightning.objectives.IWAE", "init_args": {"k": 5}}
