"""The training loops the benchmark times. All train the same network, likelihood and optimizer,
with the same clipping, data split and batch size, read from ``configs/default.yaml``
(``settings.py``), and an epoch is one pass over the training images plus one evaluation of
the validation images:

* :func:`run_floor`: a plain eager PyTorch loop over batches cut from the preloaded uint8
  images, as the project holds them: the model's own compute. With the project's numerics it
  is the fair floor; without them, the plain loop as usually written.
* :func:`run_reference`: the loop of pytorch/examples ``vae/main.py``: torchvision ``MNIST``
  with ``ToTensor``, a ``DataLoader``, ``loss.item()`` per step, a print every 10 batches and,
  per epoch, a PNG of reconstructions and one of samples.
* :func:`run_lightning`: the smallest ``LightningModule`` on the same model and batches, in a
  Trainer with no callbacks, logger, progress bar or checkpoints: Lightning's own loop.
* :func:`run_project`: ``Trainer.fit`` built from the config through the project's CLI, with
  every callback, the logger and the checkpoints users get.

Each returns the wall and process-CPU seconds of every epoch, the training images per epoch
and the last validation loss.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from settings import REPO_ROOT, Settings, instantiate
from vae_lightning.data import to_pixels, train_val_split

Timings = dict[str, Any]


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so the clock reads the time the work took."""
    if device == "cuda":
        torch.cuda.synchronize()


def vae_loss(network: nn.Module, likelihood: nn.Module, x: Tensor, mc_samples: int = 1) -> Tensor:
    """RL + KL of one batch, computed as ``VAEModule`` computes them."""
    mu, logvar = network.encode(x)
    logits = network.decode(network.reparameterize(mu, logvar, mc_samples))
    return likelihood.reconstruction_loss(x, logits) + network.kl_divergence(mu, logvar)


class PlainTraining:
    """The config's network, likelihood and optimizer, and one eager training step on them.

    Built after ``torch.manual_seed`` with the config's seed, so the initial weights and the
    noise draws are the project's (``seed_everything`` in the config).
    """

    def __init__(self, settings: Settings, image_shape: tuple[int, ...], device: str) -> None:
        torch.manual_seed(settings.seed)
        self.network = instantiate(settings.model["network"], image_shape=image_shape).to(device)
        self.likelihood = instantiate(settings.model["likelihood"]).to(device)
        self.parameters = [*self.network.parameters(), *self.likelihood.parameters()]  # VAEModule's order
        self.optimizer = instantiate(settings.model["optimizer"], self.parameters)
        self.clip_val, self.clip_algorithm = settings.clip_val, settings.clip_algorithm
        self.mc_samples = settings.mc_samples

    def loss(self, x: Tensor) -> Tensor:
        return vae_loss(self.network, self.likelihood, x, self.mc_samples)

    def clip_gradients(self) -> None:
        """The Trainer's ``gradient_clip_val`` / ``gradient_clip_algorithm``, as Lightning applies them."""
        if not self.clip_val:
            return
        if self.clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters, self.clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_val)

    def step(self, x: Tensor) -> Tensor:
        """Forward, backward, clipping and the optimizer's step, in the order Lightning runs them."""
        loss = self.loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip_gradients()
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def validation_loss(self, batches: Batches) -> Tensor:
        """The mean loss per image over ``batches``, in evaluation mode."""
        self.train(False)
        return sum(self.loss(x) * len(x) for x in batches) / batches.images_per_pass

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)
        self.likelihood.train(mode)


def compile_network(network: nn.Module, mode: str) -> None:
    """``torch.compile`` the network's ``encode`` and ``decode``, which the loss calls."""
    mode_arg = None if mode == "default" else mode
    network.encode = torch.compile(network.encode, mode=mode_arg)
    network.decode = torch.compile(network.decode, mode=mode_arg)


def mnist_split(data_dir: str, settings: Settings, device: str) -> tuple[Tensor, Tensor]:
    """The project's training and validation images, uint8 (N, 1, 28, 28) on ``device``."""
    from torchvision import datasets

    images = datasets.MNIST(data_dir, train=True, download=False).data.unsqueeze(1)
    train_idx, val_idx = train_val_split(len(images), settings.val_size, settings.split_seed)
    return images[train_idx].to(device), images[val_idx].to(device)


class Batches:
    """Float pixel batches cut by index from preloaded images (uint8, converted per batch, or
    already float), in a new seeded order each pass when ``shuffle``.

    Args:
        images: (N, C, H, W) uint8 or float images.
        batch_size: images per batch.
        shuffle: a new random order each pass (else the stored order).
        limit: at most this many batches per pass.
        drop_last: leave out a last, smaller batch (a CUDA graph has fixed shapes).
    """

    def __init__(self, images: Tensor, batch_size: int, shuffle: bool, limit: int | None = None, drop_last: bool = False) -> None:
        self.images, self.batch_size, self.shuffle = images, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(0)
        full, partial = divmod(len(images), batch_size)
        self.count = min(full + (partial > 0 and not drop_last), limit or len(images))

    def __len__(self) -> int:
        return self.count

    @property
    def images_per_pass(self) -> int:
        return min(len(self.images), self.count * self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for idx in order.to(self.images.device).split(self.batch_size)[: self.count]:
            batch = self.images.index_select(0, idx)
            yield to_pixels(batch) if batch.dtype == torch.uint8 else batch


def _epoch(times: list[float], cpu: list[float], start: tuple[float, float], device: str) -> None:
    sync(device)
    times.append(time.perf_counter() - start[0])
    cpu.append(time.process_time() - start[1])


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_floor(spec: dict[str, Any], settings: Settings) -> Timings:
    """A plain eager loop: ``PlainTraining.step`` on ``Batches``, then the validation loss."""
    device, limit = spec["device"], spec.get("limit_batches")
    train_x, val_x = mnist_split(spec["data_dir"], settings, device)
    if spec.get("data") == "float":  # every image converted once, up front
        train_x, val_x = to_pixels(train_x), to_pixels(val_x)
    training = PlainTraining(settings, tuple(train_x.shape[1:]), device)
    train = Batches(train_x, settings.batch_size, shuffle=True, limit=limit, drop_last=bool(spec.get("cuda_graph")))
    val = Batches(val_x, settings.batch_size, shuffle=False, limit=limit)
    if spec.get("compile"):
        compile_network(training.network, spec["compile"])
    step = cuda_graph_step(training, next(iter(train))) if spec.get("cuda_graph") else training.step
    times: list[float] = []
    cpu: list[float] = []
    val_loss = float("nan")
    for _ in range(spec["epochs"]):
        sync(device)
        start = _clock()
        training.train()
        for x in train:
            step(x)
        if spec.get("validate", True):
            val_loss = float(training.validation_loss(val))
        _epoch(times, cpu, start, device)
    return {"times": times, "cpu": cpu, "train_images": train.images_per_pass, "val_loss": val_loss}


def cuda_graph_step(training: PlainTraining, example: Tensor):
    """The whole training step (forward, backward, clipping, optimizer) captured once as a CUDA
    graph; each call copies the batch into the static input and replays the graph (PyTorch docs,
    "CUDA Graphs", whole-network capture)."""
    static_x = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream (allocates the momentum buffers and gradients)
            training.step(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    training.optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss = training.loss(static_x)
        loss.backward()
        training.clip_gradients()
        training.optimizer.step()

    def replay(x: Tensor) -> Tensor:
        static_x.copy_(x)
        graph.replay()
        return loss

    return replay


def run_reference(spec: dict[str, Any], settings: Settings) -> Timings:
    """pytorch/examples ``vae/main.py``: torchvision MNIST + ToTensor + DataLoader, eager loop."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms
    from torchvision.utils import save_image

    device, bs, limit = spec["device"], settings.batch_size, spec.get("limit_batches")
    full = datasets.MNIST(spec["data_dir"], train=True, download=False, transform=transforms.ToTensor())
    train_idx, val_idx = train_val_split(len(full), settings.val_size, settings.split_seed)
    kwargs = {"num_workers": 1, "pin_memory": True} if device == "cuda" else {}  # as there
    training = PlainTraining(settings, tuple(full[0][0].shape), device)
    train_loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=bs, shuffle=True, **kwargs)
    val_loader = DataLoader(Subset(full, val_idx.tolist()), batch_size=bs, shuffle=False, **kwargs)
    network, likelihood = training.network, training.likelihood
    log = open(os.devnull, "w") if spec.get("quiet") else sys.stdout
    pictures = tempfile.TemporaryDirectory()
    times: list[float] = []
    cpu: list[float] = []
    for epoch in range(spec["epochs"]):
        start = _clock()
        training.train()
        train_loss = 0.0
        for batch_idx, (data, _) in enumerate(train_loader):
            if batch_idx == limit:
                break
            loss = training.step(data.to(device))
            train_loss += loss.item()
            if batch_idx % 10 == 0:
                print(f"Train Epoch: {epoch} [{batch_idx * len(data)}]\tLoss: {loss.item():.6f}", file=log)
        print(f"====> Epoch: {epoch} Average loss: {train_loss / (batch_idx + 1):.4f}", file=log)
        training.train(False)
        total, seen = 0.0, 0
        with torch.no_grad():
            for i, (data, _) in enumerate(val_loader):
                if i == limit:
                    break
                data = data.to(device)
                total += training.loss(data).item() * len(data)
                seen += len(data)
                if i == 0:  # as there: 8 images beside their reconstructions
                    recon = likelihood.mean(network.decode(network.encode(data[:8])[0]))
                    save_image(torch.cat([data[:8], recon]).cpu(), f"{pictures.name}/reconstruction_{epoch}.png", nrow=8)
            sample = likelihood.mean(network.decode(torch.randn(64, network.latent_dim, device=device)))
            save_image(sample.cpu(), f"{pictures.name}/sample_{epoch}.png")
        val_loss = total / seen
        _epoch(times, cpu, start, device)
    pictures.cleanup()
    train_images = min(len(train_idx), (limit or len(train_idx)) * bs)
    return {"times": times, "cpu": cpu, "train_images": train_images, "val_loss": val_loss}


def _epoch_clock(device: str):
    """A callback marking each training epoch's start and the end of fit: an epoch's time runs
    from its start to the next one's, its validation, callbacks and checkpoints included."""
    from lightning.pytorch import Callback

    class EpochClock(Callback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            sync(device)
            self.marks.append(_clock())

        def on_train_end(self, trainer, pl_module) -> None:
            sync(device)
            self.marks.append(_clock())

        def timings(self) -> tuple[list[float], list[float]]:
            pairs = list(zip(self.marks[:-1], self.marks[1:]))
            return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]

    return EpochClock()


def run_lightning(spec: dict[str, Any], settings: Settings, callbacks: tuple = ()) -> Timings:
    """The floor's model, batches and clipping in the smallest LightningModule and a bare Trainer
    (``callbacks``: only the benchmark's own, which time it)."""
    from lightning.pytorch import LightningModule, Trainer

    class MinimalModule(LightningModule):
        """The loss in ``training_step``, its batch-weighted sum in ``validation_step``; no logging."""

        def __init__(self, training: PlainTraining) -> None:
            super().__init__()
            self.network, self.likelihood = training.network, training.likelihood
            self.optimizer, self.mc_samples = training.optimizer, training.mc_samples
            self.val_total = 0.0

        def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
            return vae_loss(self.network, self.likelihood, x, self.mc_samples)

        def on_validation_epoch_start(self) -> None:
            self.val_total = 0.0

        def validation_step(self, x: Tensor, batch_idx: int) -> None:
            self.val_total += vae_loss(self.network, self.likelihood, x, self.mc_samples) * len(x)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return self.optimizer

    device, limit = spec["device"], spec.get("limit_batches")
    train_x, val_x = mnist_split(spec["data_dir"], settings, device)
    module = MinimalModule(PlainTraining(settings, tuple(train_x.shape[1:]), device))
    train = Batches(train_x, settings.batch_size, shuffle=True, limit=limit)
    val = Batches(val_x, settings.batch_size, shuffle=False, limit=limit)
    clock = _epoch_clock(device)
    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=spec["epochs"],
        gradient_clip_val=settings.clip_val, gradient_clip_algorithm=settings.clip_algorithm,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[clock, *callbacks],
    )
    validate = spec.get("validate", True)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val if validate else None)
    times, cpu = clock.timings()
    val_loss = float(module.val_total) / val.images_per_pass if validate else float("nan")
    return {"times": times, "cpu": cpu, "train_images": train.images_per_pass, "val_loss": val_loss}


def project_args(spec: dict[str, Any], settings: Settings, save_dir: str) -> list[str]:
    """The command line of one project row: ``configs/default.yaml``, the row's overlays and overrides."""
    args = ["--config", str(REPO_ROOT / "configs" / "default.yaml")]
    for overlay in spec.get("configs", []):
        args += ["--config", str(REPO_ROOT / overlay)]
    args += [
        f"--data.data_dir={spec['data_dir']}",
        "--data.download=false",
        f"--data.batch_size={settings.batch_size}",
        f"--trainer.max_epochs={spec['epochs']}",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.accelerator={'gpu' if spec['device'] == 'cuda' else 'cpu'}",
        "--trainer.devices=1",
    ]
    for key, value in spec.get("network", {}).items():
        args.append(f"--model.network.init_args.{key}={value}")
    if spec.get("limit_batches") is not None:
        args += [f"--trainer.limit_train_batches={spec['limit_batches']}", f"--trainer.limit_val_batches={spec['limit_batches']}"]
    return args + list(spec.get("cli_args", []))


def run_project(spec: dict[str, Any], settings: Settings, callbacks: tuple = ()) -> Timings:
    """``Trainer.fit`` as users run it: the config through ``vae_lightning.cli.main``. A row's
    ``callback_settings`` (class name -> attributes) change the configured callbacks, such as
    ``GradientDiagnostics.count_every_step``, which the command line cannot reach in a list;
    ``callbacks`` are the benchmark's own, which time it."""
    from vae_lightning.cli import main

    device = spec["device"]
    with tempfile.TemporaryDirectory() as save_dir:
        cli = main(project_args(spec, settings, save_dir), run=False)
        for callback in cli.trainer.callbacks:
            for name, value in spec.get("callback_settings", {}).get(type(callback).__name__, {}).items():
                setattr(callback, name, value)
        clock = _epoch_clock(device)
        cli.trainer.callbacks += [clock, *callbacks]
        if spec.get("compile"):
            compile_network(cli.model.network, spec["compile"])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        times, cpu = clock.timings()
        train_images = min(len(cli.datamodule.splits["train"][0]), cli.trainer.num_training_batches * settings.batch_size)
        val_loss = float(cli.trainer.callback_metrics.get("val/loss", float("nan")))
    return {"times": times, "cpu": cpu, "train_images": train_images, "val_loss": val_loss}


RUNNERS = {"floor": run_floor, "reference": run_reference, "lightning": run_lightning, "project": run_project}
