"""Gradient and latent diagnostics, and the KL weight, checked on short real MNIST runs of the CLI."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from torch.nn.utils import get_total_norm

from vae_lightning.cli import main
from vae_lightning.latent import reparameterize
from vae_lightning.losses import kl_divergence, reconstruction_loss
from vae_lightning.module import VAEModule
from vae_lightning.runs import read_events, scalar_values


class GradientRecorder(Callback):
    """Copies, per optimizer step, the gradients Lightning has before it clips them."""

    def __init__(self) -> None:
        self.grads: dict[int, list[torch.Tensor]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.grads[trainer.global_step] = [p.grad.detach().clone() for p in params]


def fit(cli_args: list[str], *options: str, steps: int = 3, callbacks: tuple[Callback, ...] = ()) -> Path:
    """A one-epoch run of ``steps`` training batches, every step logged, without validation;
    returns its log folder."""
    assert steps > 1, "the CLI reads limit_train_batches=1 as 1.0, the whole epoch"
    cli = main(
        [
            "fit",
            *cli_args,
            "--trainer.max_epochs=1",
            f"--trainer.limit_train_batches={steps}",
            "--trainer.limit_val_batches=0",  # no validation: these tests look at training only
            "--trainer.log_every_n_steps=1",
            *options,
        ],
        trainer_defaults={"callbacks": list(callbacks)},
    )
    return Path(cli.trainer.logger.log_dir)


def test_norms_before_and_after_clipping_by_value_are_those_of_the_gradients(cli_args: list[str]) -> None:
    recorder = GradientRecorder()
    clip = 0.01
    log_dir = fit(cli_args, f"--trainer.gradient_clip_val={clip}", "--trainer.gradient_clip_algorithm=value", callbacks=(recorder,))
    events = read_events(log_dir)

    before = {e.step: e.value for e in events.Scalars("grad/norm_before_clip")}
    after = {e.step: e.value for e in events.Scalars("grad/norm_after_clip")}
    elements = {e.step: e.value for e in events.Scalars("grad/clipped_element_fraction")}
    assert sorted(before) == sorted(recorder.grads) == [0, 1, 2]
    for step, grads in recorder.grads.items():
        assert before[step] == pytest.approx(get_total_norm(grads).item(), rel=1e-6)
        assert after[step] == pytest.approx(get_total_norm([g.clamp(-clip, clip) for g in grads]).item(), rel=1e-6)
        beyond = sum(int((g.abs() > clip).sum()) for g in grads) / sum(g.numel() for g in grads)
        assert elements[step] == pytest.approx(beyond, rel=1e-6)
        assert 0 < beyond < 1
        assert after[step] < before[step]
    assert scalar_values(events, "grad/clipped_step_fraction") == [1.0, 1.0, 1.0]

    layers = {tag.removeprefix("grad/update_ratio/") for tag in events.Tags()["scalars"] if tag.startswith("grad/update_ratio/")}
    assert {"network.encoder.0", "network.mu", "network.logvar", "network.decoder.2"} <= layers
    for layer in layers:
        assert all(0 < ratio < 1 for ratio in scalar_values(events, f"grad/update_ratio/{layer}")), layer


@pytest.mark.parametrize("algorithm", ["value", "norm"])
@pytest.mark.parametrize(("clip", "fraction"), [(1e6, 0.0), (1e-6, 1.0)], ids=["huge", "tiny"])
def test_every_step_is_clipped_with_a_tiny_clip_value_and_none_with_a_huge_one(
    cli_args: list[str], algorithm: str, clip: float, fraction: float
) -> None:
    events = read_events(
        fit(cli_args, f"--trainer.gradient_clip_val={clip}", f"--trainer.gradient_clip_algorithm={algorithm}", steps=2)
    )
    assert scalar_values(events, "grad/clipped_step_fraction") == [fraction, fraction]
    before, after = scalar_values(events, "grad/norm_before_clip"), scalar_values(events, "grad/norm_after_clip")
    if fraction == 0.0:
        assert after == before
    elif algorithm == "norm":
        assert after == pytest.approx([clip, clip], rel=1e-3)  # rescaled onto the clip norm
    has_element_fraction = "grad/clipped_element_fraction" in events.Tags()["scalars"]
    assert has_element_fraction == (algorithm == "value")


def test_kl_weight_warms_up_linearly_over_the_given_steps(cli_args: list[str]) -> None:
    events = read_events(fit(cli_args, "--model.kl_weight=2.0", "--model.kl_warmup=4", steps=6))
    weights = {e.step: e.value for e in events.Scalars("train/kl_weight")}
    assert weights == pytest.approx({0: 0.0, 1: 0.5, 2: 1.0, 3: 1.5, 4: 2.0, 5: 2.0})


def test_kl_weight_warms_up_per_epoch_with_the_epoch_interval(cli_args: list[str]) -> None:
    cli = main(
        [
            "fit",
            *cli_args,
            "--model.kl_warmup=2",
            "--model.kl_warmup_interval=epoch",
            "--trainer.max_epochs=3",
            "--trainer.limit_train_batches=2",  # not 1: the CLI reads 1 as 1.0, all batches
            "--trainer.limit_val_batches=0",
            "--trainer.log_every_n_steps=1",
        ]
    )
    weights = scalar_values(read_events(Path(cli.trainer.logger.log_dir)), "train/kl_weight")
    assert weights == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]  # two steps per epoch


class StepRecorder(GradientRecorder):
    """Also keeps what the first step starts from: its batch, the weights and the random state."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.batch = batch
            self.weights = {k: v.clone() for k, v in pl_module.network.state_dict().items()}
            self.rng_state = torch.get_rng_state()


def test_kl_weight_zero_leaves_the_kl_out_of_the_gradient(cli_args: list[str]) -> None:
    recorder = StepRecorder()
    fit(cli_args, "--model.kl_weight=0", "--trainer.gradient_clip_val=0", steps=2, callbacks=(recorder,))

    network = VAEModule().network
    network.load_state_dict(recorder.weights)
    x = recorder.batch[0]
    torch.set_rng_state(recorder.rng_state)  # the same noise eps as the run's first step
    mu, logvar = network.encode(x)
    logits = network.decode(reparameterize(mu, logvar))
    rl, kl = reconstruction_loss(x, torch.sigmoid(logits)), kl_divergence(mu, logvar)
    rl_grads = torch.autograd.grad(rl, list(network.parameters()), retain_graph=True)
    encoder = [*network.encoder.parameters(), *network.mu.parameters(), *network.logvar.parameters()]
    kl_grads = torch.autograd.grad(kl, encoder)

    assert get_total_norm(kl_grads) > 1e-2  # the KL does pull on the encoder, so leaving it in would show
    for logged, expected in zip(recorder.grads[0], rl_grads):
        torch.testing.assert_close(logged, expected, rtol=1e-4, atol=1e-6)


def test_a_negative_kl_weight_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="kl_weight"):
        VAEModule(kl_weight=-1.0)


def test_default_run_logs_latent_and_gradient_diagnostics(trained_run: Path) -> None:
    events = read_events(trained_run)
    scalars = set(events.Tags()["scalars"])
    assert {"grad/norm_before_clip", "grad/norm_after_clip", "grad/clipped_step_fraction"} <= scalars
    assert {"grad/clipped_element_fraction", "train/kl_weight"} <= scalars
    for key in ("mu1_min", "mu2_max", "sigma1_mean", "sigma2_std", "logvar_mean", "kl_dim1", "kl_dim2", "active_units"):
        assert len(scalar_values(events, f"latent/{key}")) == 3, key  # once per validation epoch
    # KL per dimension sums to the validation KL; a trained 2-D model uses both dimensions
    kl_sum = [a + b for a, b in zip(scalar_values(events, "latent/kl_dim1"), scalar_values(events, "latent/kl_dim2"))]
    assert kl_sum == pytest.approx(scalar_values(events, "val/kl"), rel=1e-4)
    assert scalar_values(events, "latent/active_units")[-1] == 2
    for i in (1, 2):
        low, mean, high = (scalar_values(events, f"latent/mu{i}_{s}")[-1] for s in ("min", "mean", "max"))
        assert low < mean < high


def test_a_collapsed_encoder_has_no_active_units(cli_args: list[str]) -> None:
    cli = main([*cli_args, "--trainer.limit_val_batches=3"], run=False)
    with torch.no_grad():  # mu(x) = bias: the posterior mean ignores the image
        cli.model.network.mu.weight.zero_()
    cli.trainer.validate(cli.model, datamodule=cli.datamodule)
    events = read_events(Path(cli.trainer.logger.log_dir))
    assert scalar_values(events, "latent/active_units") == [0.0]
    assert scalar_values(events, "latent/mu1_std")[0] < 1e-6
    assert math.isfinite(scalar_values(events, "latent/kl_dim1")[0])


class LossOnlyValidation(VAEModule):
    """A module whose validation step returns only the loss, as a user's own module might."""

    def validation_step(self, batch, batch_idx):
        return super().validation_step(batch, batch_idx)["loss"]


def validated_latent_metrics(cli_args: list[str], module_class: type[VAEModule], *options: str) -> dict[str, list[float]]:
    """``latent/*`` and ``val/kl`` of a 3-batch validation of the seeded untrained default model."""
    cli = main([*cli_args, "--trainer.limit_val_batches=3", *options], run=False)
    model = module_class(network=copy.deepcopy(cli.model.network), likelihood=copy.deepcopy(cli.model.likelihood))
    cli.trainer.validate(model, datamodule=cli.datamodule)
    events = read_events(Path(cli.trainer.logger.log_dir))
    tags = [tag for tag in events.Tags()["scalars"] if tag.startswith("latent/") or tag == "val/kl"]
    return {tag: scalar_values(events, tag) for tag in tags}


def test_latent_statistics_come_from_the_validation_step_or_from_encoding_the_batch_alike(cli_args: list[str]) -> None:
    from_outputs = validated_latent_metrics(cli_args, VAEModule)
    encoded_here = validated_latent_metrics(cli_args, LossOnlyValidation)
    assert {"latent/mu1_std", "latent/kl_dim2", "val/kl"} <= from_outputs.keys()
    assert from_outputs.keys() == encoded_here.keys()
    for tag, values in from_outputs.items():
        assert values == pytest.approx(encoded_here[tag], rel=1e-5), tag


def test_kl_per_dimension_sums_to_the_validation_kl_of_binarized_images(cli_args: list[str]) -> None:
    """The statistics describe the images the model scored, here their binarization."""
    metrics = validated_latent_metrics(cli_args, VAEModule, "--data.binarize=true", "--model.likelihood=vae_lightning.likelihoods.Bernoulli")
    assert metrics["latent/kl_dim1"][0] + metrics["latent/kl_dim2"][0] == pytest.approx(metrics["val/kl"][0], rel=1e-5)


def test_latent_diagnostics_under_ddp_cover_the_images_of_every_process(cli_args: list[str], tmp_path: Path) -> None:
    """Two CPU processes, each validating its own half of 256 images, log the statistics of all
    256: the same numbers as one process that sees them all (the untrained model is seeded)."""
    ddp_dir = tmp_path / "ddp"
    args = [a for a in cli_args if not a.startswith(("--trainer.devices", "--trainer.default_root_dir"))]
    command = [sys.executable, "-m", "vae_lightning", "validate", *args, f"--trainer.default_root_dir={ddp_dir}", "--allow_untrained=true"]
    command += ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.limit_val_batches=4", "--data.batch_size=32"]
    result = subprocess.run(command, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    single = main(["validate", *cli_args, "--allow_untrained=true", "--trainer.limit_val_batches=4", "--data.batch_size=64"])

    (ddp_run,) = (ddp_dir / "lightning_logs").iterdir()
    ddp_events, single_events = read_events(ddp_run), read_events(Path(single.trainer.logger.log_dir))
    tags = [tag for tag in single_events.Tags()["scalars"] if tag.startswith("latent/")]
    assert {"latent/mu1_min", "latent/mu2_std", "latent/kl_dim1", "latent/active_units"} <= set(tags)
    for tag in tags:
        assert scalar_values(ddp_events, tag) == pytest.approx(scalar_values(single_events, tag), rel=1e-5, abs=1e-7), tag


@pytest.mark.parametrize("section", ["sample_grid", "reconstruction_grid", "latent_diagnostics", "latent_figures"])
def test_every_per_validation_callback_refuses_a_negative_every_n_epochs(cli_args: list[str], capsys: pytest.CaptureFixture, section: str) -> None:
    with pytest.raises(SystemExit):  # a usage error before the run, not a surprise after an epoch
        main(["fit", *cli_args, f"--{section}.every_n_epochs=-1"])
    assert "every_n_epochs must be at least 1, or 0 to turn the callback off; got -1" in capsys.readouterr().err


@pytest.mark.parametrize("section", ["sample_grid", "reconstruction_grid", "latent_diagnostics", "latent_figures"])
def test_every_n_epochs_0_turns_a_per_validation_callback_off(cli_args: list[str], tmp_path: Path, section: str) -> None:
    tags = {"sample_grid": "samples", "reconstruction_grid": "reconstructions", "latent_diagnostics": "latent/mu1_min",
            "latent_figures": "latent_space/scatter"}
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--latent_figures.every_n_epochs=1"]
    main(["fit", *cli_args, *short, f"--{section}.every_n_epochs=0"])
    events = read_events(tmp_path / "lightning_logs" / "version_0")
    logged = set(events.Tags()["scalars"]) | set(events.Tags()["images"])
    assert tags[section] not in logged
    assert {"val/loss", *(tag for name, tag in tags.items() if name != section)} <= logged
