"""``predict`` through the real CLI on a trained checkpoint writes the pictures a user looks at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae_lightning.callbacks import ImagePredictionWriter
from vae_lightning.cli import main
from vae_lightning.data import ImageDataModule, to_pixels

KINDS = ("samples", "inputs", "reconstructions")
CELL = 28 + 2  # one image plus make_grid's 2-pixel padding


def read_png(path: Path) -> np.ndarray:
    """Grey levels in [0, 1]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def grid_cells(grid: np.ndarray, nrow: int, count: int) -> list[np.ndarray]:
    """The 28x28 images of a make_grid picture, row by row."""
    return [grid[2 + (i // nrow) * CELL :][:28, 2 + (i % nrow) * CELL :][:, :28] for i in range(count)]


def predict(cli_args: list[str], checkpoint: Path, *extra: str) -> None:
    main(["predict", *cli_args, f"--ckpt_path={checkpoint}", *extra])


def test_predict_writes_a_grid_per_kind_into_the_run_folder(trained_run: Path, cli_args: list[str], tmp_path: Path) -> None:
    predict(cli_args, trained_run / "checkpoints" / "last.ckpt")

    (run_dir,) = (tmp_path / "lightning_logs").iterdir()
    folder = run_dir / "predictions"
    assert (run_dir / "config.yaml").is_file()  # the run's config sits beside its pictures
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{kind}.png" for kind in KINDS)
    for kind in KINDS:
        grid = read_png(folder / f"{kind}.png")
        assert grid.shape == (8 * CELL + 2, 8 * CELL + 2), kind  # data.predict_size 64: 8 x 8
        cells = np.stack(grid_cells(grid, nrow=8, count=64))
        assert 0.05 < cells.mean() < 0.5, kind  # dark background with bright strokes
        assert cells.std(axis=(1, 2)).min() > 0.1, f"{kind} has a blank image"
        # Different images, not one repeated (two blurry 2-D-latent decodings may still coincide).
        assert len({cell.tobytes() for cell in cells}) >= 56, f"{kind}: repeated images"


def test_predict_writes_single_pngs_to_a_chosen_folder_in_test_set_order(
    trained_run: Path, cli_args: list[str], tmp_path: Path, mnist_dir: Path
) -> None:
    out = tmp_path / "pictures"
    predict(
        cli_args,
        trained_run / "checkpoints" / "last.ckpt",
        "--data.predict_size=10",
        f"--prediction.output_dir={out}",
        "--prediction.individual=true",
    )

    for kind in KINDS:
        assert read_png(out / f"{kind}.png").shape == (4 * CELL + 2, 3 * CELL + 2)  # 10 images, 3 a row
        assert sorted(p.name for p in (out / kind).iterdir()) == [f"{i:05d}.png" for i in range(10)]
        assert all(read_png(out / kind / f"{i:05d}.png").shape == (28, 28) for i in range(10))

    data = ImageDataModule(data_dir=str(mnist_dir))
    data.setup("test")
    expected_inputs = to_pixels(data.splits["test"][0][:10]).reshape(10, 28, 28).numpy()  # uint8 (N, 1, 28, 28) -> [0, 1]
    inputs = np.stack([read_png(out / "inputs" / f"{i:05d}.png") for i in range(10)])
    np.testing.assert_allclose(inputs, expected_inputs, atol=1 / 255 + 1e-6)  # 8-bit rounding only

    # Reconstruction i is of input i: closer to it, on average, than to the other inputs.
    reconstructions = torch.from_numpy(np.stack([read_png(out / "reconstructions" / f"{i:05d}.png") for i in range(10)]))
    squared_errors = torch.cdist(reconstructions.flatten(1), torch.from_numpy(inputs).flatten(1)) ** 2  # (10, 10)
    own = squared_errors.diagonal().mean()
    others = (squared_errors.sum() - squared_errors.diagonal().sum()) / 90
    assert own < others


def test_fit_writes_no_predicted_images(trained_run: Path) -> None:
    assert not (trained_run / "predictions").exists()
    assert not [path for kind in KINDS for path in trained_run.rglob(f"{kind}.png")]


def test_an_unknown_kind_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="samples.*inputs.*reconstructions"):
        ImagePredictionWriter(kinds=["latents"])  # type: ignore[list-item]


def test_an_unknown_kind_on_the_command_line_names_the_option(
    cli_args: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        main(["predict", *cli_args, "--prediction.kinds=[latents]"])
    assert "kinds" in capsys.readouterr().err
