"""The Docker engine the image's tests build and run on: the client, timed commands, containers
that never outlive a test, the stand-in base.

Environment variables:

- ``DOCKER_HOST``: the engine (``tools/docker/engine.sh start`` prints it); the client's default
  socket otherwise.
- ``VAE_LIGHTNING_DOCKER_REQUIRED=1`` (set by ``.ci/run``): a missing engine or tool fails the
  tests instead of skipping them.
- ``VAE_LIGHTNING_DOCKER_BASE``: build on this base image instead of the stand-in (e.g. the real
  ``pytorch/pytorch`` image, where a registry can be reached).
- ``VAE_LIGHTNING_DOCKER_TIMINGS``: a file that each timed step appends a JSON line to
  (``python -m tools.docker.measure`` reads it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import NoReturn

import pytest

from tools.docker import REQUIRED_ENV, TIMINGS_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_SCRIPT = REPO_ROOT / "tools" / "docker" / "standin_base.py"
BASE_ENV = "VAE_LIGHTNING_DOCKER_BASE"
#: the uid and gid the image is built for when the tests run as root: building for root would
#: hide a folder the image's unprivileged user cannot write
STAND_IN_USER = (2345, 2345)


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead where the engine is required (CI)."""
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRED_ENV}=1: required here)")
    pytest.skip(reason)


def record(step: str, seconds: float) -> None:
    """Append a timed step to the timings file, when one is named."""
    path = os.environ.get(TIMINGS_ENV)
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"step": step, "seconds": round(seconds, 1)}) + "\n")


def docker(*args: str, timeout: float = 120, step: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``docker <args>``, output captured as text; ``step`` names it in the timings file."""
    start = time.perf_counter()
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if step:
        record(step, time.perf_counter() - start)
    return result


def engine_version() -> str:
    """The engine's version, or a skip (a failure where required) saying why there is none."""
    if not shutil.which("docker"):
        unavailable("no docker client: install Debian's docker.io and start an engine with tools/docker/engine.sh (docs/docker.md)")
    try:
        answer = docker("version", "--format", "{{.Server.Version}}", timeout=30)
    except subprocess.TimeoutExpired:
        unavailable("the Docker engine does not answer within 30 s")
    if answer.returncode != 0:
        unavailable(
            f"no Docker engine answers ({answer.stderr.strip().splitlines()[-1] if answer.stderr.strip() else 'docker version failed'}): "
            "start one with tools/docker/engine.sh and export the DOCKER_HOST it prints (docs/docker.md)"
        )
    return answer.stdout.strip()


def base_image(scratch: Path) -> str:
    """The base to build on: ``VAE_LIGHTNING_DOCKER_BASE``, or the stand-in, made if missing
    (its steps' seconds go to the timings file, when it is made)."""
    if os.environ.get(BASE_ENV):
        return os.environ[BASE_ENV]
    steps = scratch / "base-timings.json"
    command = [sys.executable, str(STANDIN_SCRIPT), "--timings", str(steps)]
    made = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=REPO_ROOT)
    if made.returncode != 0 and os.geteuid() != 0:
        unavailable(f"the stand-in base image is missing and only root can make it: {made.stderr.strip().splitlines()[-1]}")
    assert made.returncode == 0, f"{' '.join(command)} failed:\n{made.stderr[-3000:]}"
    for step, seconds in json.loads(steps.read_text()).items():
        record(f"stand-in base: {step}", seconds)
    return made.stdout.split()[-1]


def run_user() -> tuple[int, int]:
    """The uid and gid to build the image for: the host user's, or an unprivileged stand-in's
    when the tests run as root."""
    uid, gid = os.getuid(), os.getgid()
    return STAND_IN_USER if uid == 0 else (uid, gid)


def run_container(args: list[str], timeout: float, step: str | None = None) -> subprocess.CompletedProcess:
    """``docker run --rm --name <unique> <args>``; a container still running at ``timeout`` is
    removed (the client going away does not stop it) and the timeout raised."""
    name = f"vae-lightning-test-{uuid.uuid4().hex[:8]}"
    try:
        return docker("run", "--rm", "--name", name, *args, timeout=timeout, step=step)
    except subprocess.TimeoutExpired:
        docker("rm", "--force", name, timeout=60)
        raise


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
