#!/usr/bin/env python3
"""Build and run the Docker image from nothing and record what it takes: docs/results/docker.json.

Starts a private engine with an empty data root (tools/docker/engine.sh), so the stand-in base
and the image are both made from scratch, runs the image's slow tests on it
(``python -m pytest -m slow tests/test_docker.py``, which time each step into a file), reads the
sizes of the base and the image, stops the engine and writes the result file that
docs/docker.md quotes. Needs root (the engine, debootstrap); about 10 minutes on 2 cores.

    python -m tools.docker.measure [--out docs/results/docker.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.common import ROOT, LoadSampler, machine, uptime, write_json
from tools.docker import REQUIRED_ENV, TIMINGS_ENV, standin_base

HERE = Path(__file__).resolve().parent

ENGINE = HERE / "engine.sh"
TEST_IMAGE = "vae-lightning:test"  # tests/test_docker.py builds it
TESTS = ["-m", "pytest", "-m", "slow", "tests/test_docker.py", "-q", "-p", "no:cacheprovider"]


def size_bytes(image: str, env: dict[str, str]) -> int:
    answer = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], env=env, capture_output=True, text=True, check=True)
    return int(answer.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "docker.json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run this as root: it starts a Docker engine and makes the stand-in base with debootstrap")

    with tempfile.TemporaryDirectory(prefix="vae-lightning-docker-") as scratch:
        engine_dir, timings = Path(scratch) / "engine", Path(scratch) / "timings.jsonl"
        start = time.perf_counter()
        started = subprocess.run([str(ENGINE), "start", str(engine_dir)], capture_output=True, text=True, check=True)
        engine_start = time.perf_counter() - start
        host = started.stdout.strip().removeprefix("export DOCKER_HOST=")
        env = {**os.environ, "DOCKER_HOST": host, TIMINGS_ENV: str(timings), REQUIRED_ENV: "1"}
        try:
            version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env, capture_output=True, text=True, check=True)
            before = uptime()
            start = time.perf_counter()
            with LoadSampler() as load:
                tests = subprocess.run([sys.executable, *TESTS], cwd=ROOT, env=env)
            wall = time.perf_counter() - start
            if tests.returncode != 0:
                raise SystemExit(f"the Docker tests failed (status {tests.returncode}): nothing written")
            base, image = size_bytes(standin_base.tag(), env), size_bytes(TEST_IMAGE, env)
        finally:
            start = time.perf_counter()
            subprocess.run([str(ENGINE), "stop", str(engine_dir)], check=True)
            engine_stop = time.perf_counter() - start
        steps = {"engine start": round(engine_start, 1)}
        steps.update((entry["step"], entry["seconds"]) for entry in map(json.loads, timings.read_text().splitlines()))
        steps["engine stop, its data root removed"] = round(engine_stop, 1)

    base_steps = [seconds for step, seconds in steps.items() if step.startswith("stand-in base: ")]
    write_json(
        args.out,
        {
            "command": "python -m tools.docker.measure",
            "tests": "python " + " ".join(TESTS),
            "what": "a private engine with an empty data root; the stand-in base made from nothing, the image built on it "
            "(classic builder, dependencies from the package index), then each container of the slow tests",
            "machine": machine(),
            "engine": f"Docker Engine {version.stdout.strip()}, overlay2",
            "stand_in_for": standin_base.real_base(),
            "base_size_gb": round(base / 1e9, 2),
            "image_size_gb": round(image / 1e9, 2),
            "added_by_the_dockerfile_mb": round((image - base) / 1e6, 1),
            "steps_s": steps,
            "base_total_min": round(sum(base_steps) / 60, 1),
            "tests_wall_min": round(wall / 60, 1),
            "uptime_before": before,
            "uptime_after": uptime(),
            **load.summary(),
        },
    )


if __name__ == "__main__":
    main()
