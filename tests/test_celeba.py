"""CelebA through torchvision's class, on a few faces the tests write in its real layout
(``celeba/img_align_celeba/*.jpg`` of 178x218 and the five list files): 64x64 centre crops in the
published splits, a run of ``configs/celeba64.yaml``, and the errors for missing or bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torchvision
from helpers.image_files import write_celeba
from helpers.recorders import StepLosses
from helpers.runs import CONFIGS, cpu_run_args
from PIL import Image

from vae_lightning.cli import main, run_cli
from vae_lightning.data import CorruptDataError, DataNotFoundError, ImageDataModule
from vae_lightning.models import ConvVAE
from vae_lightning.models.conditional import ConditionalMLPVAE, check_conditioning
from vae_lightning.runtime.errors import UserError

SPLITS = (6, 3, 4)  # training, validation and test faces, as list_eval_partition.txt's 0, 1, 2


@pytest.fixture
def celeba_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, int]]:
    """The layout with 13 faces; torchvision checks the list files against the sums of the files
    written here instead of the published ones (which only the real files have)."""
    identities, file_list = write_celeba(tmp_path, SPLITS)
    monkeypatch.setattr(torchvision.datasets.CelebA, "file_list", file_list)
    return tmp_path, identities


def loaded(data_dir: Path, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(data_dir=str(data_dir), dataset="celeba", download=False, **kwargs)
    dm.setup()
    return dm


def test_celeba_is_read_as_64x64_colour_faces_in_its_published_splits_labelled_by_identity(celeba_dir) -> None:
    data_dir, identities = celeba_dir
    dm = loaded(data_dir, batch_size=4)
    assert dm.image_shape == (3, 64, 64)
    names = sorted(identities)  # 000001.jpg ...: 6 training, then 3 validation, then 4 test faces
    for split, first, count in (("train", 0, 6), ("val", 6, 3), ("test", 9, 4)):
        images, labels = dm.splits[split]
        assert images.shape == (count, 3, 64, 64) and images.dtype.is_floating_point is False
        assert labels.tolist() == [identities[name] for name in names[first : first + count]]
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and 0 <= x.min() and x.max() <= 1


def test_each_face_is_the_centre_148x148_of_the_aligned_image_resized(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    face = np.zeros((218, 178, 3), dtype=np.uint8)
    face[...] = (250, 0, 0)  # red outside the centre square, rows (218 - 148) / 2 on, columns (178 - 148) / 2 on,
    face[35:183, 15:163] = (0, 250, 0)  # whose outer 4 pixels are green
    face[39:179, 19:159] = (0, 0, 250)  # and the rest blue
    path = data_dir / "celeba" / "img_align_celeba" / "000010.jpg"  # the first test face
    Image.fromarray(face).save(path, quality=95, subsampling=0)  # full-resolution colour: no bleeding at edges
    image = loaded(data_dir).splits["test"][0][0].int()  # (3, 64, 64)
    edges = [image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]]
    assert all(edge[1].min() > 150 and edge[0].max() < 60 for edge in edges)  # green, no red: the crop is that square
    assert image[2, 2:-2, 2:-2].min() > 200  # blue inside


def test_celeba_is_resized_and_converted_to_what_is_asked(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    dm = loaded(data_dir, image_size=32, channels=1)
    assert dm.image_shape == (1, 32, 32)
    assert dm.splits["val"][0].shape == (3, 1, 32, 32)


def test_the_celeba64_config_fits_a_colour_conv_vae_for_64x64_faces(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    losses = StepLosses()
    cli = main(
        [
            "fit",
            *cpu_run_args(data_dir, data_dir / "runs"),
            "--config",
            str(CONFIGS / "conv.yaml"),
            "--config",
            str(CONFIGS / "celeba64.yaml"),
            "--data.download=true",  # the files are there and intact: nothing is fetched
            "--data.batch_size=6",  # the 6 training faces: one batch
            "--trainer.max_epochs=1",
            "--progress_bar.refresh_rate=0",
        ],
        trainer_defaults={"callbacks": [losses]},
    )
    network = cli.model.network
    assert isinstance(network, ConvVAE) and network.image_shape == (3, 64, 64) and network.latent_dim == 128
    assert network.feature_shape == (256, 4, 4)  # four halvings of 64 x 64
    assert len(losses.losses) == 1 and math.isfinite(losses.losses[0])
    assert (len(cli.datamodule.splits["train"][0]), len(cli.datamodule.splits["val"][0])) == (6, 3)


def test_missing_celeba_names_the_folder_and_the_missing_files_in_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [*cpu_run_args(tmp_path, tmp_path), "--config", str(CONFIGS / "conv.yaml"), "--config", str(CONFIGS / "celeba64.yaml")]
    assert run_cli(["fit", *args, "--data.download=false"]) == 2
    error = capsys.readouterr().err
    assert (
        f"error: CelebA not found: looked for its files in {tmp_path / 'celeba'} (missing: list_attr_celeba.txt, "
        "identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt, list_eval_partition.txt, "
        "img_align_celeba/). Point --data.data_dir at the folder that holds celeba/img_align_celeba/*.jpg"
    ) in " ".join(error.split())
    assert "Traceback" not in error


def test_a_celeba_list_file_missing_from_a_copy_is_named(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    (data_dir / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"celeba \(missing: list_eval_partition.txt\)\. Point --data.data_dir"):
        loaded(data_dir)


def test_a_failed_celeba_download_says_so_and_how_to_copy_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args, **kwargs) -> None:  # what torchvision raises when Google Drive serves no file
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets.celeba, "download_file_from_google_drive", refused)
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="celeba")
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert message.startswith(f"could not download CelebA into {tmp_path / 'celeba'}: File not found or corrupted; looked for")
    assert "Copy its files there by hand" in message and "--data.data_dir" in message


def test_a_changed_celeba_list_file_is_refused_naming_it(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    changed = data_dir / "celeba" / "identity_CelebA.txt"
    changed.write_text(changed.read_text().replace(" ", "  ", 1))
    with pytest.raises(CorruptDataError, match=f"CelebA file {changed} is corrupt: its MD5 sum is not the published one"):
        loaded(data_dir)


def test_files_that_are_not_the_published_celeba_are_refused(tmp_path: Path) -> None:
    write_celeba(tmp_path, SPLITS)  # checked against torchvision's published sums
    with pytest.raises(CorruptDataError, match=r"celeba/list_attr_celeba.txt is corrupt"):
        loaded(tmp_path)


def test_a_face_cut_short_is_refused_naming_it(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    broken = data_dir / "celeba" / "img_align_celeba" / "000008.jpg"
    broken.write_bytes(broken.read_bytes()[:300])
    with pytest.raises(CorruptDataError, match=f"cannot read CelebA image {broken}"):
        loaded(data_dir)


def test_val_size_is_refused_for_celeba_whose_validation_split_is_published(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.val_size must be null for celeba, got 100: its validation images are its published"):
        ImageDataModule(data_dir=str(tmp_path), dataset="celeba", val_size=100)


def test_celebas_identities_are_not_classes_a_conditional_network_could_take(celeba_dir) -> None:
    data_dir, _ = celeba_dir
    dm = ImageDataModule(data_dir=str(data_dir), dataset="celeba", download=False)
    assert dm.num_classes is None
    network = ConditionalMLPVAE(image_shape=(3, 64, 64), num_classes=10)
    with pytest.raises(UserError, match="model.network ConditionalMLPVAE conditions on the class, but data.dataset celeba has no class labels"):
        check_conditioning(network, dm.num_classes, dm.dataset)
