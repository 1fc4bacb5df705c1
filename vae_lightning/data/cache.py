"""A decoded cache of images read through PIL: decode a split once, then map it in every run.

Without it an image folder is decoded with PIL at every start and in every process, and each
DDP process holds its own copy of the pixels. The first run here decodes a split with several worker processes into one ``.npy`` file of uint8
pixels (N, C, H, W), beside a JSON index with the labels, the class names, the image shape, the
format version and a fingerprint of what it was made from (every file's path, size and
modification time, and the shape ``channels`` and ``image_size`` give). Later runs, and every
process of a DDP run, map that file read-only (``np.load(mmap_mode="r")``, as nanoGPT keeps its
tokens): start-up reads the index and stats the files; the page cache holds one copy for all.

A changed, added or removed image, or a cache of another format version, is rebuilt with a line
saying why. A pixel file that is cut short or is not the array its index describes is an error
naming the file and the fix, never wrong pixels. One process builds at a time (a ``filelock``
on the cache, released by the OS if the process dies); the others wait, then map the result.
The files appear by atomic renames, so a cache is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch import Tensor
from tqdm import tqdm

from vae_lightning.data.sources import image_folder_classes, image_folder_reader, image_folder_samples
from vae_lightning.runtime.errors import CorruptDataError, UserError

#: what the index's ``format`` says, and the version of the layout this code reads and writes
FORMAT = "vae_lightning decoded images"
FORMAT_VERSION = 1
#: the cache folder under the data folder (the default), and the user's cache folder otherwise
LOCAL_FOLDER = ".vae_lightning_cache"
CHUNK = 256  # images per task of a decoding worker
IMAGES_PER_WORKER = 512  # fewer per worker decode in-process: starting a worker costs more


@dataclass(frozen=True)
class CacheSource:
    """What one split's cache is made from.

    Args:
        name: the split's name, which names the cache files with the image shape.
        root: the folder the images are in; the fingerprint holds their paths relative to it.
        samples: ``(path, label)`` of every image, in the order served.
        classes: the class names the labels index.
        shape: (channels, height, width) of every decoded image.
        decode: picklable; a path -> uint8 (C, H, W) image of ``shape``.
    """

    name: str
    root: Path
    samples: list[tuple[str, int]]
    classes: list[str]
    shape: tuple[int, int, int]
    decode: Callable[[str], Tensor]

    def fingerprint(self) -> str:
        """SHA-256 of the format version, the shape, and every image's path, size, mtime and label."""
        digest = hashlib.sha256(f"{FORMAT_VERSION} {self.shape}\n".encode())
        for path, label in self.samples:
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, self.root)}\t{stat.st_size}\t{stat.st_mtime_ns}\t{label}\n".encode())
        return digest.hexdigest()


def image_folder_source(data_dir: Path, train: bool, channels: int | None, image_size: int | None) -> CacheSource:
    """The cache source of a split of an ``ImageFolder`` layout (see ``sources.py``)."""
    samples = image_folder_samples(data_dir, train)
    shape, decode = image_folder_reader(data_dir, channels, image_size)
    return CacheSource("train" if train else "test", data_dir, samples, image_folder_classes(data_dir), shape, decode)


def cache_folder(data_dir: Path, cache_dir: str | None) -> Path:
    """Where ``data_dir``'s cache lives: ``<data_dir>/.vae_lightning_cache`` when ``cache_dir`` is
    ``None`` and that can be written, else a folder named after ``data_dir`` under ``cache_dir``
    or the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``vae_lightning``)."""
    if cache_dir is None and _writable(data_dir / LOCAL_FOLDER):
        return data_dir / LOCAL_FOLDER
    base = Path(cache_dir) if cache_dir is not None else Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "vae_lightning"
    resolved = data_dir.expanduser().resolve()
    return base.expanduser() / f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:12]}"


def _writable(path: Path) -> bool:
    """Whether ``path`` or, when it does not exist, its nearest existing parent can be written."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK)


def cached_split(source: CacheSource, folder: Path, workers: int | None = None) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of ``source``: uint8 (N, C, H, W) mapped read-only from the cache in
    ``folder``, decoded there first (with ``workers`` processes; ``None``: one per core, at most
    8) when it is missing or out of date."""
    c, h, w = source.shape
    pixels = folder / f"{source.name}-{c}x{h}x{w}.npy"
    fingerprint = source.fingerprint()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the data cache folder {folder}: {err}. Set --data.cache_dir to a writable folder, or --data.cache false.") from err
    if not os.access(folder, os.W_OK):  # e.g. a cache made beforehand on a read-only share: read it as it is
        loaded, reason = _load(pixels, fingerprint)
        if loaded is None:
            raise UserError(f"data cache {pixels} is {reason}, and {folder} is read-only. Set --data.cache_dir to a writable folder, or --data.cache false.")
        return loaded
    lock = FileLock(str(pixels.with_suffix(".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"data cache {pixels}: waiting for another process to finish writing it", file=sys.stderr)
        lock.acquire()
    try:
        loaded, reason = _load(pixels, fingerprint)
        if loaded is None:
            _build(source, pixels, fingerprint, reason, workers)
            loaded, reason = _load(pixels, fingerprint)
        assert loaded is not None, reason
        return loaded
    finally:
        lock.release()


def _index_path(pixels: Path) -> Path:
    return pixels.with_suffix(".json")


def _fix(pixels: Path) -> str:
    return f"Delete {pixels} and {_index_path(pixels)} to decode the images again, or set --data.cache_dir to another folder."


def _load(pixels: Path, fingerprint: str) -> tuple[tuple[Tensor, Tensor] | None, str]:
    """The mapped cache, or ``None`` and why it must be built; an error when it is damaged."""
    index_path = _index_path(pixels)
    if not index_path.is_file():
        return None, "not built yet"
    try:
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"its format is {index.get('format')!r}")
    except (ValueError, AttributeError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"data cache index {index_path} is not one this program wrote ({err}). {_fix(pixels)}") from err
    if index.get("version") != FORMAT_VERSION:
        return None, f"of format version {index.get('version')} (this version reads {FORMAT_VERSION})"
    if index.get("fingerprint") != fingerprint:
        return None, f"out of date: the images or settings changed ({index.get('count', '?')} images when it was made)"
    if not pixels.is_file():
        return None, "missing its pixel file"
    images = _map(pixels, (index["count"], *index["shape"]))
    with warnings.catch_warnings():  # read-only by design: one shared copy in the page cache
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return (torch.from_numpy(images), torch.tensor(index["labels"], dtype=torch.int64)), "ready"


def _map(pixels: Path, shape: tuple[int, ...]) -> np.ndarray:
    """``pixels`` mapped read-only, once its header and size are those of uint8 ``shape``."""
    try:
        with pixels.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            found, fortran_order, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as err:
        raise CorruptDataError(f"data cache file {pixels} is not a NumPy array file ({err}). {_fix(pixels)}") from err
    if found != shape or dtype != np.uint8 or fortran_order:
        raise CorruptDataError(f"data cache file {pixels} holds {dtype} {found}, not the uint8 {shape} its index describes. {_fix(pixels)}")
    size, expected = pixels.stat().st_size, offset + math.prod(shape)
    if size != expected:
        state = "truncated" if size < expected else "too long"
        raise CorruptDataError(f"data cache file {pixels} is {state}: {size:,} bytes, expected {expected:,}. {_fix(pixels)}")
    return np.memmap(pixels, dtype=np.uint8, mode="r", offset=offset, shape=shape)  # the header read above, not again


def _build(source: CacheSource, pixels: Path, fingerprint: str, reason: str, workers: int | None) -> None:
    """Decode every image into a temporary file, then rename it and its index into place."""
    count = len(source.samples)
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, min(cores, 8, count // IMAGES_PER_WORKER))
    print(f"data cache {pixels} is {reason}: decoding {count:,} images of {source.root} with {workers} worker(s)", file=sys.stderr)
    for stale in pixels.parent.glob(f"{pixels.name}.*.tmp"):  # left by a process that died writing (we hold the lock)
        stale.unlink(missing_ok=True)
    _index_path(pixels).unlink(missing_ok=True)  # no index, no cache: an interrupted build is rebuilt
    temporary = pixels.with_name(f"{pixels.name}.{os.getpid()}.tmp")
    try:
        np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(count, *source.shape)).flush()
        paths = [path for path, _ in source.samples]
        tasks = [(str(temporary), start, paths[start : start + CHUNK], source.decode) for start in range(0, count, CHUNK)]
        with tqdm(total=count, unit="img", desc="decoding", file=sys.stderr, mininterval=1.0) as progress:
            if workers == 1:
                for task in tasks:
                    progress.update(_decode_chunk(task))
            else:
                # fork, as DataLoader's workers start; the workers only read files and write pixels
                context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
                with context.Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                    for done in pool.imap_unordered(_decode_chunk, tasks):
                        progress.update(done)
        os.replace(temporary, pixels)
    finally:
        temporary.unlink(missing_ok=True)
    index = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "root": str(source.root),
        "count": count,
        "shape": list(source.shape),
        "classes": source.classes,
        "labels": [label for _, label in source.samples],
    }
    written = pixels.with_name(f"{pixels.name}.index.{os.getpid()}.tmp")
    written.write_text(json.dumps(index))
    os.replace(written, _index_path(pixels))


def _decode_chunk(task: tuple[str, int, list[str], Callable[[str], Tensor]]) -> int:
    """Decode ``paths`` into rows ``start``... of the pixel file; returns how many."""
    file, start, paths, decode = task
    pixels = np.load(file, mmap_mode="r+")
    for i, path in enumerate(paths):
        pixels[start + i] = decode(path).numpy()
    pixels.flush()
    return len(paths)
