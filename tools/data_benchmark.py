"""The data benchmark: an image folder of synthetic RGB 64x64 PNGs through the decoded cache,
against decoding the images at every start and against torchvision's ImageFolder + DataLoader.

    python -m tools.data_benchmark --images 200000   # writes docs/results/data_benchmark.json

On a folder it writes itself (``--images`` training images in 10 classes, a twentieth as many test
images; the time that takes is recorded), side by side in one run:

* ``decode``: the first decode of the training split into the cache (``cached_split``), images/s
  with 1 and 2 worker processes, and their ratio;
* ``start_up``: seconds from launching ``python -m vae_lightning fit`` (ConvVAE, one step, no
  validation) to its first training step, from MNIST's IDX files, from the folder's cache (a later
  run) and from the folder with ``--data.cache false``; the data's share is a run's time minus the
  same run's from the IDX files, whose start-up is mostly imports;
* ``memory``: at the first step, after every training image has been read once, each process's
  peak RSS, its proportional (PSS) and private memory (``/proc/self/smaps_rollup``): one process,
  and the two of a ``ddp`` run on 2 CPU processes, with and without the cache; what an extra
  process adds to the machine is its private memory;
* ``litdata``: the folder converted into LitData's chunked format by
  ``python -m vae_lightning.data.optimize`` (2 workers): its wall time with the load, images/s and
  the size written;
* ``training``: images/s fed by the project's loader from the cache, by its streaming loader from
  the LitData directory (``data.dataset streaming``, with 0 and 2 workers), by ImageFolder +
  DataLoader (``num_workers=2``, ``ToTensor``), by the loader on MNIST held in memory (today's
  path), and consumed by training steps of the ConvVAE at 64x64 on this CPU; each loader's ratio
  to ImageFolder's.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback
from PIL import Image

from tools.common import RESULTS, ROOT, cli, machine, rounded, run, script_parser, shown, uptime, write_json

CLASSES = 10
CONVERT_WORKERS = 2  # the conversion's processes, as the decode's and the baseline's
LAUNCHED = "DATA_BENCHMARK_LAUNCHED"  # the parent's clock when it started the run, for its child


def _write_chunk(task: tuple[Path, int, int]) -> None:
    """Images ``start``..``stop`` of a split: smooth colour fields with a little noise (PNGs of
    typical size, unlike pure noise)."""
    folder, start, stop = task
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        coarse = Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).resize((64, 64), Image.Resampling.BILINEAR)
        pixels = np.clip(np.asarray(coarse, dtype=np.int16) + rng.integers(-8, 9, size=(64, 64, 3)), 0, 255).astype(np.uint8)
        path = folder / f"class{i % CLASSES}" / f"{i:07d}.png"
        Image.fromarray(pixels).save(path)


def split_counts(images: int) -> dict[str, int]:
    """The images of each split of a synthetic folder of ``images`` training images."""
    return {"train": images, "test": max(images // 20, CLASSES)}


def write_folder(root: Path, images: int) -> float:
    """``root/{train,test}/class<k>/*.png``; the seconds it took with 2 processes."""
    start = time.perf_counter()
    tasks = []
    for split, count in split_counts(images).items():
        for k in range(CLASSES):
            (root / split / f"class{k}").mkdir(parents=True, exist_ok=True)
        tasks += [(root / split, s, min(s + 1000, count)) for s in range(0, count, 1000)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_write_chunk, tasks)
    return time.perf_counter() - start


def _sizes(lines: list[str]) -> dict[str, float]:
    """MB of each ``Name: <kB> kB`` line of an smaps file, summed by name."""
    sizes: dict[str, float] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            sizes[name] = sizes.get(name, 0.0) + int(value.split()[0]) / 1024
    return sizes


def memory() -> dict[str, float]:
    """This process's peak RSS, its RSS, PSS and private memory, and the private memory of its
    mappings of ``.npy`` files (the cache: the rest of a mapping is the shared page cache), in MB."""
    total = _sizes(Path("/proc/self/smaps_rollup").read_text().splitlines()[1:])
    mapped, in_npy = [], False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if not line.split(":", 1)[0].isidentifier():  # a mapping's header: its address range, then the path
            in_npy = line.endswith(".npy")
        elif in_npy:
            mapped.append(line)
    cache = _sizes(mapped)
    return {
        "peak_rss_mb": rounded(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb": rounded(total["Rss"], 1),
        "pss_mb": rounded(total["Pss"], 1),
        "private_mb": rounded(total.get("Private_Clean", 0) + total.get("Private_Dirty", 0), 1),
        "cache_mapping_rss_mb": rounded(cache.get("Rss", 0), 1),
        "cache_mapping_private_mb": rounded(cache.get("Private_Clean", 0) + cache.get("Private_Dirty", 0), 1),
    }


class FirstStep(Callback):
    """At the first training step: the seconds since the run was launched, then (``touch``) every
    training image read once, and the memory; written to ``<out>.rank<r>.json``."""

    def __init__(self, out: str, touch: bool = False) -> None:
        self.out, self.touch, self.done = out, touch, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done:
            return
        self.done = True
        seconds = time.time() - float(os.environ[LAUNCHED])
        if self.touch:
            images = trainer.datamodule.splits["train"].all_images
            for start in range(0, len(images), 4096):
                images[start : start + 4096].sum()
        Path(f"{self.out}.rank{trainer.global_rank}.json").write_text(json.dumps({"seconds": seconds, **memory()}))


def fit_until_first_step(name: str, data_dir: Path, work: Path, *extra: str, touch: bool = False, ranks: int = 1) -> list[dict[str, Any]]:
    """``fit`` of the ConvVAE for one step; what :class:`FirstStep` recorded in each process."""
    out = work / name
    callback = {"class_path": "tools.data_benchmark.FirstStep", "init_args": {"out": str(out), "touch": touch}}
    devices = ["--trainer.strategy=ddp", f"--trainer.devices={ranks}"] if ranks > 1 else ["--trainer.devices=1"]
    args = cli("fit", "--config", "configs/default.yaml", "--config", "configs/conv.yaml",
            f"--data.data_dir={data_dir}", "--data.download=false", f"--trainer.default_root_dir={work / 'runs' / name}",
            "--trainer.accelerator=cpu", *devices, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", "--trainer.logger=false",
            "--progress_bar.refresh_rate=0", f"--trainer.callbacks+={json.dumps(callback)}", *extra)
    run(args, work / f"{name}.log", env={**os.environ, LAUNCHED: repr(time.time()), "OMP_NUM_THREADS": "1"})
    return [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(ranks)]


def decode_rate(folder: Path, cache: Path, workers: int) -> float:
    """Images/s of the first decode of the training split into ``cache``."""
    from vae_lightning.data.cache import cached_split, image_folder_source

    source = image_folder_source(folder, train=True, channels=None, image_size=None)
    start = time.perf_counter()
    cached_split(source, cache, workers=workers)
    return len(source.samples) / (time.perf_counter() - start)


def convert_to_litdata(folder: Path, out: Path, log: Path) -> dict[str, Any]:
    """``python -m vae_lightning.data.optimize`` of the image folder into ``out``: what :func:`run`
    records, the images each split holds (read back from LitData's index), images/s and MB written."""
    from vae_lightning.data.streaming import INDEX_FILE, SPLITS, split_location

    args = [sys.executable, "-m", "vae_lightning.data.optimize", "--dataset", "image_folder", "--data_dir", str(shown(folder)),
            "--out", str(shown(out)), "--workers", str(CONVERT_WORKERS)]
    timing = run(args, log, env={**os.environ, "OMP_NUM_THREADS": "1"})
    counts = {}
    for split in SPLITS:
        index = json.loads((Path(split_location(str(out), split)) / INDEX_FILE).read_text())
        counts[f"{split}_images"] = sum(chunk["chunk_size"] for chunk in index["chunks"])
    written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return timing | counts | {
        "images_per_s": rounded(sum(counts.values()) / timing["wall_time_s"], 0),
        "written_mb": rounded(written / 2**20, 1),
    }


def feed_rate(batches, count: int) -> float:
    """Images/s of ``count`` batches of ``batches`` after the first (which starts any workers);
    then its workers are stopped, as Lightning stops them after a run, so they take no CPU from
    the loaders timed next nor are copied into those loaders' workers."""
    from lightning.pytorch.utilities.combined_loader import _shutdown_workers_and_reset_iterator

    iterator = iter(batches)
    next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(count):
        try:
            batch = next(iterator)
        except StopIteration:  # a small folder: the next epoch's pass (its start counted too)
            iterator = iter(batches)
            batch = next(iterator)
        images += len(batch[0])
    rate = images / (time.perf_counter() - start)
    del iterator
    _shutdown_workers_and_reset_iterator(batches)
    return rate


def streaming_train_loader(litdata: Path, num_workers: int):
    """The training loader of a ``data.dataset streaming`` run on ``litdata``, as the datamodule builds it."""
    from vae_lightning.data import ImageDataModule

    data = ImageDataModule(data_dir=str(litdata), dataset="streaming", download=False, num_workers=num_workers)
    data.setup("fit")
    return data.train_dataloader()


def training_rates(folder: Path, litdata: Path, mnist_dir: str, work: Path, batches: int) -> dict[str, float]:
    """Images/s fed by each loader, and consumed by ConvVAE training steps at 64x64; each
    loader's ratio to ImageFolder + DataLoader's."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from tools.benchmark import Floor
    from vae_lightning.data import ImageDataModule

    cached = ImageDataModule(data_dir=str(folder), dataset="image_folder", download=False)
    cached.setup("fit")
    mnist = ImageDataModule(data_dir=mnist_dir, download=False)
    mnist.setup("fit")
    baseline = DataLoader(datasets.ImageFolder(str(folder / "train"), transform=transforms.ToTensor()), batch_size=128,
                          shuffle=True, num_workers=2, persistent_workers=True)
    floor = Floor(str(folder), str(work / "floor"), "--config", str(ROOT / "configs/conv.yaml"), "--data.dataset=image_folder")
    x = floor._next_batch()
    for _ in range(3):  # warm-up
        floor.train_step(x)
    start = time.perf_counter()
    for _ in range(batches // 4):
        floor.train_step(x)
    consumed = 128 * (batches // 4) / (time.perf_counter() - start)
    rates = {
        "cache_loader_images_per_s": rounded(feed_rate(cached.train_dataloader(), batches), 0),
        "litdata_loader_images_per_s": rounded(feed_rate(streaming_train_loader(litdata, 0), batches), 0),
        "litdata_loader_2_workers_images_per_s": rounded(feed_rate(streaming_train_loader(litdata, 2), batches), 0),
        "imagefolder_dataloader_2_workers_images_per_s": rounded(feed_rate(baseline, batches), 0),
        "mnist_in_memory_loader_images_per_s": rounded(feed_rate(mnist.train_dataloader(), batches), 0),
        "convvae_64x64_training_images_per_s": rounded(consumed, 0),
    }
    baseline_rate = rates["imagefolder_dataloader_2_workers_images_per_s"]
    return rates | {
        "cache_over_imagefolder": rounded(rates["cache_loader_images_per_s"] / baseline_rate, 2),
        "litdata_over_imagefolder": rounded(rates["litdata_loader_images_per_s"] / baseline_rate, 2),
        "litdata_2_workers_over_imagefolder": rounded(rates["litdata_loader_2_workers_images_per_s"] / baseline_rate, 2),
        "cache_over_convvae_consumption": rounded(rates["cache_loader_images_per_s"] / rates["convvae_64x64_training_images_per_s"], 2),
    }


def main() -> None:
    parser = script_parser(__doc__, summarize=False)
    parser.add_argument("--images", type=int, default=200_000, help="training images in the synthetic folder")
    parser.add_argument("--batches", type=int, default=200, help="batches of 128 timed per loader")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each start-up, the fastest kept")
    parser.add_argument("--work", default=str(ROOT / "runs/docs/data_benchmark"), help="where the folder and the runs go")
    parser.add_argument("--out", default=str(RESULTS / "data_benchmark.json"))
    options = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(options.work)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "images"
    result: dict[str, Any] = {"command": " ".join(["python -m tools.data_benchmark", *sys.argv[1:]]), "images": options.images,
                              "machine": machine(), "uptime_before": uptime()}
    result["write_folder_s"] = rounded(write_folder(folder, options.images), 1)
    print(f"wrote {options.images:,} PNGs in {result['write_folder_s']} s", flush=True)

    from vae_lightning.data.cache import cache_folder

    one, two = decode_rate(folder, work / "cache_1_worker", 1), decode_rate(folder, cache_folder(folder, None), 2)
    result["decode"] = {"1_worker_images_per_s": rounded(one, 0), "2_workers_images_per_s": rounded(two, 0), "ratio": rounded(two / one, 2)}
    print(result["decode"], flush=True)

    mnist = Path(options.data_dir).resolve()
    starts = {
        "mnist_idx": (mnist,),
        "folder_cache": (folder, "--data.dataset=image_folder"),
        "folder_no_cache": (folder, "--data.dataset=image_folder", "--data.cache=false"),
    }
    seconds = {name: math.inf for name in starts}
    for repeat in range(options.repeats):  # alternating, the fastest of each: the machine's load only adds
        for name, (data_dir, *extra) in starts.items():
            seconds[name] = min(seconds[name], fit_until_first_step(f"{name}_{repeat}", data_dir, work, *extra)[0]["seconds"])
    result["start_up"] = {f"{name}_s": rounded(s, 1) for name, s in seconds.items()} | {
        "data_start_up_cache_s": rounded(seconds["folder_cache"] - seconds["mnist_idx"], 1),
        "data_start_up_no_cache_s": rounded(seconds["folder_no_cache"] - seconds["mnist_idx"], 1),
    }
    print(result["start_up"], flush=True)

    dataset_mb = options.images * 3 * 64 * 64 / 2**20
    memory_runs = {
        "one_process_cache": fit_until_first_step("one_cache", folder, work, "--data.dataset=image_folder", touch=True),
        "one_process_no_cache": fit_until_first_step("one_no_cache", folder, work, "--data.dataset=image_folder", "--data.cache=false", touch=True),
        "ddp_2_cache": fit_until_first_step("ddp_cache", folder, work, "--data.dataset=image_folder", touch=True, ranks=2),
        "ddp_2_no_cache": fit_until_first_step("ddp_no_cache", folder, work, "--data.dataset=image_folder", "--data.cache=false", touch=True, ranks=2),
    }
    result["memory"] = {"training_images_mb": rounded(dataset_mb, 1)} | {
        name: [{key: value for key, value in record.items() if key != "seconds"} for record in records] for name, records in memory_runs.items()
    }
    # what the extra process holds of the images alone: with the cache, its mapping's private
    # pages; without, the private memory beyond the cached run's process outside its mapping
    cached, uncached = result["memory"]["ddp_2_cache"][1], result["memory"]["ddp_2_no_cache"][1]
    copy_mb = uncached["private_mb"] - (cached["private_mb"] - cached["cache_mapping_private_mb"])
    result["memory"]["extra_ddp_process_images_share_cache"] = rounded(cached["cache_mapping_private_mb"] / dataset_mb, 3)
    result["memory"]["extra_ddp_process_images_share_no_cache"] = rounded(copy_mb / dataset_mb, 3)
    print(result["memory"], flush=True)

    litdata = work / "litdata"
    result["litdata"] = convert_to_litdata(folder, litdata, work / "optimize.log")
    print(result["litdata"], flush=True)

    result["training"] = training_rates(folder, litdata, str(mnist), work, options.batches)
    print(result["training"], flush=True)
    result["uptime_after"] = uptime()
    write_json(Path(options.out), result)


if __name__ == "__main__":
    main()
