"""Every bad input of tests/helpers/bad_input_cases.py, run in this process against an earlier
run and an earlier sweep: the command exits 2 with exactly one ``error:`` paragraph holding the
case's words (the problem and the fix), no traceback, and leaves every file of the earlier run
and sweep byte-identical, with nothing added beside them. The table in docs/reliability.md is
these cases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.bad_input_cases import CASES, CLI, DOC, SWEEP, Case, Where, doc_block, render_table
from helpers.compare import file_digests
from helpers.runs import TRACEBACK, in_process, short_fit_args
from helpers.sweeps import CLIP, one_torch_thread, write_experiment  # noqa: F401 - one_torch_thread: an autouse fixture

from vae_lightning.cli import run_cli
from vae_lightning.experiments.cli import main as experiments_main

#: The earlier run: 2 training batches and 1 validation batch, enough to leave checkpoints.
TINY_FIT = ("--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--progress_bar.refresh_rate=0")


@dataclass(frozen=True)
class Earlier:
    """An earlier run and a stored sweep, with the SHA-256 of each of their files."""

    folder: Path
    root: Path
    experiment: Path
    digests: dict[str, str]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Earlier:
    folder = tmp_path_factory.mktemp("earlier")
    root = folder / "run"
    assert run_cli(short_fit_args(mnist_dir, root, *TINY_FIT)) == 0
    assert (root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    (folder / "sweep").mkdir()
    experiment = write_experiment(folder / "sweep", mnist_dir, {CLIP: [0.5]}, seeds=[0])
    assert experiments_main(["run", str(experiment), "--fast", "--no-report"]) == 0
    return Earlier(folder, root, experiment, file_digests(folder))  # each case: nothing changed, nothing added


def error_paragraphs(err: str) -> list[str]:
    """Each paragraph of ``err`` whose first line starts with ``error:``, its lines joined."""
    paragraphs, current = [], None
    for line in err.splitlines():
        if line.startswith("error:"):
            current = [line]
            paragraphs.append(current)
        elif current is not None and line.strip():
            current.append(line.strip())
        else:
            current = None
    return [" ".join(lines) for lines in paragraphs]


def run_case(case: Case, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """The case's command line in this process: its exit status and stderr."""
    if case.command == CLI:
        return in_process(argv, capsys)
    assert case.command == SWEEP
    try:
        status = experiments_main(argv)
    except SystemExit as stop:
        status = stop.code
    return int(status or 0), capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_the_problem_and_the_fix(
    case: Case, earlier: Earlier, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = case.argv(Where(tmp_path, mnist_dir, earlier.root, earlier.experiment))
    before = file_digests(earlier.folder)
    capsys.readouterr()
    status, err = run_case(case, argv, capsys)
    assert TRACEBACK not in err, err[-3000:]
    assert status == case.status, err[-3000:]
    paragraphs = error_paragraphs(err)
    assert len(paragraphs) == 1, err[-3000:]
    missing = [word for word in case.words if word not in paragraphs[0]]
    assert not missing, f"{missing} not in: {paragraphs[0]}"
    after = file_digests(earlier.folder)
    assert [name for name in earlier.digests if after.get(name) != earlier.digests[name]] == []  # byte-identical
    assert sorted(after.keys() - before.keys()) == []  # not even an empty run folder beside them


def test_the_reliability_page_shows_these_cases() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    assert doc_block(DOC.read_text()) == render_table()
