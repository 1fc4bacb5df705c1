"""End to end through the real CLI on real MNIST: fit, the logs it leaves, test, and config errors
(a misspelt key, a wrong type, an invalid value: each refused before any run folder is made)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vae_lightning.cli import main
from vae_lightning.module import VAEModule
from vae_lightning.runs import read_events, scalar_values


def test_fit_lowers_the_validation_loss(trained_run: Path) -> None:
    val_loss = scalar_values(read_events(trained_run), "val/loss")
    assert len(val_loss) == 3
    assert val_loss[-1] < val_loss[0] - 3.0
    assert val_loss[-1] < 55  # an untrained model scores about 200 (mostly RL)


def test_fit_logs_every_loss_term_per_stage_and_both_image_grids(trained_run: Path) -> None:
    events = read_events(trained_run)
    scalars = set(events.Tags()["scalars"])
    for term in ("loss", "rl", "kl"):
        assert {f"train/{term}_step", f"train/{term}_epoch", f"val/{term}"} <= scalars
    images = set(events.Tags()["images"])
    assert {"samples", "reconstructions"} <= images
    assert len(events.Images("samples")) == 3  # one grid per epoch


def test_fit_writes_best_and_last_checkpoints_that_restore_the_weights(trained_run: Path) -> None:
    checkpoints = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("best-") for name in checkpoints)
    model = VAEModule.load_from_checkpoint(trained_run / "checkpoints" / "last.ckpt", map_location="cpu")
    state = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    images = model.generate(4)
    assert images.shape == (4, 1, 28, 28)
    assert 0 <= images.min() and images.max() <= 1


def test_test_subcommand_reports_test_metrics_of_a_checkpoint(trained_run: Path, cli_args: list[str]) -> None:
    # the whole test set; the sample metrics, tested in test_quality.py, would double its time
    cli = main(["test", *cli_args, f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", "--evaluation.feature_network=null"])
    metrics = cli.trainer.callback_metrics
    assert {"test/loss", "test/rl", "test/kl"} <= set(metrics)
    assert torch.isclose(metrics["test/loss"], metrics["test/rl"] + metrics["test/kl"], rtol=1e-4)
    assert metrics["test/loss"] < 60


def test_any_yaml_option_can_be_overridden_on_the_command_line(cli_args: list[str]) -> None:
    cli = main([*cli_args, "--model.network.init_args.latent_dim=7", "--model.optimizer.init_args.momentum=0.5"], run=False)
    assert cli.model.network.latent_dim == 7
    optimizer = cli.model.configure_optimizers()
    assert optimizer.param_groups[0]["momentum"] == 0.5
    assert cli.trainer.gradient_clip_algorithm == "value"
    assert cli.trainer.gradient_clip_val == 1.0


def test_the_network_takes_its_image_shape_from_the_data(cli_args: list[str]) -> None:
    cli = main([*cli_args, "--data.channels=3", "--data.image_size=20"], run=False)
    assert cli.model.network.image_shape == (3, 20, 20)
    assert cli.model.network.encoder[0].in_features == 3 * 20 * 20
    conv = Path(__file__).parents[1] / "configs" / "conv.yaml"
    cli = main([*cli_args, "--config", str(conv), "--data.image_size=32"], run=False)
    assert type(cli.model.network).__name__ == "ConvVAE"
    assert cli.model.network.image_shape == (1, 32, 32)


def test_a_network_is_chosen_and_refused_by_its_class_path(cli_args: list[str], capsys: pytest.CaptureFixture) -> None:
    cli = main([*cli_args, "--model.network=vae_lightning.models.ConvVAE"], run=False)
    assert type(cli.model.network).__name__ == "ConvVAE"
    with pytest.raises(SystemExit):
        main([*cli_args, "--model.network=vae_lightning.models.NoSuchNet"], run=False)
    assert "NoSuchNet" in capsys.readouterr().err


def test_clip_norm_config_switches_the_clipping_algorithm(cli_args: list[str]) -> None:
    clip_norm = Path(__file__).parents[1] / "configs" / "clip_norm.yaml"
    cli = main([*cli_args, "--config", str(clip_norm)], run=False)
    assert cli.trainer.gradient_clip_algorithm == "norm"


def _flushes_denormals_here() -> bool:
    """Whether this thread flushes float32 denormals (the smallest one, from its bits, times one)."""
    return bool(torch.ones(1, dtype=torch.int32).view(torch.float32) * 1.0 == 0)


def test_numeric_settings_are_set_per_run_and_reset_by_the_next(cli_args: list[str], capsys: pytest.CaptureFixture) -> None:
    gpu = Path(__file__).parents[1] / "configs" / "gpu.yaml"
    has_flush_mode = torch.set_flush_denormal(False)  # False on CPUs without one: nothing to flush then
    try:
        main([*cli_args, "--config", str(gpu), "--trainer.accelerator=cpu", "--trainer.devices=1"], run=False)
        assert torch.get_float32_matmul_precision() == "high"  # gpu.yaml: TF32
        main([*cli_args, "--float32_matmul_precision=medium", "--flush_denormal=false"], run=False)
        assert torch.get_float32_matmul_precision() == "medium"
        assert not _flushes_denormals_here()
        main(cli_args, run=False)  # the default config: exact float32 matmuls, denormals flushed
        assert torch.get_float32_matmul_precision() == "highest"
        assert _flushes_denormals_here() == has_flush_mode
        with pytest.raises(SystemExit):
            main([*cli_args, "--float32_matmul_precision=fast"], run=False)
        assert "highest" in capsys.readouterr().err  # the refusal lists the valid values
    finally:
        torch.set_float32_matmul_precision("highest")
        torch.set_flush_denormal(False)


def test_a_misspelt_key_is_refused_with_its_name(cli_args: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *cli_args, "--model.network.init_args.latent_dims=3"])
    assert exit_info.value.code != 0
    assert "latent_dims" in capsys.readouterr().err


def test_a_wrongly_typed_value_is_refused_with_its_key(cli_args: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["fit", *cli_args, "--data.batch_size=many"])
    assert "batch_size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        ("--model.network.init_args.latent_dim=0", "latent_dim must be positive, got 0"),
        ("--model.network.init_args.hidden_dims=[]", "hidden_dims must be a non-empty list"),
        ("--model.mc_samples=0", "mc_samples must be at least 1, got 0"),
        ("--trainer.gradient_clip_algorithm=sometimes", "`gradient_clip_algorithm` sometimes is invalid"),
        ("--model.optimizer.init_args.lr=-0.1", "model.optimizer: Invalid learning rate: -0.1"),
        ("--model.latent_size=3", "latent_size"),
    ],
)
def test_an_invalid_value_is_refused_before_training_naming_the_key(
    argument: str, named: str, cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *cli_args, argument])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()  # refused before any run folder was made


def test_print_config_shows_the_full_configuration(cli_args: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *cli_args, "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "latent_dim: 2" in printed
    assert "vae_lightning.models.MLPVAE" in printed and "vae_lightning.likelihoods.MSE" in printed
    assert "gradient_clip_algorithm: value" in printed
    assert "torch.optim.SGD" in printed


def test_a_checkpoint_of_resized_images_is_not_said_to_replace_the_linked_image_shape(
    cli_args: list[str], tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    resized = [*cli_args, "--data.image_size=20"]
    main(["fit", *resized, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"])
    checkpoint = next((tmp_path / "lightning_logs").glob("version_0/checkpoints/last.ckpt"))
    cli = main(["test", *resized, f"--ckpt_path={checkpoint}", "--trainer.limit_test_batches=2"])
    assert cli.model.network.image_shape == (1, 20, 20)
    replaced = [str(w.message) for w in recwarn if "replace the configured ones" in str(w.message)]
    assert replaced == [], replaced  # the shape comes from the data on both sides: nothing differs
