"""The conditional VAE (configs/conditional.yaml): it trains, tests, predicts and resumes through the
CLI on real MNIST, draws the classes asked for (as judged by the shipped MNIST classifier), and is
refused on data whose classes it does not fit; networks that do not condition are never given one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.image_files import write_image_folder
from helpers.networks import TinyVAE
from helpers.recorders import StepLosses
from helpers.runs import CONFIGS, cpu_run_args, run_command
from PIL import Image

from vae_lightning.callbacks import ImagePredictionWriter
from vae_lightning.cli import main
from vae_lightning.models import ConditionalMLPVAE, MLPVAE
from vae_lightning.module import VAEModule
from vae_lightning.pictures.grids import GRID_PADDING
from vae_lightning.quality.network import load_feature_network
from vae_lightning.runs import read_events, scalar_values
from vae_lightning.runtime.errors import UserError

CONDITIONAL = ["--config", str(CONFIGS / "conditional.yaml")]
#: 200 batches of 128 at lr 0.01: about 10 s on one core, after which the shipped classifier takes
#: about 98% of the draws for the class asked for (with lr 0.003 it takes twice as many batches).
SHORT_FIT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=200",
    "--trainer.limit_val_batches=4",
    "--model.optimizer.init_args.lr=0.01",
    "--latent_figures.every_n_epochs=1",
    "--latent_figures.num_images=256",
    "--progress_bar.refresh_rate=0",
]


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> tuple[Path, list[float]]:
    """One short fit of the conditional overlay: its ``version_0`` folder and its step losses."""
    root = tmp_path_factory.mktemp("conditional")
    losses = StepLosses()
    main(["fit", *cpu_run_args(mnist_dir, root), *CONDITIONAL, *SHORT_FIT], trainer_defaults={"callbacks": [losses]})
    return root / "lightning_logs" / "version_0", losses.losses


def classified(images: torch.Tensor) -> torch.Tensor:
    """The shipped MNIST classifier's class (N,) for images (N, 1, 28, 28) in [0, 1]."""
    with torch.no_grad():
        return load_feature_network("mnist").network.classify(images).argmax(dim=1)


def grid_cells(path: Path, rows: int, columns: int, side: int = 28) -> torch.Tensor:
    """The (rows x columns, 1, side, side) images of a PNG grid written by ``save_image_grid``."""
    pixels = torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255)
    step = side + GRID_PADDING
    cells = [
        pixels[GRID_PADDING + r * step : GRID_PADDING + r * step + side, GRID_PADDING + c * step : GRID_PADDING + c * step + side]
        for r in range(rows)
        for c in range(columns)
    ]
    return torch.stack(cells)[:, None]


def test_the_conditional_vae_trains_on_mnist_with_a_grid_row_per_class(conditional_run: tuple[Path, list[float]]) -> None:
    run_dir, losses = conditional_run
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20]), losses[::20]
    events = read_events(run_dir)
    assert scalar_values(events, "val/loss")
    (grid,) = events.Images("samples")
    per_class = 64 // 10  # sample_grid.num_images // the classes
    assert (grid.height, grid.width) == (10 * 30 + GRID_PADDING, per_class * 30 + GRID_PADDING)  # one row per class
    assert events.Images("latent_space/scatter") and events.Images("latent_space/interpolations")
    assert "latent_space/manifold" not in events.Tags()["images"]  # one decoder per class: no single manifold


def test_the_conditional_vae_draws_the_classes_asked_for(conditional_run: tuple[Path, list[float]]) -> None:
    run_dir, _ = conditional_run
    model = VAEModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    assert isinstance(model.network, ConditionalMLPVAE) and model.num_classes == 10
    asked = torch.arange(10).repeat_interleave(50)
    seen = classified(model.generate(len(asked), torch.Generator().manual_seed(0), classes=asked))
    assert (seen == asked).float().mean() > 0.8
    per_class = torch.stack([(seen[asked == c] == c).float().mean() for c in range(10)])
    assert per_class.min() > 0.5, per_class  # every class, not a few drawn well
    threes = classified(model.generate(100, torch.Generator().manual_seed(1), classes=[3]))
    assert (threes == 3).float().mean() > 0.8


def test_the_conditional_vae_tests_predicts_its_classes_and_resumes_through_the_cli(
    conditional_run: tuple[Path, list[float]], mnist_dir: Path
) -> None:
    run_dir, _ = conditional_run
    root = run_dir.parent.parent
    config = ["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")]
    tested = main(["test", *config, "--trainer.limit_test_batches=2", "--evaluation.iwae_samples=[1, 5]", "--evaluation.quality_images=256"])
    metrics = tested.trainer.callback_metrics
    assert 0 < float(metrics["test/loss"]) < 60  # an untrained model scores about 200
    assert float(metrics["test/iwae_k5"]) > float(metrics["test/iwae_k1"]) - 1.0

    predicted = main(["predict", *config, "--prediction.classes=[3, 7]", "--prediction.samples_per_class=8", "--data.predict_size=16"])
    folder = Path(predicted.trainer.log_dir) / "predictions"
    cells = grid_cells(folder / "class_samples.png", rows=2, columns=8)  # one row of threes, one of sevens
    assert (classified(cells) == torch.tensor([3, 7]).repeat_interleave(8)).sum() >= 13
    assert {"samples.png", "inputs.png", "reconstructions.png"} <= {p.name for p in folder.iterdir()}

    resumed = main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path=last", "--trainer.max_epochs=2", "--trainer.limit_train_batches=10"])
    assert resumed.trainer.global_step == 200 + 10  # went on from the first run's 200 steps
    assert isinstance(resumed.model.network, ConditionalMLPVAE)
    assert (root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()  # the first run's work is kept


def test_a_num_classes_that_does_not_match_the_data_is_refused_naming_both_settings(mnist_dir: Path, tmp_path: Path) -> None:
    result = run_command("vae_lightning", ["fit", *cpu_run_args(mnist_dir, tmp_path), *CONDITIONAL, "--model.network.init_args.num_classes=5"])
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    error = " ".join(result.stderr[result.stderr.index("error: ") :].split())
    assert "model.network.init_args.num_classes is 5" in error and "data.dataset mnist has 10 classes" in error
    assert "--model.network.init_args.num_classes 10" in error
    assert not list(tmp_path.glob("lightning_logs/*/checkpoints"))  # refused before training


def test_a_conditional_network_on_a_folder_without_classes_is_refused(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "images", ["all"], per_class=4, size=(28, 28), mode="L")  # one folder: no labels
    args = ["fit", *cpu_run_args(tmp_path / "images", tmp_path), *CONDITIONAL, "--data.dataset=image_folder", "--data.val_size=2"]
    with pytest.raises(UserError, match=r"model.network ConditionalMLPVAE conditions on the class, but data.dataset image_folder has 1 class"):
        main(args)


def test_networks_that_do_not_condition_are_never_given_the_labels() -> None:
    torch.manual_seed(0)
    x, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    for network in (TinyVAE(latent_dim=3), MLPVAE()):  # a user's network on today's interface, and ours
        module = VAEModule(network=network)
        assert module.num_classes is None
        assert all(torch.equal(a, b) for a, b in zip(module.encode(x, labels), network.encode(x)))
        assert torch.isfinite(module.loss_terms(x, labels)["loss"])
        with pytest.raises(ValueError, match="does not condition on the class"):
            module.generate(2, classes=[3])


def test_a_conditional_network_needs_labels_and_classes_in_its_range() -> None:
    module = VAEModule(network=ConditionalMLPVAE(num_classes=10, hidden_dims=[16]))
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="conditions on the class: pass the images' labels"):
        module.encode(x)
    with pytest.raises(ValueError, match="class indices from 0 to 9"):
        module.generate(2, classes=[10])
    # the same z decoded as two classes differ: the decoder sees the class
    z = torch.zeros(2, 2)
    a, b = module.decode(z, torch.tensor([0, 0])), module.decode(z, torch.tensor([0, 1]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_prediction_classes_are_refused_for_a_model_that_does_not_condition() -> None:
    writer = ImagePredictionWriter(classes=[3])
    with pytest.raises(UserError, match=r"prediction.classes \[3\]: model.network MLPVAE does not condition on the class"):
        writer.on_predict_epoch_start(None, VAEModule())  # type: ignore[arg-type]
    with pytest.raises(UserError, match="the model's classes are 0 to 9"):
        ImagePredictionWriter(classes=[10]).on_predict_epoch_start(None, VAEModule(network=ConditionalMLPVAE(num_classes=10, hidden_dims=[8])))  # type: ignore[arg-type]
    ImagePredictionWriter(classes=[9]).on_predict_epoch_start(None, VAEModule(network=ConditionalMLPVAE(num_classes=10, hidden_dims=[8])))  # type: ignore[arg-type]
