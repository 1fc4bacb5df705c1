"""The README's commands and code, as written: each `python -m vae_lightning ...` line parses with
the CLI (``--print_config``), the Python block runs against a trained checkpoint, the set-up
commands name extras that exist and the test command CI runs. They run in a folder laid out as
a user's checkout after one training run: ``configs/`` and ``lightning_logs/version_0``."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest
import tomllib
from helpers.runs import REPO_ROOT

from vae_lightning.cli import main as cli_main
from vae_lightning.data.optimize import parse as optimize_parse
from vae_lightning.experiments.cli import build_parser
from vae_lightning.experiments.spec import load_experiment
from vae_lightning.explore import main as explore_main

README = (REPO_ROOT / "README.md").read_text()
TRAINING_DOC = (REPO_ROOT / "docs" / "training.md").read_text()


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def shell_commands(text: str) -> list[list[str]]:
    """Each command of the text's bash blocks, as words, continuation lines joined, `&&` split."""
    commands = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:end])
                words = words[end + 1 :]
    return commands


@pytest.fixture
def checkout(tmp_path: Path, trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with the repository's configs and one finished run as version_0."""
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    (tmp_path / "lightning_logs").mkdir()
    (tmp_path / "lightning_logs" / "version_0").symlink_to(trained_run)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parses(run, args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run([*args, "--print_config"])
    printed = capsys.readouterr()
    assert exit_info.value.code == 0, f"refused: {' '.join(args)}\n{printed.err[-2000:]}"
    return printed.out


def test_every_cli_command_of_the_readme_parses_as_written(checkout: Path, capsys: pytest.CaptureFixture) -> None:
    commands = [words for words in shell_commands(README) if words[:2] in (["python", "-m"], [".venv/bin/python", "-m"])]
    modules = {words[2] for words in commands}
    assert {"vae_lightning", "vae_lightning.explore", "vae_lightning.experiments", "pytest"} <= modules
    for words in commands:
        module, args = words[2], words[3:]
        if module == "vae_lightning":
            assert "lightning_logs" not in args or (checkout / "lightning_logs" / "version_0").exists()
            parses(cli_main, args, capsys)
        elif module == "vae_lightning.explore":
            parses(explore_main, args, capsys)
        elif module == "vae_lightning.data.optimize":
            assert optimize_parse(args).out
        elif module == "vae_lightning.experiments":
            parsed, extra = build_parser().parse_known_args(args)
            assert not [a for a in extra if a.startswith("-") and not a.startswith("--")]
            assert load_experiment(parsed.experiment).name


def test_the_set_up_commands_install_extras_that_exist_and_run_the_test_command_ci_runs_on_both_ends() -> None:
    extras = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    installs = [words for words in shell_commands(README) if words[1:3] == ["install", "-e"]]
    assert len(installs) == 2
    for words in installs:
        named = re.fullmatch(r"\.(?:\[(.*)\])?", words[3]).group(1)
        assert set(filter(None, (named or "").split(","))) <= extras
    ci = (REPO_ROOT / ".ci" / "run").read_text().strip().splitlines()
    floor = (REPO_ROOT / ".ci" / "lowest-versions").read_text().strip().splitlines()
    assert "python -m pytest" in ci and ci[-1] == ".ci/lowest-versions" and floor[-1] == "python -m pytest"
    assert [".venv/bin/python", "-m", "pytest"] in shell_commands(README)


def test_the_readme_python_block_generates_images_from_a_checkpoint(checkout: Path) -> None:
    (block,) = code_blocks(README, "python")
    (checkout / "snippet.py").write_text(block)
    runpy.run_path(str(checkout / "snippet.py"))
    from PIL import Image

    with Image.open(checkout / "samples.png") as grid:
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 cells of 28 pixels and 2 of padding


def test_the_custom_network_of_the_training_page_builds_from_its_yaml(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (network,) = code_blocks(TRAINING_DOC, "python")[:1]
    (config,) = code_blocks(TRAINING_DOC, "yaml")
    (checkout / "my_networks.py").write_text(network)
    (checkout / "my_vae.yaml").write_text(config)
    monkeypatch.syspath_prepend(str(checkout))  # python -m puts the working folder on the path
    command = next(words for words in shell_commands(TRAINING_DOC) if "my_vae.yaml" in words)
    assert command[3] == "fit"
    cli = cli_main(command[4:], run=False)  # without running: the subcommand is left out
    assert type(cli.model.network).__name__ == "TinyVAE"
    assert cli.model.network.image_shape == (1, 28, 28)
