"""The oldest versions pyproject.toml admits, as a pip constraints file.

Every requirement's lower bound (``>=X``) becomes ``==X``, for the runtime dependencies, the named
extras and the build system alike, so the floor environment of ``.ci/lowest-versions`` is derived
from the declared ranges and cannot drift from them. torch and torchvision are the exception: they
stay at the versions installed here (pip is capped at them), given with ``--keep``.

    python -m tools.lowest_constraints --extras dev postgres --keep torch==2.14.1 torchvision==0.29.1
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class NoLowerBound(ValueError):
    """A requirement whose range has no ``>=`` or ``==`` floor to test."""


def floor(requirement: Requirement) -> str:
    """``name==X`` for the requirement's lower bound (``>=X``, ``==X`` or ``~=X``)."""
    bounds = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
    if len(bounds) != 1:
        raise NoLowerBound(
            f"{requirement}: give it one lower bound (name>=X) in pyproject.toml, so that its oldest admitted "
            f"version can be tested; found {len(bounds)}"
        )
    return f"{canonicalize_name(requirement.name)}=={bounds[0]}"


def requirements(pyproject: dict, extras: list[str]) -> list[Requirement]:
    """The build system's, the project's and the named extras' requirements, in that order."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise KeyError(f"no such extra in pyproject.toml: {', '.join(unknown)} (it has {', '.join(sorted(optional))})")
    texts = [*pyproject.get("build-system", {}).get("requires", []), *project.get("dependencies", [])]
    for extra in extras:
        texts += optional[extra]
    return [Requirement(text) for text in texts]


def constraints(pyproject: dict, extras: list[str], keep: list[str]) -> list[str]:
    """One ``name==version`` line per distribution; ``keep`` pins (``name==X``) replace the floor of
    the same name."""
    kept = {canonicalize_name(Requirement(pin).name): str(Requirement(pin)) for pin in keep}
    lines: dict[str, str] = {}
    for requirement in requirements(pyproject, extras):
        name = canonicalize_name(requirement.name)
        lines[name] = kept.get(name) or floor(requirement)
    return list(lines.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--extras", nargs="*", default=[], help="optional-dependency groups to include")
    parser.add_argument("--keep", nargs="*", default=[], help="name==version pins used instead of the floor")
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text())
    try:
        print("\n".join(constraints(pyproject, args.extras, args.keep)))
    except (NoLowerBound, KeyError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
