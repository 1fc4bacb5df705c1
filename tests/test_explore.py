"""The exploration command end to end on real checkpoints (2-D and 20-D latent spaces), and
the latent-space figures logged to TensorBoard during training."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
from helpers.runs import cpu_run_args

from vae_lightning.cli import main as cli_main
from vae_lightning.data import DataNotFoundError
from vae_lightning.explore import main as explore
from vae_lightning.runs import read_events
from vae_lightning.runtime.checkpoints import CheckpointError

ALL_FIGURES = {"scatter", "manifold", "interpolations", "samples", "reconstructions"}


@pytest.fixture(scope="module")
def run_20d(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A short real run of a 20-D model that draws the latent-space figures after every epoch."""
    save_dir = tmp_path_factory.mktemp("run_20d")
    cli_main(
        [
            "fit",
            *cpu_run_args(mnist_dir, save_dir),
            "--model.network.init_args.latent_dim=20",
            "--trainer.max_epochs=2",
            "--trainer.limit_train_batches=40",
            "--trainer.limit_val_batches=8",
            "--trainer.callbacks=[{class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: {save_last: true}}]",
            "--latent_figures.every_n_epochs=1",
            "--latent_figures.num_images=500",
        ]
    )
    (run_dir,) = (save_dir / "lightning_logs").iterdir()
    return run_dir


def _assert_readable_pictures(folder: Path, names: set[str]) -> None:
    assert {path.stem for path in folder.glob("*.png")} == names
    for name in names:
        pixels = matplotlib.image.imread(folder / f"{name}.png")
        height, width = pixels.shape[:2]
        assert height >= 300 and width >= 300, name
        assert pixels[..., :3].std() > 0.05, f"{name}.png is nearly blank"


def test_explore_writes_every_picture_of_a_2d_model_with_the_runs_data_settings(trained_run: Path, tmp_path: Path) -> None:
    # no --data_dir: the MNIST folder comes from the run's config.yaml beside the checkpoint
    written = explore(["--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path)])
    assert {path.stem for path in written} == ALL_FIGURES
    _assert_readable_pictures(tmp_path, ALL_FIGURES)


def test_explore_of_a_20d_model_projects_on_principal_components_and_skips_the_manifold(
    run_20d: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    explore(["--ckpt_path", str(run_20d / "checkpoints" / "last.ckpt"), "--out", str(tmp_path), f"--data_dir={mnist_dir}"])
    _assert_readable_pictures(tmp_path, ALL_FIGURES - {"manifold"})


def test_data_dir_overrides_the_runs_folder(trained_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match="nowhere"):
        explore(["--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path), f"--data_dir={missing}"])


def test_a_missing_checkpoint_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint .*missing.ckpt does not exist"):
        explore(["--ckpt_path", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path)])


def test_training_logs_the_latent_space_figures_to_tensorboard_once_each(run_20d: Path) -> None:
    events = read_events(run_20d)
    images = events.Tags()["images"]
    for name in ("scatter", "interpolations"):  # no manifold for a 20-D latent space
        assert f"latent_space/{name}" in images
        assert len(events.Images(f"latent_space/{name}")) == 2  # one per epoch
    assert "latent_space/manifold" not in images
    # samples and reconstructions are the image grids' alone, not drawn a second time as figures
    assert {"samples", "reconstructions"} <= set(images)
    assert not {"latent_space/samples", "latent_space/reconstructions"} & set(images)
