"""The data benchmark's parts (tools/data_benchmark.py), small: the synthetic folder it decodes,
its memory readings, which tell a mapped cache file's pages from the process's own, and the
LitData row: the folder's conversion and the streaming loader timed beside ImageFolder's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from helpers.runs import DATA_DIR
from tools import data_benchmark


def test_the_synthetic_folder_holds_rgb_64x64_pngs_in_ten_classes_with_a_test_split(tmp_path: Path) -> None:
    data_benchmark.write_folder(tmp_path, images=40)
    train, test = sorted((tmp_path / "train").rglob("*.png")), sorted((tmp_path / "test").rglob("*.png"))
    assert (len(train), len(test)) == (40, 10)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [f"class{k}" for k in range(10)]
    with Image.open(train[0]) as image:
        assert (image.mode, image.size) == ("RGB", (64, 64)) and np.asarray(image).std() > 0


def test_memory_counts_the_pages_of_a_mapped_npy_file_apart(tmp_path: Path) -> None:
    before = data_benchmark.memory()
    np.save(tmp_path / "pixels.npy", np.ones((8, 2**20), dtype=np.uint8))  # 8 MB
    mapped = np.load(tmp_path / "pixels.npy", mmap_mode="r")
    assert int(mapped.sum()) == 8 * 2**20  # every page read once
    after = data_benchmark.memory()
    assert 7.9 <= after["cache_mapping_rss_mb"] - before["cache_mapping_rss_mb"] <= 8.1
    assert after["peak_rss_mb"] >= after["rss_mb"] >= after["private_mb"] > 0


def test_the_litdata_row_converts_the_folder_and_times_the_streaming_loader_beside_imagefolder(tmp_path: Path) -> None:
    images = 300
    data_benchmark.write_folder(tmp_path / "images", images=images)
    converted = data_benchmark.convert_to_litdata(tmp_path / "images", tmp_path / "litdata", tmp_path / "optimize.log")
    counts = data_benchmark.split_counts(images)
    assert converted["train_images"] + converted["val_images"] == counts["train"] and converted["val_images"] > 0
    assert converted["test_images"] == counts["test"]
    assert converted["wall_time_s"] > 0 and converted["images_per_s"] > 0 and "load average" in converted["uptime_after"]
    # lossless uint8 pixels: about the images' bytes, well over their PNGs'
    raw_mb = (images + counts["test"]) * 3 * 64 * 64 / 2**20
    assert raw_mb <= converted["written_mb"] <= 1.2 * raw_mb

    rates = data_benchmark.training_rates(tmp_path / "images", tmp_path / "litdata", str(DATA_DIR), tmp_path / "work", batches=4)
    baseline = rates["imagefolder_dataloader_2_workers_images_per_s"]
    for loader in ("cache", "litdata", "litdata_2_workers"):
        name = "litdata_loader_2_workers" if loader == "litdata_2_workers" else f"{loader}_loader"
        assert rates[f"{name}_images_per_s"] > 0
        assert abs(rates[f"{loader}_over_imagefolder"] - rates[f"{name}_images_per_s"] / baseline) < 0.01


def test_the_streaming_loader_timed_serves_the_converted_images_as_training_batches(tmp_path: Path) -> None:
    data_benchmark.write_folder(tmp_path / "images", images=40)
    data_benchmark.convert_to_litdata(tmp_path / "images", tmp_path / "litdata", tmp_path / "optimize.log")
    x, y = next(iter(data_benchmark.streaming_train_loader(tmp_path / "litdata", num_workers=0)))
    assert x.shape == (36, 3, 64, 64) and x.dtype == torch.float32  # 40 less the 4 held out for validation
    labels = {}
    for path in (tmp_path / "images/train").rglob("*.png"):
        with Image.open(path) as image:
            labels[np.asarray(image).tobytes()] = int(path.parent.name.removeprefix("class"))
    served = [(x[i] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().tobytes() for i in range(len(x))]
    assert len(set(served)) == 36 and [labels.get(image) for image in served] == y.tolist()
