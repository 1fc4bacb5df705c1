"""A user's mistake read on the real command line (``python -m vae_lightning ...`` in a fresh
process): missing, truncated or corrupt data, an unreadable checkpoint, a diverged run. Each
ends with one ``error:`` paragraph naming the problem and the fix and the documented exit
status, without a traceback unless ``--traceback`` (or ``VAE_LIGHTNING_TRACEBACK=1``) asks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.runs import TRACEBACK, cpu_run_args, in_process, run_command

from vae_lightning.cli import run_cli
from vae_lightning.runtime import settings
from vae_lightning.runtime.errors import (
    TRACEBACK_ENV,
    DataNotFoundError,
    run_reporting_user_errors,
)

#: 3 epochs of 4 batches of 32, as in tests/conf/short_run.yaml, where lr 1.0 without clipping
#: turns the loss into NaN at step 5.
DIVERGING_RUN = [
    "--trainer.max_epochs=3",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.num_sanity_val_steps=0",
    "--data.batch_size=32",
    "--progress_bar.refresh_rate=0",
    "--model.optimizer.init_args.lr=1.0",
    "--trainer.gradient_clip_val=null",
]


def cli(subcommand: str, data_dir: Path, save_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m vae_lightning <subcommand>`` with the default config on CPU."""
    return run_command("vae_lightning", [subcommand, *cpu_run_args(data_dir, save_dir), *extra])


def error_paragraph(result: subprocess.CompletedProcess) -> str:
    """The ``error:`` paragraph on stderr, its wrapped lines joined."""
    assert TRACEBACK not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    return " ".join(line.strip() for line in lines[start:])


def copy_raw_file(mnist_dir: Path, data_dir: Path, name: str, size: int | None = None) -> Path:
    """``data_dir/MNIST/raw/<name>``: a copy of the real file, or of its first ``size`` bytes."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with (mnist_dir / "MNIST" / "raw" / name).open("rb") as source, (raw / name).open("wb") as copy:
        if size is None:
            shutil.copyfileobj(source, copy)
        else:
            copy.write(source.read(size))
    return raw / name


def test_missing_data_exits_2_with_where_it_looked_and_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("fit", empty, tmp_path)
    assert result.returncode == 2
    message = error_paragraph(result)
    assert f"error: MNIST not found: looked for its files in {empty / 'MNIST' / 'raw'}" in message
    assert "--data.data_dir" in message and "--data.download true" in message


def test_a_truncated_data_file_exits_2_naming_the_file_its_size_and_the_fix(mnist_dir: Path, tmp_path: Path) -> None:
    images = copy_raw_file(mnist_dir, tmp_path / "data", "train-images-idx3-ubyte", size=1_000_000)
    result = cli("fit", tmp_path / "data", tmp_path)
    assert result.returncode == 2
    message = error_paragraph(result)
    assert f"error: MNIST file {images} is truncated: 1,000,000 bytes, expected 47,040,016." in message
    assert "Delete it and run with --data.download true" in message


def test_a_corrupt_data_file_exits_2_naming_its_md5(mnist_dir: Path, tmp_path: Path) -> None:
    copy_raw_file(mnist_dir, tmp_path / "data", "t10k-labels-idx1-ubyte")
    images = copy_raw_file(mnist_dir, tmp_path / "data", "t10k-images-idx3-ubyte")
    with images.open("r+b") as f:
        f.seek(5_000_000)
        f.write(b"\xff\xff\xff\xff")  # four wrong pixels, the size unchanged
    result = cli("test", tmp_path / "data", tmp_path, "--allow_untrained=true")
    assert result.returncode == 2
    message = error_paragraph(result)
    assert f"error: MNIST file {images} is corrupt: MD5 " in message
    assert "expected 2646ac647ad5339dbf082846283269ea" in message


def test_an_unreadable_checkpoint_exits_2_before_the_run_starts(mnist_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    path.write_text("not a checkpoint")
    result = cli("fit", mnist_dir, tmp_path, f"--ckpt_path={path}")
    assert result.returncode == 2
    message = error_paragraph(result)
    assert f"error: {path} is not a checkpoint that can be loaded safely (UnpicklingError)" in message
    assert "Pass a .ckpt file written by this project's training" in message
    assert not (tmp_path / "lightning_logs").exists()  # refused before any run folder was made


def test_a_diverging_run_exits_3_naming_the_step_and_the_cause(mnist_dir: Path, tmp_path: Path) -> None:
    result = cli("fit", mnist_dir, tmp_path, *DIVERGING_RUN)
    assert result.returncode == 3  # NonFiniteLossError.exit_code: a diverged run, not a usage error
    message = error_paragraph(result)
    assert "error: non-finite training loss (nan) at step 5 (epoch 1, batch 1): training diverged." in message
    assert "lower --model.optimizer.init_args.lr" in message and "--trainer.gradient_clip_val" in message


def test_the_explore_command_reports_a_missing_checkpoint_the_same_way(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    result = run_command("vae_lightning.explore", ["--ckpt_path", str(missing), "--out", str(tmp_path / "out")])
    assert result.returncode == 2
    assert f"error: checkpoint {missing} does not exist." in error_paragraph(result)
    assert not (tmp_path / "out").exists()


# The same entry point in this process: what asks for the traceback.


@pytest.mark.parametrize("asked_by", ["--traceback", TRACEBACK_ENV])
def test_traceback_or_the_environment_variable_shows_the_traceback(
    asked_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["fit", *cpu_run_args(tmp_path / "nowhere", tmp_path)]
    if asked_by == TRACEBACK_ENV:
        monkeypatch.setenv(TRACEBACK_ENV, "1")
    else:
        args.append("--traceback")  # taken out before the CLI parses the rest
    with pytest.raises(DataNotFoundError, match="MNIST not found"):  # raised, so Python prints its traceback
        run_cli(args)


def test_a_programming_error_keeps_its_traceback() -> None:
    def buggy(argv: list[str]) -> None:
        raise KeyError("a bug, not a user's mistake")

    with pytest.raises(KeyError, match="a bug"):
        run_reporting_user_errors(buggy, ["fit"])


# No evaluation of untrained weights by accident.


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_stops_and_names_the_two_ways_on(
    subcommand: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, err = in_process([subcommand, *cpu_run_args(mnist_dir, tmp_path)], capsys)
    assert status == 2
    assert f"{subcommand} needs trained weights: pass --ckpt_path" in err and "--allow_untrained true" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_allow_untrained_evaluates_the_freshly_initialised_model(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, _ = in_process(["validate", *cpu_run_args(mnist_dir, tmp_path), "--allow_untrained=true", "--trainer.limit_val_batches=1"], capsys)
    assert status == 0
    assert len(list((tmp_path / "lightning_logs").glob("version_*"))) == 1


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_ckpt_path_last_with_nothing_to_resume_stops_unless_asked_to_start_fresh(
    subcommand: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [subcommand, *cpu_run_args(mnist_dir, tmp_path), "--ckpt_path=last"]
    status, err = in_process(args, capsys)
    assert status == 2
    assert "--ckpt_path last: there is nothing to resume, no version_*/checkpoints/last.ckpt under" in err
    assert "--allow_untrained true" in err and "save_last" not in err
    assert not list((tmp_path / "lightning_logs").glob("version_*/checkpoints"))
    if subcommand == "fit":
        limits = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
        status, err = in_process([*args, "--allow_untrained=true", *limits], capsys)
        assert status == 0 and "save_last" not in err
        assert list((tmp_path / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))


# Settings refused before anything is built, named as the user wrote them.


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("--model.optimizer.init_args.lr=nan", "--model.optimizer.init_args.lr nan: not a finite number"),
        ("--model.optimizer.init_args.lr=.nan", "--model.optimizer.init_args.lr .nan: not a finite number"),
        ("--trainer.gradient_clip_val=inf", "--trainer.gradient_clip_val inf: not a finite number"),
        ("--model.kl_weight=-inf", "--model.kl_weight -inf: not a finite number"),
    ],
)
def test_a_non_finite_number_on_the_command_line_is_refused_naming_the_option(
    option: str, shown: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, err = in_process(["fit", *cpu_run_args(mnist_dir, tmp_path), option], capsys)
    assert status == 2 and f"error: {shown}. Give a finite value" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_a_non_finite_number_in_a_config_file_is_refused_naming_its_key(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: .nan\n")
    status, err = in_process(["fit", *cpu_run_args(mnist_dir, tmp_path), "--config", str(overlay)], capsys)
    assert status == 2 and "error: model.optimizer.init_args.lr is nan, not a finite number." in err
    assert not (tmp_path / "lightning_logs").exists()


def test_malformed_yaml_names_the_file_and_line_among_several_configs(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  max_epochs: 2\n  callbacks: [a, b\nmodel:\n  mc_samples: 1\n")
    status, err = in_process(["fit", *cpu_run_args(mnist_dir, tmp_path), "--config", str(broken)], capsys)
    assert status == 2
    assert f"error: config file {broken} is not valid YAML at line 4, column 6" in err and "<unicode string>" not in err


def test_an_output_folder_that_is_a_file_is_refused_before_the_run(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    taken = tmp_path / "runs"
    taken.write_text("notes")
    status, err = in_process(["fit", *cpu_run_args(mnist_dir, taken / "deeper")], capsys)
    assert status == 2 and f"error: --trainer.default_root_dir {taken / 'deeper'}: {taken} is a file, not a folder." in err
    assert taken.read_text() == "notes"


def test_a_checkpoint_cut_short_is_called_incomplete_not_unsafe(
    trained_run: Path, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    whole = (trained_run / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    status, err = in_process(["test", *cpu_run_args(mnist_dir, tmp_path), f"--ckpt_path={cut}"], capsys)
    assert status == 2 and f"error: {cut} is incomplete: a PyTorch file cut short" in err
    assert "safely" not in err and not (tmp_path / "lightning_logs").exists()


def test_the_divergence_message_shows_the_clipping_algorithm_as_written(mnist_dir: Path, tmp_path: Path) -> None:
    result = cli("fit", mnist_dir, tmp_path, *DIVERGING_RUN[:-1], "--trainer.gradient_clip_val=100", "--trainer.gradient_clip_algorithm=value")
    message = error_paragraph(result)
    assert "clipping by value at 100" in message and "GradClipAlgorithmType" not in message


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("--model.mc_samples=abc", "model.mc_samples: expected int, got 'abc'."),
        ("--trainer.gradient_clip_val=abc", "trainer.gradient_clip_val: expected float, int or null, got 'abc'."),
        ("--model.optimizer.init_args.lr=abc", "model.optimizer.init_args.lr: expected float or Tensor, got 'abc'."),
        ("--model.network.init_args.latent_dim=two", "model.network.init_args.latent_dim: expected int, got 'two'."),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_the_expected_type_in_one_line(
    option: str, shown: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, err = in_process(["fit", *cpu_run_args(mnist_dir, tmp_path), option], capsys)
    assert status == 2 and f"error: {shown} Give a value of that type" in err
    assert "Union subtypes" not in err and "<class" not in err


@pytest.mark.parametrize("logs_writable", [True, False], ids=["logs-folder-writable", "nothing-writable"])
def test_a_read_only_root_folder_is_refused_only_when_its_lightning_logs_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs_writable: bool
) -> None:
    """The Docker image's layout: /app belongs to root, /app/lightning_logs to the run's user.
    Permissions are emulated (the tests may run as root, for whom every folder is writable)."""
    root = tmp_path / "app"
    (root / "lightning_logs").mkdir(parents=True)
    writable = {root / "lightning_logs"} if logs_writable else set()
    monkeypatch.setattr(settings.os, "access", lambda path, mode: Path(path) in writable)
    problem = settings.unwritable_folder(root, "--trainer.default_root_dir", "lightning_logs")
    if logs_writable:
        assert problem is None
    else:
        assert problem == (
            f"--trainer.default_root_dir {root}: the folder {root / 'lightning_logs'} cannot be written. "
            "Pass a folder you can write to (e.g. --trainer.default_root_dir runs)."
        )
