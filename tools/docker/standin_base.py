#!/usr/bin/env python3
"""Make (or find) a local stand-in for the Dockerfile's base image, for machines that reach no
image registry, so that the project's own Dockerfile can be built and run there unchanged.

The real base, ``pytorch/pytorch:<version>-cuda<c>-cudnn<d>-runtime`` (pytorch/pytorch's
Dockerfile, stage ``official``), is Ubuntu 22.04 with ca-certificates, libjpeg-dev, libpng-dev
and gcc, Python 3.11 at ``/opt/conda`` whose ``bin`` comes first on ``PATH``, CUDA builds of
torch, torchvision and torchaudio installed with pip, NVIDIA's environment variables,
``WORKDIR /workspace``, root as the user. The stand-in has the same, except:

- Debian bookworm (``debootstrap --variant=minbase``) instead of Ubuntu 22.04;
- Debian's Python 3.11 in a virtual environment at ``/opt/conda`` instead of conda's
  (``python`` and ``pip`` are that environment's; there is no ``conda`` command);
- torch ``TORCH`` and torchvision ``TORCHVISION`` (CUDA builds, from the wheels the host's pip
  finds) instead of the tag's version, and no torchaudio, torchelastic or ipython, which the
  project does not use;
- the host's CA bundle in place of Debian's, with ``/etc/pip.conf`` naming it, so that pip in a
  build trusts what the host trusts (a network whose proxy re-signs TLS needs that).

The image is tagged ``vae-lightning-base:<hash>``, the hash of what it is made from (this file,
the real base it stands in for, the host's CA bundle): a rerun finds it and builds nothing.

Usage (as root, with Debian's debootstrap and a Docker engine, e.g. tools/docker/engine.sh)::

    python tools/docker/standin_base.py [--timings FILE] [--rebuild]

prints the tag; ``--timings`` writes the seconds each step took as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
REPOSITORY = "vae-lightning-base"
SUITE = "bookworm"
#: the real base's system packages (ca-certificates, libjpeg-dev, libpng-dev, gcc for triton),
#: and Debian's Python with its venv module in place of conda
SYSTEM_PACKAGES = ["ca-certificates", "libjpeg-dev", "libpng-dev", "gcc", "python3", "python3-venv"]
#: the newest releases the package index here offers (the real base's are older: its tag's)
TORCH = "2.14.1"
TORCHVISION = "0.29.1"
#: what conda puts beside torch in the real base and the project needs (numpy, PyYAML), and a
#: current pip in place of the one Debian's venv module bundles
PYTHON_PACKAGES = [f"torch=={TORCH}", f"torchvision=={TORCHVISION}", "numpy", "pyyaml"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: the real base's environment and working directory, in its own order
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV NVIDIA_VISIBLE_DEVICES=all",
    "ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    "ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    f"ENV PYTORCH_VERSION={TORCH}",
    'LABEL com.nvidia.volumes.needed="nvidia_driver"',
    "WORKDIR /workspace",
    'CMD ["/bin/bash"]',
]
SETUP = " && ".join(
    [
        "python3 -m venv /opt/conda",
        "/opt/conda/bin/python -m pip install --quiet --no-cache-dir --no-index --find-links /mnt/wheels --upgrade pip",
        "/opt/conda/bin/python -m pip install --quiet --no-cache-dir --no-index --find-links /mnt/wheels " + " ".join(PYTHON_PACKAGES),
        "printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf",
        "/opt/conda/bin/python -c 'import torch, torchvision; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__)'",
    ]
)


def real_base() -> str:
    """The image the Dockerfile builds on by default (its ``ARG BASE_IMAGE=``)."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"{DOCKERFILE} has no ARG BASE_IMAGE=<image>: nothing to stand in for")
    return match.group(1)


def tag() -> str:
    """``vae-lightning-base:<hash>``, the hash of everything the image is made from."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(real_base().encode())
    digest.update(CA_BUNDLE.read_bytes())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def quiet(command: list[str], **kwargs) -> None:
    """Run ``command``, its output kept back unless it fails (then its last lines end the script)."""
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-20:])
        raise SystemExit(f"{' '.join(command[:3])} ... failed with status {done.returncode}:\n{tail}")


def docker(*args: str, **kwargs) -> None:
    quiet(["docker", *args], **kwargs)


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


@contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    print(f"stand-in base: {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 1)


def unmount_below(folder: Path) -> None:
    """Unmount what an interrupted debootstrap left mounted in the root filesystem (its /proc,
    /sys), deepest first, so that removing the folder cannot reach into them."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{folder}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def clean_apt(rootfs: Path) -> None:
    """What the real base removes too: downloaded packages and package lists."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in rootfs.glob(pattern):
            path.unlink()


def build(name: str) -> dict[str, float]:
    """Make the stand-in and tag it ``name``; returns the seconds each step took."""
    if os.geteuid() != 0:
        raise SystemExit("the stand-in base is made with debootstrap, which needs root: run this as root (or with sudo)")
    if not shutil.which("debootstrap"):
        raise SystemExit("debootstrap is missing: apt-get install debootstrap")
    timings: dict[str, float] = {}
    container = name.replace(":", "-") + "-setup"
    system = name.replace(REPOSITORY, REPOSITORY + "-system")
    with tempfile.TemporaryDirectory(prefix="vae-lightning-base-") as scratch:
        rootfs, wheels = Path(scratch) / "rootfs", Path(scratch) / "wheels"
        try:
            with step("pip download torch, torchvision and what they need", timings):
                quiet([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(wheels), *PYTHON_PACKAGES, "pip"])
            with step(f"debootstrap --variant=minbase {SUITE}", timings):
                quiet(["debootstrap", "--variant=minbase", f"--include={','.join(SYSTEM_PACKAGES)}", SUITE, str(rootfs)])
                clean_apt(rootfs)
            with step("docker import", timings):
                tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
                docker("import", "-", system, stdin=tar.stdout)
                if tar.wait() != 0:
                    raise SystemExit("tar of the root filesystem failed")
            with step("venv at /opt/conda, pip install torch and torchvision", timings):
                subprocess.run(["docker", "rm", "--force", container], capture_output=True)
                docker("create", "--name", container, "--network", "none", "--volume", f"{wheels}:/mnt/wheels:ro", system, "sh", "-c", SETUP)
                docker("cp", str(CA_BUNDLE), f"{container}:{CA_BUNDLE}")
                docker("start", "--attach", container)
            with step("docker commit", timings):
                changes = [arg for change in IMAGE_CHANGES for arg in ("--change", change)]
                changes += ["--change", f'LABEL vae-lightning.stand-in-for="{real_base()}"']
                docker("commit", *changes, container, name)
        finally:
            subprocess.run(["docker", "rm", "--force", container], capture_output=True)
            subprocess.run(["docker", "rmi", system], capture_output=True)  # untags: the stand-in keeps the layer
            unmount_below(rootfs)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timings", type=Path, help="write the seconds each step took here (JSON; {} when reused)")
    parser.add_argument("--rebuild", action="store_true", help="make it again even if an image of this hash exists")
    args = parser.parse_args(argv)
    name = tag()
    timings: dict[str, float] = {}
    if args.rebuild or not image_exists(name):
        timings = build(name)
    else:
        print(f"stand-in base: {name} exists, reused", file=sys.stderr)
    if args.timings:
        args.timings.write_text(json.dumps(timings, indent=2) + "\n")
    print(name)


if __name__ == "__main__":
    main()
