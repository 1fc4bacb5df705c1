"""What the console shows: libraries' warnings and tips that say nothing about the user's run are
filtered out, each by its message and the module that issues it, so the warnings that do concern
the run (too few batches for the logging interval, a checkpoint's differing settings) stand out."""

from __future__ import annotations

import logging
import warnings

#: (message regex, issuing module regex, why it is not the user's concern)
_IGNORED_WARNINGS = (
    # main(args) is how the sweep, the benchmarks and scripts drive the CLI from a program that
    # has a command line of its own; the arguments given are the run's, not that program's
    (r"LightningCLI's args parameter is intended to run from within Python", r"lightning\.pytorch\.cli|vae_lightning\.cli"),
    # torch deprecated LeafSpec; Lightning's own pytree helper still uses it on every batch
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # ImagePredictionWriter does not use batch indices, which Lightning cannot infer from the tensor loader
    (r"Couldn't infer the batch indices fetched from your dataloader", r"lightning\.pytorch\.loops\.prediction_loop"),
    # data.dataset streaming: LitData's StreamingDataset gives each DataLoader worker its own part
    # of the shard, so its __len__ is exact with any number of workers
    (r"Your `IterableDataset` has `__len__` defined", r"lightning\.pytorch\.utilities\.data"),
    # under DDP: the training terms' epoch means are rank 0's own batches (synchronising them would
    # cost a collective every step; val/* and test/* are synchronised), and LatentDiagnostics
    # gathers the posteriors of every process before it logs; Lightning cannot see either
    (
        r"It is recommended to use `self\.log\('(train/(loss|rl|kl|kl_weight)|latent/[^']+)', \.\.\., sync_dist=True\)`",
        r"lightning\.pytorch\.trainer\.connectors\.logger_connector\.result",
    ),
)


class _DropAdverts(logging.Filter):
    """Drops Lightning's advert for its hosted logging service, printed at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip:")


def quiet_library_noise() -> None:
    """Install the filters (idempotent; process-wide, as warnings filters are)."""
    for message, module in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in logger.filters):
        logger.addFilter(_DropAdverts())
