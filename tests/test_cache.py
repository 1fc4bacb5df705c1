"""The decoded cache of image folders (vae_lightning/data/cache.py), on small PNG folders: built
once and mapped after, rebuilt when an image or the format changes, one valid cache from two
processes building at once, the same pixels as decoding the images, damaged files named."""

from __future__ import annotations

import json
import multiprocessing
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.image_files import write_image, write_image_folder
from helpers.runs import cpu_run_args, run_command, with_callback
from lightning.pytorch import Callback

from vae_lightning.data import CorruptDataError, ImageDataModule
from vae_lightning.data import cache as cache_module
from vae_lightning.data import sources
from vae_lightning.data.cache import LOCAL_FOLDER, CacheSource, cached_split, image_folder_source

CLASSES = ["a", "b"]
PER_CLASS = 6  # per split: 12 training and 12 test images


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "images", CLASSES, per_class=PER_CLASS, size=(8, 6))
    return tmp_path / "images"


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the images decoded from now on, in this process."""
    paths: list[str] = []
    real = sources.decode_image

    def counting(path: str, **kwargs) -> torch.Tensor:
        paths.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(sources, "decode_image", counting)
    return paths


def loaded(folder: Path, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(data_dir=str(folder), dataset="image_folder", download=False, val_size=2, batch_size=4, **kwargs)
    dm.setup()
    return dm


def pixel_file(folder: Path, split: str = "train") -> Path:
    return folder / LOCAL_FOLDER / f"{split}-3x6x8.npy"


def served(dm: ImageDataModule) -> dict[str, torch.Tensor]:
    """Every split's images as the loaders serve them, in order (validation and test) or as stored."""
    return {
        "train": dm.splits["train"][0],
        "val": torch.cat([x for x, _ in dm.val_dataloader()]),
        "test": torch.cat([x for x, _ in dm.test_dataloader()]),
        "labels": torch.cat([y for _, y in dm.test_dataloader()]),
    }


def test_a_split_is_decoded_once_and_later_runs_map_the_file(folder: Path, decoded: list[str]) -> None:
    first = served(loaded(folder))
    assert len(decoded) == 2 * len(CLASSES) * PER_CLASS  # each image of both splits, once
    decoded.clear()
    later = loaded(folder)
    assert decoded == []  # nothing decoded: the pixels come from the cache
    maps = Path("/proc/self/maps").read_text()
    assert str(pixel_file(folder)) in maps and str(pixel_file(folder, "test")) in maps  # mapped, not read into memory
    assert all(torch.equal(first[key], value) for key, value in served(later).items())
    index = json.loads(pixel_file(folder).with_suffix(".json").read_text())
    assert (index["classes"], index["shape"], index["count"]) == (CLASSES, [3, 6, 8], 12)


def test_the_cache_serves_the_same_pixels_and_labels_as_decoding_the_images(folder: Path) -> None:
    options = {"image_size": 5, "channels": 1}  # resized and converted as they are decoded
    cached, read = served(loaded(folder, **options)), served(loaded(folder, cache=False, **options))
    assert pixel_file(folder).with_name("train-1x5x5.npy").is_file()
    assert all(torch.equal(cached[key], read[key]) for key in read)
    batch, _ = next(iter(loaded(folder, **options).train_dataloader()))
    assert batch.shape == (4, 1, 5, 5) and batch.dtype == torch.float32


def test_cache_false_reads_the_images_and_writes_nothing(folder: Path, decoded: list[str]) -> None:
    loaded(folder, cache=False)
    loaded(folder, cache=False)
    assert len(decoded) == 2 * 2 * len(CLASSES) * PER_CLASS and not (folder / LOCAL_FOLDER).exists()


@pytest.mark.parametrize("change", ["changed", "added", "removed"])
def test_a_changed_added_or_removed_image_rebuilds_the_cache_saying_so(
    folder: Path, decoded: list[str], capfd: pytest.CaptureFixture, change: str
) -> None:
    loaded(folder)
    capfd.readouterr()
    image = folder / "train" / "b" / "0003.png"
    new_pixels = np.full((6, 8, 3), 7, dtype=np.uint8)
    if change == "removed":
        image.unlink()
    else:
        write_image(image if change == "changed" else image.with_name("new.png"), new_pixels)
    decoded.clear()
    dm = loaded(folder)
    lines = [line for line in capfd.readouterr().err.splitlines() if "out of date" in line]
    assert lines == [f"data cache {pixel_file(folder)} is out of date: the images or settings changed (12 images when it was made): "
                     f"decoding {12 - (change == 'removed') + (change == 'added'):,} images of {folder} with 1 worker(s)"]
    assert len(decoded) == len(dm.splits["train"]) + len(dm.splits["val"])  # the training split again, not the test split
    new_image = torch.from_numpy(new_pixels).permute(2, 0, 1)
    assert any(torch.equal(image, new_image) for image in dm.splits["train"].all_images) == (change != "removed")


def test_a_cache_of_another_format_version_is_rebuilt(folder: Path, decoded: list[str], capfd: pytest.CaptureFixture) -> None:
    expected = served(loaded(folder))
    index_path = pixel_file(folder).with_suffix(".json")
    index_path.write_text(json.dumps(json.loads(index_path.read_text()) | {"version": 0}))
    decoded.clear()
    assert all(torch.equal(expected[key], value) for key, value in served(loaded(folder)).items())
    assert len(decoded) == len(CLASSES) * PER_CLASS
    assert f"data cache {pixel_file(folder)} is of format version 0 (this version reads 1)" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "is truncated: {size:,} bytes, expected {expected:,}"),
        ("other_array", r"holds float32 (12, 3, 6, 8), not the uint8 (12, 3, 6, 8) its index describes"),
        ("not_numpy", "is not a NumPy array file"),
    ],
)
def test_a_damaged_or_foreign_pixel_file_is_refused_naming_it_and_the_fix(folder: Path, damage: str, message: str) -> None:
    loaded(folder)
    pixels = pixel_file(folder)
    expected = pixels.stat().st_size
    if damage == "truncated":
        with pixels.open("r+b") as f:
            f.truncate(expected - 100)
    elif damage == "other_array":
        np.save(pixels, np.zeros((12, 3, 6, 8), dtype=np.float32))
    else:
        pixels.write_bytes(b"not pixels at all")
    with pytest.raises(CorruptDataError) as err:
        loaded(folder)
    assert str(err.value).startswith(f"data cache file {pixels} ")
    assert message.format(size=expected - 100, expected=expected) in str(err.value)
    assert f"Delete {pixels} and {pixels.with_suffix('.json')} to decode the images again" in str(err.value)


def test_cache_dir_holds_the_cache_in_a_folder_named_after_the_data(folder: Path, tmp_path: Path) -> None:
    loaded(folder, cache_dir=str(tmp_path / "caches"))
    (made,) = (tmp_path / "caches").iterdir()
    assert made.name.startswith("images-") and (made / "train-3x6x8.npy").is_file() and (made / "test-3x6x8.json").is_file()
    assert not (folder / LOCAL_FOLDER).exists()


def test_worker_processes_decode_the_same_pixels_as_one_process(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "CHUNK", 5)  # 12 images: three tasks for two workers
    source = image_folder_source(folder, train=True, channels=None, image_size=None)
    alone, together = cached_split(source, tmp_path / "one", workers=1), cached_split(source, tmp_path / "two", workers=2)
    assert torch.equal(alone[0], together[0]) and torch.equal(alone[1], together[1])


def _slow_decode(path: str, decode) -> torch.Tensor:
    _slow_decode.calls += 1  # type: ignore[attr-defined]
    time.sleep(0.02)  # a build long enough for the other process to find it under way
    return decode(path)


def _build_at_once(source: CacheSource, folder: Path, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    _slow_decode.calls = 0  # type: ignore[attr-defined]
    start.wait()
    images, labels = cached_split(source, folder)
    results.put((_slow_decode.calls, images.numpy().tobytes(), labels.tolist()))  # type: ignore[attr-defined]


def test_two_processes_building_at_once_make_one_valid_cache(folder: Path, tmp_path: Path) -> None:
    real = image_folder_source(folder, train=True, channels=None, image_size=None)
    source = CacheSource(**{**real.__dict__, "decode": partial(_slow_decode, decode=real.decode)})
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_build_at_once, args=(source, tmp_path / "cache", start, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(calls for calls, _, _ in outcomes) == [0, 12]  # one decoded every image, the other waited and mapped
    expected = torch.stack([real.decode(path) for path, _ in source.samples])
    assert all(pixels == expected.numpy().tobytes() and labels == [0] * 6 + [1] * 6 for _, pixels, labels in outcomes)
    assert [path.name for path in sorted((tmp_path / "cache").iterdir()) if path.suffix != ".lock"] == ["train-3x6x8.json", "train-3x6x8.npy"]
    assert torch.equal(cached_split(source, tmp_path / "cache")[0], expected)


class RecordMaps(Callback):
    """Each process writes to ``<out_dir>/rank<r>.json`` the files it maps, once training starts."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_start(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        maps = sorted({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(".npy")})
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(maps))


@pytest.mark.slow  # two processes through the command line: about 25 s here
def test_both_processes_of_a_ddp_run_map_the_one_cache_one_of_them_built(folder: Path, tmp_path: Path) -> None:
    args = [a for a in cpu_run_args(folder, tmp_path) if a != "--trainer.devices=1"]
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--data.dataset=image_folder", "--data.val_size=2", "--data.batch_size=2"]
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--progress_bar.refresh_rate=0"]
    made = run_command("vae_lightning", ["fit", *args, *ddp, *short, with_callback(RecordMaps, out_dir=str(tmp_path / "maps"))])
    assert made.returncode == 0, made.stderr[-3000:]
    assert made.stderr.count("decoding 12 images of") == 1  # the training split, decoded by one process
    for rank in (0, 1):
        assert json.loads((tmp_path / "maps" / f"rank{rank}.json").read_text()) == [str(pixel_file(folder))]
