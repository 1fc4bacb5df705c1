"""A user's bad input, case by case: what they did, the command line it makes and the words the
one ``error:`` paragraph must hold (the problem and the fix). ``tests/test_bad_input.py`` runs
every case against an earlier run that must stay byte-identical; :func:`render_table` is the
table of docs/reliability.md, rewritten by ``PYTHONPATH=tests python -m helpers.bad_input_cases --write``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from helpers.image_files import write_image, write_image_folder
from helpers.runs import REPO_ROOT, cpu_run_args

CLI = "vae_lightning"
SWEEP = "vae_lightning.experiments"
CLIP = "trainer.gradient_clip_val"
DOC = REPO_ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- bad-input-table:begin -->", "<!-- bad-input-table:end -->"


@dataclass(frozen=True)
class Where:
    """The folders a case runs against: its own scratch folder, the real MNIST, and the earlier
    run and sweep that no case may change."""

    tmp: Path
    data_dir: Path
    root: Path  #: the earlier run's --trainer.default_root_dir (lightning_logs/version_0 in it)
    experiment: Path  #: the earlier sweep's experiment file (its study and trials beside it)

    @property
    def last(self) -> Path:
        return self.root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"

    def cli(self, subcommand: str, *extra: str, data_dir: Path | None = None, root: Path | None = None) -> list[str]:
        """``<subcommand>`` of the default config on CPU against the earlier run's root folder."""
        return [subcommand, *cpu_run_args(data_dir or self.data_dir, root or self.root), *extra]

    def file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def experiment_file(self, name: str = "sweep", **changes: object) -> Path:
        """The earlier sweep's experiment file with ``changes``; ``name`` other than the earlier
        one's puts its runs under this case's folder, not beside the earlier study."""
        spec = {**yaml.safe_load(self.experiment.read_text()), **changes}
        if name != "sweep":
            spec["output_dir"] = str(self.tmp / "runs")
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**spec, "name": name}))
        return path


@dataclass(frozen=True)
class Case:
    """One bad input. ``args`` (a subcommand and options after the default CPU config) or
    ``prepare`` (writes the bad file or folder under ``Where.tmp``, returns the whole command
    line) make the command; ``words`` must all be in its one ``error:`` paragraph."""

    id: str
    area: str
    did: str
    words: tuple[str, ...]
    args: tuple[str, ...] = ()
    prepare: Callable[[Where], list[str]] | None = field(default=None, compare=False)
    command: str = CLI
    status: int = 2

    def argv(self, where: Where) -> list[str]:
        if self.prepare is not None:
            return self.prepare(where)
        return where.cli(self.args[0], *self.args[1:])


# Files written by the cases' ``prepare``.


def _mnist_copy(where: Where, name: str, size: int | None = None, flip_at: int | None = None) -> Path:
    """``<tmp>/data/MNIST/raw/<name>``: the real file, its first ``size`` bytes, or with 4 bytes overwritten."""
    data = bytearray((where.data_dir / "MNIST" / "raw" / name).read_bytes()[:size])
    if flip_at is not None:
        data[flip_at : flip_at + 4] = b"\xff\xff\xff\xff"
    path = where.tmp / "data" / "MNIST" / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def _truncated_mnist(where: Where) -> list[str]:
    _mnist_copy(where, "train-images-idx3-ubyte", size=1_000_000)
    return where.cli("fit", f"--data.data_dir={where.tmp / 'data'}")


def _corrupt_mnist(where: Where) -> list[str]:
    _mnist_copy(where, "t10k-labels-idx1-ubyte")
    _mnist_copy(where, "t10k-images-idx3-ubyte", flip_at=5_000_000)
    return where.cli("test", f"--data.data_dir={where.tmp / 'data'}", f"--ckpt_path={where.last}")


def _empty_folder(where: Where) -> list[str]:
    (where.tmp / "empty").mkdir()
    return where.cli("fit", f"--data.data_dir={where.tmp / 'empty'}")


IMAGE_FOLDER = ("--data.dataset=image_folder", "--data.val_size=0.25")


def _images(where: Where, classes: tuple[str, ...] = ("a", "b")) -> Path:
    """``<tmp>/images/{train,test}/<class>/`` of four 8x8 RGB PNGs each."""
    write_image_folder(where.tmp / "images", classes, 4)
    return where.tmp / "images"


def _image_folder_args(where: Where, folder: Path, *extra: str) -> list[str]:
    return where.cli("fit", *IMAGE_FOLDER, f"--data.data_dir={folder}", *extra)


def _no_split_folder(where: Where) -> list[str]:
    (where.tmp / "images").mkdir()
    return _image_folder_args(where, where.tmp / "images")


def _no_class_folders(where: Where) -> list[str]:
    for split in ("train", "test"):
        (where.tmp / "images" / split).mkdir(parents=True)
    return _image_folder_args(where, where.tmp / "images")


def _empty_class_folder(where: Where) -> list[str]:
    folder = _images(where, ("a",))
    (folder / "train" / "b").mkdir()
    return _image_folder_args(where, folder)


def _only_text_files(where: Where) -> list[str]:
    where.file("images/train/a/notes.txt", "not an image")
    return _image_folder_args(where, where.tmp / "images")


def _unreadable_image(*extra: str) -> Callable[[Where], list[str]]:
    def prepare(where: Where) -> list[str]:
        folder = _images(where)
        (folder / "train" / "a" / "0002.png").write_text("not an image")
        return _image_folder_args(where, folder, *extra)

    return prepare


def _mixed_sizes(where: Where) -> list[str]:
    folder = _images(where)
    write_image(folder / "train" / "b" / "0001.png", np.zeros((12, 10, 3), np.uint8))
    return _image_folder_args(where, folder)


def _image_folder_with(*extra: str) -> Callable[[Where], list[str]]:
    return lambda where: _image_folder_args(where, _images(where), *extra)


def _config_file(text: str, *extra: str) -> Callable[[Where], list[str]]:
    return lambda where: where.cli("fit", "--config", str(where.file("overlay.yaml", text)), *extra)


def _second_config_malformed(where: Where) -> list[str]:
    good = where.file("first.yaml", "trainer:\n  max_epochs: 2\n")
    broken = where.file("broken.yaml", "trainer:\n  max_epochs: 2\n  callbacks: [a, b\nmodel:\n  mc_samples: 1\n")
    return where.cli("fit", "--config", str(good), "--config", str(broken))


def _missing_config(where: Where) -> list[str]:
    return where.cli("fit", "--config", str(where.tmp / "overlay.yaml"))


def _ckpt(path: Callable[[Where], Path], subcommand: str = "test", *extra: str) -> Callable[[Where], list[str]]:
    return lambda where: where.cli(subcommand, f"--ckpt_path={path(where)}", *extra)


def _cut_checkpoint(where: Where, keep: float = 0.5) -> Path:
    whole = where.last.read_bytes()
    path = where.tmp / "cut.ckpt"
    path.write_bytes(whole[: round(len(whole) * keep)])
    return path


def _plain_torch_file(where: Where) -> Path:
    torch.save({"weights": torch.zeros(2)}, where.tmp / "weights.pt")
    return where.tmp / "weights.pt"


def _without_settings(where: Where) -> Path:
    """The earlier run's last.ckpt without the settings it was trained with."""
    checkpoint = torch.load(where.last, map_location="cpu", weights_only=True)
    checkpoint.pop("hyper_parameters", None)
    torch.save(checkpoint, where.tmp / "bare.ckpt")
    return where.tmp / "bare.ckpt"


def _resume_from(path: Callable[[Where], Path]) -> Callable[[Where], list[str]]:
    """``fit --config <earlier run>/config.yaml --ckpt_path <path>``, as docs/reliability.md resumes."""
    def prepare(where: Where) -> list[str]:
        config = where.root / "lightning_logs" / "version_0" / "config.yaml"
        return ["fit", "--config", str(config), f"--ckpt_path={path(where)}"]

    return prepare


def _resume_last_elsewhere(where: Where) -> list[str]:
    config = where.root / "lightning_logs" / "version_0" / "config.yaml"
    return ["fit", "--config", str(config), "--ckpt_path=last", f"--trainer.default_root_dir={where.tmp / 'other'}"]


def _root_is_file(where: Where) -> list[str]:
    return where.cli("fit", root=where.file("runs", "notes"))


def _root_under_a_file(where: Where) -> list[str]:
    return where.cli("fit", root=where.file("runs", "notes") / "deeper")


def _logger_folder_is_file(where: Where) -> list[str]:
    taken = where.file("logs", "notes")
    return where.cli("fit", "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger", f"--trainer.logger.init_args.save_dir={taken}")


def _sweep(make: Callable[[Where], Path], *options: str, command: str = "run") -> Callable[[Where], list[str]]:
    return lambda where: [command, str(make(where)), "--fast", *options]


def _malformed_experiment(where: Where) -> Path:
    return where.file("broken.yaml", "name: broken\nvary: {a: [1, 2\nseeds: [0]\n")


def _changed_overrides(where: Where) -> Path:
    spec = yaml.safe_load(where.experiment.read_text())
    return where.experiment_file(overrides={**spec["overrides"], "model.network.init_args.latent_dim": 3})


def _range(low: float, high: float, **extra: object) -> Callable[[Where], Path]:
    return lambda where: where.experiment_file("search", vary={CLIP: {"low": low, "high": high}}, **extra)


FIX_RANGE = "set --data.val_size to a count in that range or a fraction such as 0.1"

CASES: tuple[Case, ...] = (
    # data
    Case("data-dir-missing", "data", "`--data.data_dir` a folder that does not exist",
         ("MNIST not found: looked for its files in", "Point --data.data_dir at the folder that holds MNIST/raw", "--data.download true"),
         prepare=lambda w: w.cli("fit", f"--data.data_dir={w.tmp / 'nowhere'}")),
    Case("data-dir-empty", "data", "`--data.data_dir` an empty folder",
         ("MNIST not found", "Point --data.data_dir at the folder", "--data.download true"), prepare=_empty_folder),
    Case("mnist-truncated", "data", "`train-images-idx3-ubyte` cut to 1,000,000 bytes",
         ("is truncated: 1,000,000 bytes, expected 47,040,016", "Delete it and run with --data.download true"), prepare=_truncated_mnist),
    Case("mnist-corrupt", "data", "`t10k-images-idx3-ubyte` with 4 bytes overwritten, then `test`",
         ("is corrupt: MD5", "expected 2646ac647ad5339dbf082846283269ea", "Delete it and run with --data.download true"), prepare=_corrupt_mnist),
    Case("cifar10-missing", "data", "`--data.dataset cifar10` with no CIFAR-10 files",
         ("CIFAR-10 not found", "cifar-10-batches-py", "--data.download true"),
         prepare=lambda w: w.cli("fit", "--data.dataset=cifar10", f"--data.data_dir={w.tmp / 'nowhere'}")),
    Case("dataset-unknown", "data", "`--data.dataset mnsit`",
         ("data.dataset: expected one of", "'mnist'", "got 'mnsit'", "Give one of those values"), ("fit", "--data.dataset=mnsit")),
    Case("dataset-unknown-in-config", "data", "`dataset: mnsit` in a `--config` file",
         ("data.dataset: expected one of", "'fashion_mnist'", "got 'mnsit'", "Give one of those values"),
         prepare=_config_file("data:\n  dataset: mnsit\n")),
    Case("val-size-above-one", "data", "`--data.val_size 1.5`",
         ("data.val_size as a fraction must be between 0 and 1, got 1.5", "such as 0.1", "such as 5000"), ("fit", "--data.val_size=1.5")),
    Case("val-size-negative", "data", "`--data.val_size -0.1`",
         ("data.val_size as a fraction must be between 0 and 1, got -0.1", "such as 0.1"), ("fit", "--data.val_size=-0.1")),
    Case("val-size-every-image", "data", "`--data.val_size 60000`, every MNIST training image",
         ("data.val_size must be between 1 and 59999 for the 60000 training images of mnist", FIX_RANGE), ("fit", "--data.val_size=60000")),
    Case("val-size-celeba", "data", "`--data.val_size 0.1` with `--data.dataset celeba`",
         ("data.val_size must be null for celeba", "its published validation split"), ("fit", "--data.dataset=celeba", "--data.val_size=0.1")),
    Case("batch-size-zero", "data", "`--data.batch_size 0`", ("data.batch_size must be at least 1, got 0",), ("fit", "--data.batch_size=0")),
    Case("batch-size-negative", "data", "`--data.batch_size -3`", ("data.batch_size must be at least 1, got -3",), ("fit", "--data.batch_size=-3")),
    Case("num-workers-negative", "data", "`--data.num_workers -1`",
         ("data.num_workers must be 0", "or more worker processes, got -1"), ("fit", "--data.num_workers=-1")),
    Case("predict-size-zero", "data", "`predict --data.predict_size 0` with the earlier run's checkpoint",
         ("data.predict_size must be at least 1", "got 0"), prepare=lambda w: w.cli("predict", f"--ckpt_path={w.last}", "--data.predict_size=0")),
    # image folders
    Case("images-no-split-folders", "image folders", "`image_folder` dataset on a folder without `train/`",
         ("image folder", "train does not exist", "point --data.data_dir at their parent"), prepare=_no_split_folder),
    Case("images-no-class-folders", "image folders", "`train/` and `test/` with no class folders",
         ("no images found in", "it has no class folders", "Put each class's images in a subfolder"), prepare=_no_class_folders),
    Case("images-empty-class", "image folders", "a class folder `train/b/` without images",
         ("no images found in", "Found no valid file for the classes b", "Put each class's images in a subfolder"), prepare=_empty_class_folder),
    Case("images-only-text", "image folders", "a class folder holding only a `.txt` file",
         ("no images found in", "Supported extensions are", "<class>/<image>.png"), prepare=_only_text_files),
    Case("images-unreadable", "image folders", "a `.png` that holds text (decoded into the cache)",
         ("cannot read image", "0002.png", "cannot identify image file", "Delete or replace the file"), prepare=_unreadable_image()),
    Case("images-unreadable-no-cache", "image folders", "the same with `--data.cache false`",
         ("cannot read image", "0002.png", "Delete or replace the file"), prepare=_unreadable_image("--data.cache=false")),
    Case("images-mixed-sizes", "image folders", "an image 10x12 among 8x8 ones, no `--data.image_size`",
         ("images of different sizes in", "is 8x8", "is 10x12", "Set --data.image_size to resize them all"), prepare=_mixed_sizes),
    Case("images-channels-two", "image folders", "`--data.channels 2`",
         ("data.channels: expected one of 1, 3 or null, got '2'", "Give one of those values"), prepare=_image_folder_with("--data.channels=2")),
    Case("images-image-size-zero", "image folders", "`--data.image_size 0`",
         ("data.image_size must be at least 1 (or null), got 0",), prepare=_image_folder_with("--data.image_size=0")),
    Case("images-val-size-all", "image folders", "`--data.val_size 8` for a folder of 8 training images",
         ("data.val_size must be between 1 and 7 for the 8 training images of image_folder", FIX_RANGE),
         prepare=lambda w: w.cli("fit", "--data.dataset=image_folder", "--data.val_size=8", f"--data.data_dir={_images(w)}")),
    # settings
    Case("lr-nan", "settings", "`--model.optimizer.init_args.lr nan`",
         ("--model.optimizer.init_args.lr nan: not a finite number", "Give a finite value"), ("fit", "--model.optimizer.init_args.lr=nan")),
    Case("lr-yaml-nan", "settings", "`--model.optimizer.init_args.lr .nan`",
         ("--model.optimizer.init_args.lr .nan: not a finite number", "Give a finite value"), ("fit", "--model.optimizer.init_args.lr=.nan")),
    Case("lr-inf", "settings", "`--model.optimizer.init_args.lr inf`",
         ("--model.optimizer.init_args.lr inf: not a finite number", "Give a finite value"), ("fit", "--model.optimizer.init_args.lr=inf")),
    Case("lr-nan-in-config", "settings", "`lr: .nan` in a `--config` file",
         ("model.optimizer.init_args.lr is nan, not a finite number", "Give a finite value in the config file"),
         prepare=_config_file("model:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: .nan\n")),
    Case("lr-negative", "settings", "`--model.optimizer.init_args.lr -0.1`",
         ("invalid configuration: model.optimizer: Invalid learning rate: -0.1",), ("fit", "--model.optimizer.init_args.lr=-0.1")),
    Case("lr-not-a-number", "settings", "`--model.optimizer.init_args.lr abc`",
         ("model.optimizer.init_args.lr: expected float or Tensor, got 'abc'", "Give a value of that type"), ("fit", "--model.optimizer.init_args.lr=abc")),
    Case("clip-negative", "settings", "`--trainer.gradient_clip_val -1`",
         ("trainer.gradient_clip_val is -1.0: a clipping threshold must be positive", "--trainer.gradient_clip_val 1.0", "or null"),
         ("fit", "--trainer.gradient_clip_val=-1")),
    Case("clip-nan", "settings", "`--trainer.gradient_clip_val nan`",
         ("--trainer.gradient_clip_val nan: not a finite number", "Give a finite value"), ("fit", "--trainer.gradient_clip_val=nan")),
    Case("clip-algorithm-unknown", "settings", "`--trainer.gradient_clip_algorithm sometimes`",
         ("`gradient_clip_algorithm` sometimes is invalid", "Allowed algorithms: ['value', 'norm']"), ("fit", "--trainer.gradient_clip_algorithm=sometimes")),
    Case("option-unknown", "settings", "`--model.latent_size 3`, an option that does not exist",
         ("unrecognized arguments: --model.latent_size=3",), ("fit", "--model.latent_size=3")),
    Case("option-unknown-top-level", "settings", "`--epochs 3` for `--trainer.max_epochs`",
         ("unrecognized arguments: --epochs=3",), ("fit", "--epochs=3")),
    Case("max-epochs-wrong-type", "settings", "`--trainer.max_epochs two`",
         ("trainer.max_epochs: expected int or null, got 'two'", "Give a value of that type"), ("fit", "--trainer.max_epochs=two")),
    Case("max-epochs-negative", "settings", "`--trainer.max_epochs -2`",
         ("`max_epochs` must be a non-negative integer or -1", "You passed in -2"), ("fit", "--trainer.max_epochs=-2")),
    Case("limit-batches-negative", "settings", "`--trainer.limit_train_batches -1`",
         ("invalid value -1.0 for limit_train_batches", "it has to be in [0.0, 1.0] or an int"), ("fit", "--trainer.limit_train_batches=-1")),
    Case("precision-unknown", "settings", "`--trainer.precision 17`",
         ("trainer.precision: expected one of", "'bf16-mixed'", "got '17'", "Give one of those values"), ("fit", "--trainer.precision=17")),
    Case("accelerator-not-installed", "settings", "`--trainer.accelerator tpu` without `torch_xla`",
         ("invalid configuration: Requirement 'torch_xla", "not met", "--trainer.accelerator cpu"), ("fit", "--trainer.accelerator=tpu")),
    Case("matmul-precision-unknown", "settings", "`--float32_matmul_precision fast`",
         ("invalid choice: 'fast'", "choose from 'highest', 'high', 'medium'"), ("fit", "--float32_matmul_precision=fast")),
    Case("subcommand-unknown", "settings", "`python -m vae_lightning fti ...`",
         ("invalid choice: 'fti'", "choose from 'fit', 'validate', 'test', 'predict'"), ("fti",)),
    Case("yaml-malformed", "settings", "an unclosed `[` in the second of two `--config` files",
         ("broken.yaml is not valid YAML at line 4, column 6", "Fix that line"), prepare=_second_config_malformed),
    Case("config-missing", "settings", "`--config overlay.yaml`, a file that does not exist",
         ("overlay.yaml does not exist", "Pass the path of a YAML config file"), prepare=_missing_config),
    Case("kl-weight-nan-in-config", "settings", "`kl_weight: .nan` in a `--config` file",
         ("model.kl_weight is nan, not a finite number", "Give a finite value"), prepare=_config_file("model:\n  kl_weight: .nan\n")),
    Case("kl-weight-negative", "settings", "`--model.kl_weight -1`",
         ("model.kl_weight and model.kl_warmup must be >= 0, got -1.0",), ("fit", "--model.kl_weight=-1")),
    Case("latent-dim-zero", "settings", "`--model.network.init_args.latent_dim 0`",
         ("invalid configuration: latent_dim must be positive, got 0",), ("fit", "--model.network.init_args.latent_dim=0")),
    Case("hidden-dims-empty", "settings", "`--model.network.init_args.hidden_dims []`",
         ("hidden_dims must be a non-empty list of positive widths, got []",), ("fit", "--model.network.init_args.hidden_dims=[]")),
    Case("mc-samples-zero", "settings", "`--model.mc_samples 0`",
         ("model.mc_samples must be at least 1, got 0",), ("fit", "--model.mc_samples=0")),
    Case("likelihood-unknown", "settings", "`--model.likelihood Poisson`, a class that does not exist",
         ("model.likelihood: expected Likelihood or null, got 'Poisson'", "Give a value of that type"), ("fit", "--model.likelihood=Poisson")),
    # checkpoints
    Case("ckpt-missing", "checkpoints", "`test --ckpt_path missing.ckpt`",
         ("missing.ckpt does not exist", "Pass the path of a .ckpt file written by training", "--ckpt_path last"),
         prepare=_ckpt(lambda w: w.tmp / "missing.ckpt")),
    Case("ckpt-folder", "checkpoints", "`--ckpt_path` a folder",
         ("is a folder, not a file", "Pass the path of a .ckpt file"), prepare=_ckpt(lambda w: w.tmp)),
    Case("ckpt-truncated", "checkpoints", "the first half of the earlier run's `last.ckpt`",
         ("cut.ckpt is incomplete: a PyTorch file cut short", "Copy it again, or pass another checkpoint"), prepare=_ckpt(_cut_checkpoint)),
    Case("ckpt-not-a-checkpoint", "checkpoints", "`--ckpt_path` a text file",
         ("is not a checkpoint that can be loaded safely (UnpicklingError)", "Pass a .ckpt file written by this project's training"),
         prepare=_ckpt(lambda w: w.file("notes.ckpt", "not a checkpoint"), "fit")),
    Case("ckpt-plain-torch-file", "checkpoints", "`--ckpt_path` a `torch.save` of plain tensors",
         ("is a PyTorch file but not a Lightning checkpoint (it has no 'state_dict')", "Pass a .ckpt file written by training"),
         prepare=_ckpt(_plain_torch_file)),
    Case("ckpt-other-architecture", "checkpoints", "the earlier `last.ckpt` without its settings, `--model.network.init_args.latent_dim 3`",
         ("is for a different architecture than the configured model", "Run with the configuration it was trained with"),
         prepare=_ckpt(_without_settings, "test", "--model.network.init_args.latent_dim=3")),
    Case("test-without-ckpt", "checkpoints", "`test` without `--ckpt_path`",
         ("test needs trained weights: pass --ckpt_path", "--allow_untrained true"), ("test",)),
    Case("validate-without-ckpt", "checkpoints", "`validate` without `--ckpt_path`",
         ("validate needs trained weights: pass --ckpt_path", "--allow_untrained true"), ("validate",)),
    Case("predict-without-ckpt", "checkpoints", "`predict` without `--ckpt_path`",
         ("predict needs trained weights: pass --ckpt_path", "--allow_untrained true"), ("predict",)),
    Case("ckpt-last-no-run", "checkpoints", "`fit --ckpt_path last` in a root folder with no run",
         ("--ckpt_path last: there is nothing to resume", "--allow_untrained true to start training from scratch"),
         prepare=lambda w: w.cli("fit", "--ckpt_path=last", root=w.tmp / "fresh")),
    Case("test-ckpt-last-no-run", "checkpoints", "`test --ckpt_path last` in a root folder with no run",
         ("--ckpt_path last: there is nothing to resume", "--allow_untrained true to test the freshly initialised model"),
         prepare=lambda w: w.cli("test", "--ckpt_path=last", root=w.tmp / "fresh")),
    # outputs
    Case("root-is-a-file", "outputs", "`--trainer.default_root_dir` an existing file",
         ("is a file, not a folder", "Pass a folder for the run's files"), prepare=_root_is_file),
    Case("root-under-a-file", "outputs", "`--trainer.default_root_dir runs/deeper` where `runs` is a file",
         ("runs is a file, not a folder", "Pass a folder for the run's files"), prepare=_root_under_a_file),
    Case("logger-folder-is-a-file", "outputs", "`--trainer.logger.init_args.save_dir` an existing file",
         ("--trainer.logger.init_args.save_dir", "is a file, not a folder", "Pass a folder for the run's files"), prepare=_logger_folder_is_file),
    # sweeps
    Case("sweep-file-missing", "sweeps", "`experiments run nope.yaml`",
         ("experiment file", "nope.yaml' not found", "configs/experiments/clip_value.yaml"),
         prepare=lambda w: ["run", str(w.tmp / "nope.yaml"), "--fast"], command=SWEEP),
    Case("sweep-file-malformed", "sweeps", "an unclosed `[` in the experiment file",
         ("broken.yaml is not valid YAML at line 3, column 6", "Fix that line"), prepare=_sweep(_malformed_experiment), command=SWEEP),
    Case("sweep-file-not-a-mapping", "sweeps", "an experiment file holding a YAML list",
         ("must be a YAML mapping", "name:, base_config:, vary:, seeds:, epochs:"),
         prepare=_sweep(lambda w: w.file("list.yaml", "- a\n- b\n")), command=SWEEP),
    Case("sweep-key-unknown", "sweeps", "`epoch: 3` for `epochs:` in the experiment file",
         ("Option 'epoch' is not accepted", "an experiment file's keys: name, base_config, vary, seeds, epochs"),
         prepare=_sweep(lambda w: w.experiment_file("typo", epoch=3)), command=SWEEP),
    Case("sweep-vary-empty", "sweeps", "`vary: {trainer.gradient_clip_val: []}`",
         ("vary.trainer.gradient_clip_val is an empty list", "give at least one value"),
         prepare=_sweep(lambda w: w.experiment_file("empty", vary={CLIP: []})), command=SWEEP),
    Case("sweep-vary-nan", "sweeps", "`.nan` among a grid's values",
         ("vary.trainer.gradient_clip_val holds nan", "grid values must be finite numbers"),
         prepare=_sweep(lambda w: w.experiment_file("nan", vary={CLIP: [float("nan")]})), command=SWEEP),
    Case("sweep-seeds-repeated", "sweeps", "`seeds: [0, 0]`",
         ("seeds: must be a non-empty list of distinct integers, got [0, 0]",),
         prepare=_sweep(lambda w: w.experiment_file("seeds", seeds=[0, 0])), command=SWEEP),
    Case("sweep-base-config-missing", "sweeps", "`base_config:` a file that does not exist",
         ("base_config:", "nobase.yaml' not found (relative to"),
         prepare=_sweep(lambda w: w.experiment_file("base", base_config=str(w.tmp / "nobase.yaml"))), command=SWEEP),
    Case("sweep-range-without-n-trials", "sweeps", "a `low:`/`high:` range without `n_trials:`",
         ("n_trials: a search over ranges needs it",), prepare=_sweep(_range(0.1, 1.0)), command=SWEEP),
    Case("sweep-range-reversed", "sweeps", "a range with `low: 1.0`, `high: 0.1`",
         ("low (1.0) must be below high (0.1)",), prepare=_sweep(_range(1.0, 0.1, n_trials=2)), command=SWEEP),
    Case("sweep-option-unknown", "sweeps", "`vary: {model.latent_size: [1]}`, an option the CLI does not have",
         ("the CLI refuses the options of this experiment", "unrecognized arguments: --model.latent_size=1", "Fix the key or value in the experiment file"),
         prepare=_sweep(lambda w: w.experiment_file("unknown", vary={"model.latent_size": [1]})), command=SWEEP),
    Case("sweep-changed-experiment", "sweeps", "an override added to the experiment file of a stored study, then `run`",
         ("holds trials run with other settings than this run's", "model.network.init_args.latent_dim (unset) -> 3", "a new name", "--restart"),
         prepare=_sweep(_changed_overrides), command=SWEEP),
    Case("sweep-changed-experiment-report", "sweeps", "the same, then `report`",
         ("holds trials run with other settings than this run's", "model.network.init_args.latent_dim (unset) -> 3", "--restart"),
         prepare=_sweep(_changed_overrides, command="report"), command=SWEEP),
    Case("sweep-changed-options", "sweeps", "`run` of a stored study with an extra `--data.batch_size=16`",
         ("extra command-line options: [] -> [\"--data.batch_size=16\"]", "a new name", "--restart"),
         prepare=lambda w: ["run", str(w.experiment), "--fast", "--data.batch_size=16"], command=SWEEP),
    Case("sweep-n-trials-zero", "sweeps", "`run --n-trials 0`",
         ("--n-trials and --grace-period must be at least 1",), prepare=lambda w: ["run", str(w.experiment), "--fast", "--n-trials", "0"], command=SWEEP),
    Case("sweep-report-with-options", "sweeps", "`report` with a trial option",
         ("report takes no trial options", "--data.batch_size=3"),
         prepare=lambda w: ["report", str(w.experiment), "--fast", "--data.batch_size=3"], command=SWEEP),
    Case("sweep-short-option", "sweeps", "a trial option written `-x`",
         ("unknown option(s) ['-x']", "trial options are written --section.key=value"),
         prepare=lambda w: ["run", str(w.experiment), "--fast", "-x"], command=SWEEP),
    # interruption: resuming a stopped run
    Case("resume-cut-checkpoint", "interruption", "`fit --config <run>/config.yaml --ckpt_path` a `last.ckpt` cut to 1,000 bytes",
         ("is incomplete: a PyTorch file cut short (1,000 bytes", "Copy it again"),
         prepare=_resume_from(lambda w: _cut_checkpoint(w, keep=1000 / w.last.stat().st_size))),
    Case("resume-last-elsewhere", "interruption", "`fit --config <run>/config.yaml --ckpt_path last` with another `--trainer.default_root_dir`",
         ("--ckpt_path last: there is nothing to resume", "point the logger at the experiment's folder (--trainer.default_root_dir)"),
         prepare=_resume_last_elsewhere),
    Case("resume-missing-checkpoint", "interruption", "`fit --config <run>/config.yaml --ckpt_path` a checkpoint since deleted",
         ("does not exist", "--ckpt_path last for the newest last.ckpt of the experiment"),
         prepare=_resume_from(lambda w: w.tmp / "deleted.ckpt")),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table() -> str:
    """The cases as a markdown table: area, what the user did, and the words of the answer."""
    rows = ["| area | what the user did | what the project says (the fix) |", "| --- | --- | --- |"]
    for case in CASES:
        said = " … ".join(f"`{word}`" if "`" not in word else f"`` {word} ``" for word in case.words)
        rows.append(f"| {case.area} | {_cell(case.did)} | {_cell(said)} |")
    return "\n".join(rows) + "\n"


def doc_block(text: str) -> str:
    """What docs/reliability.md holds between the table's markers."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write_doc(path: Path = DOC) -> None:
    text = path.read_text()
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    path.write_text(f"{before}{BEGIN}\n{render_table()}{END}{after}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The bad-input table of docs/reliability.md.")
    parser.add_argument("--write", action="store_true", help="rewrite the table between its markers in docs/reliability.md")
    if parser.parse_args().write:
        write_doc()
    else:
        sys.stdout.write(render_table())
