"""The convolutional VAE: its shapes for the image sizes and depths it is made for, and whole runs
through the CLI, on MNIST and on a folder of colour images, that train, test and predict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers.image_files import write_cifar10, write_shapes_folder
from helpers.recorders import StepLosses
from helpers.runs import CONFIGS, conf_args, cpu_run_args
from PIL import Image

from vae_lightning.cli import main
from vae_lightning.data import ImageDataModule
from vae_lightning.latent import reparameterize
from vae_lightning.losses import kl_divergence
from vae_lightning.models import MLPVAE, ConvVAE

GRID_PADDING = 2

# --- Shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_conv_vae_maps_images_to_latents_and_back_to_the_same_shape(image_shape: tuple[int, int, int], depth: int) -> None:
    torch.manual_seed(0)  # a random start can leave a small layer's ReLU dead for 5 images
    channels = [4, 8, 8, 16][:depth]
    net = ConvVAE(image_shape, channels=channels, hidden_dim=16, latent_dim=3)
    c, h, w = image_shape
    assert net.feature_shape == (channels[-1], h >> depth, w >> depth)  # each layer halves, rounding down
    x = torch.rand(5, *image_shape)
    mu, logvar = net.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    z = reparameterize(mu, logvar, samples=2)
    assert z.shape == (2, 5, 3)
    assert net.decode(z).shape == (2, 5, *image_shape)
    assert net.decode(mu).shape == (5, *image_shape)
    # every layer takes part: a loss on the output reaches each parameter
    (net.decode(z).square().mean() + kl_divergence(mu, logvar)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_conv_vae_refuses_more_layers_than_the_image_can_be_halved() -> None:
    with pytest.raises(ValueError, match="5 convolutions halve 28x28 images to nothing"):
        ConvVAE((1, 28, 28), channels=[4] * 5)


def test_a_deterministic_conv_vae_has_no_log_variance_head_and_no_kl() -> None:
    net = ConvVAE((3, 32, 32), channels=[4, 8], hidden_dim=16, latent_dim=3, deterministic=True)
    assert net.logvar is None
    assert not any(name.startswith("logvar") for name in net.state_dict())
    x = torch.rand(4, 3, 32, 32)
    mu, logvar = net.encode(x)
    assert torch.isneginf(logvar).all()  # a point mass at mu
    assert torch.equal(reparameterize(mu, logvar, samples=3), mu.expand(3, *mu.shape))
    assert kl_divergence(mu, logvar) == 0
    stochastic = ConvVAE((3, 32, 32), channels=[4, 8], hidden_dim=16, latent_dim=3)
    assert sum(p.numel() for p in stochastic.parameters()) - sum(p.numel() for p in net.parameters()) == 16 * 3 + 3


def test_mlp_vae_flattens_inside_itself_and_gives_back_image_shaped_logits() -> None:
    net = MLPVAE((3, 8, 6), hidden_dims=[32], latent_dim=4)
    x = torch.rand(5, 3, 8, 6)
    mu, logvar = net.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    # the first layer sees the pixels in (C, H, W) order
    first = net.encoder[0]
    expected_mu = net.mu(torch.relu(first(x.reshape(5, -1))))
    assert torch.allclose(mu, expected_mu)
    assert net.decode(mu).shape == (5, 3, 8, 6)
    assert net.decode(reparameterize(mu, logvar, samples=2)).shape == (2, 5, 3, 8, 6)


# --- Whole runs through the CLI -----------------------------------------------------------------


def read_grid(path: Path) -> np.ndarray:
    """A PNG grid as uint8 (H, W, 3)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def grid_cell(grid: np.ndarray, index: int, nrow: int, height: int, width: int) -> np.ndarray:
    """Image ``index`` of a ``make_grid`` picture: (H, W, 3)."""
    top = GRID_PADDING + (index // nrow) * (height + GRID_PADDING)
    left = GRID_PADDING + (index % nrow) * (width + GRID_PADDING)
    return grid[top : top + height, left : left + width]


class Run:
    """A fit, test and predict of one configuration through the CLI, sharing one log folder."""

    def __init__(self, args: list[str], save_dir: Path) -> None:
        self.args, self.save_dir = args, save_dir
        self.step_losses = StepLosses()
        fit = main(["fit", *args], trainer_defaults={"callbacks": [self.step_losses]})
        self.network = fit.model.network
        self.checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)
        test = main(["test", *args, f"--ckpt_path={self.checkpoint}", "--trainer.limit_test_batches=2", "--evaluation.iwae_samples=[1]"])
        self.test_metrics = {name: float(value) for name, value in test.trainer.callback_metrics.items()}
        self.predictions = save_dir / "predictions"
        main(["predict", *args, f"--ckpt_path={self.checkpoint}", "--data.predict_size=16", f"--prediction.output_dir={self.predictions}"])


def run_args(data_dir: Path, save_dir: Path, *overrides: str) -> list[str]:
    """configs/conv.yaml with narrower layers and a few batches, so a run takes seconds on a CPU."""
    conv = ["--config", str(CONFIGS / "conv.yaml"), *conf_args("narrow_conv"), *conf_args("one_epoch")]
    return [*cpu_run_args(data_dir, save_dir), *conv, *overrides]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Run:
    save_dir = tmp_path_factory.mktemp("conv_mnist")
    return Run(run_args(mnist_dir, save_dir), save_dir)


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Red discs and blue squares, 32x32 RGB PNGs: 150 training and 16 test images per class."""
    data_dir = tmp_path_factory.mktemp("shapes")
    write_shapes_folder(data_dir, train_per_class=150, test_per_class=16)
    return data_dir


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory, shapes_dir: Path) -> Run:
    save_dir = tmp_path_factory.mktemp("conv_shapes")
    args = run_args(shapes_dir, save_dir, "--data.dataset=image_folder", "--data.val_size=40", "--trainer.max_epochs=2")
    return Run(args, save_dir)


def assert_trained_tested_and_predicted(run: Run, test_images: torch.Tensor) -> None:
    losses = run.step_losses.losses
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, f"the loss did not drop: {losses}"
    assert {"test/loss", "test/psnr"} <= run.test_metrics.keys()
    assert math.isfinite(run.test_metrics["test/psnr"]) and run.test_metrics["test/psnr"] > 0
    assert run.test_metrics["test/loss"] < 0.8 * first  # the checkpoint's trained weights were tested
    assert sorted(p.name for p in run.predictions.iterdir()) == ["inputs.png", "reconstructions.png", "samples.png"]
    _, h, w = test_images.shape[1:]
    side = 4 * (w + GRID_PADDING) + GRID_PADDING  # 16 images: a 4 x 4 grid
    grids = {kind: read_grid(run.predictions / f"{kind}.png") for kind in ("inputs", "reconstructions", "samples")}
    assert all(grid.shape == (side, side, 3) for grid in grids.values())
    for index in (0, 5, 15):  # the inputs grid holds the test images in order
        expected = test_images[index].expand(3, h, w).permute(1, 2, 0).numpy()
        assert np.array_equal(grid_cell(grids["inputs"], index, 4, h, w), expected)


def test_conv_vae_on_mnist_trains_tests_and_predicts_through_the_cli(mnist_run: Run, mnist_dir: Path) -> None:
    assert isinstance(mnist_run.network, ConvVAE) and mnist_run.network.image_shape == (1, 28, 28)
    data = ImageDataModule(data_dir=str(mnist_dir), download=False)
    data.setup("test")
    assert_trained_tested_and_predicted(mnist_run, data.splits["test"][0][:16])


def test_conv_vae_on_an_rgb_image_folder_trains_tests_and_predicts_through_the_cli(shapes_run: Run, shapes_dir: Path) -> None:
    assert isinstance(shapes_run.network, ConvVAE) and shapes_run.network.image_shape == (3, 32, 32)  # from the files
    data = ImageDataModule(data_dir=str(shapes_dir), dataset="image_folder")
    data.setup("test")
    assert_trained_tested_and_predicted(shapes_run, data.splits["test"][0][:16])
    # colour survives the trip: the decoded samples are not grey
    samples = grid_cell(read_grid(shapes_run.predictions / "samples.png"), 0, 4, 32, 32).astype(int)
    assert np.abs(samples - samples.mean(axis=-1, keepdims=True)).max() > 10


def test_the_cifar10_config_trains_a_colour_conv_vae_on_cifar10s_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in write_cifar10(tmp_path / "data", per_batch=8).items():  # their sums stand in for the published ones
        monkeypatch.setattr(torchvision.datasets.CIFAR10, name, value)
    losses = StepLosses()
    cli = main(
        [
            "fit",
            *cpu_run_args(tmp_path / "data", tmp_path),
            "--config",
            str(CONFIGS / "conv.yaml"),
            "--config",
            str(CONFIGS / "cifar10.yaml"),
            "--data.val_size=8",
            "--data.batch_size=8",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--progress_bar.refresh_rate=0",
        ],
        trainer_defaults={"callbacks": [losses]},
    )
    network = cli.model.network
    assert isinstance(network, ConvVAE) and network.image_shape == (3, 32, 32) and network.latent_dim == 128
    assert network.feature_shape == (128, 4, 4)  # three halvings of 32 x 32
    assert len(losses.losses) == 3 and all(math.isfinite(loss) for loss in losses.losses)
