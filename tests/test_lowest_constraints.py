"""tools/lowest_constraints.py (python -m tools.lowest_constraints): the floor environment's pins come from pyproject.toml's ranges."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from helpers.runs import REPO_ROOT

from tools.lowest_constraints import NoLowerBound, constraints


def project(dependencies: list[str], **extras: list[str]) -> dict:
    return {"build-system": {"requires": ["setuptools>=77.0.1"]}, "project": {"dependencies": dependencies, "optional-dependencies": extras}}


def test_each_lower_bound_becomes_a_pin_with_the_build_system_and_the_named_extras() -> None:
    pins = constraints(project(["lightning>=2.6.1", "jsonargparse[signatures]>=4.51"], dev=["pytest>=8"], gpu=["x>=1"]), ["dev"], [])
    assert pins == ["setuptools==77.0.1", "lightning==2.6.1", "jsonargparse==4.51", "pytest==8"]


def test_kept_pins_replace_the_floor_of_their_name() -> None:
    pins = constraints(project(["torch>=2.6", "Torch_Vision>=0.18"]), [], ["torch==2.14.1", "torch-vision==0.29.1"])
    assert pins == ["setuptools==77.0.1", "torch==2.14.1", "torch-vision==0.29.1"]


def test_a_bound_with_an_upper_limit_keeps_its_floor() -> None:
    assert constraints(project(["numpy>=1.26,<3"]), [], [])[1] == "numpy==1.26"


@pytest.mark.parametrize("requirement", ["numpy", "numpy<3", "numpy>=1,>=2"])
def test_a_requirement_without_one_floor_is_refused_by_name(requirement: str) -> None:
    with pytest.raises(NoLowerBound, match="numpy.*one lower bound"):
        constraints(project([requirement]), [], [])


def test_an_unknown_extra_is_refused_naming_those_there_are() -> None:
    with pytest.raises(KeyError, match="no such extra in pyproject.toml: gpu .it has dev"):
        constraints(project([], dev=["pytest>=8"]), ["gpu"], [])


def test_the_projects_own_pyproject_has_a_floor_for_every_requirement() -> None:
    """What .ci/lowest-versions installs: every requirement pinned, torch at this machine's version."""
    command = [sys.executable, "-m", "tools.lowest_constraints", "--extras", "dev", "postgres", "--keep", "torch==2.14.1"]
    made = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    pins = made.stdout.split()
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert len(pins) == 1 + len(declared["dependencies"]) + sum(len(declared["optional-dependencies"][e]) for e in ("dev", "postgres"))
    assert "torch==2.14.1" in pins and all("==" in pin for pin in pins)
