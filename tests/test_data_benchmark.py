"""The data benchmark's parts (tools/data_benchmark.py), small: the synthetic folder it decodes,
and its memory readings, which tell a mapped cache file's pages from the process's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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
