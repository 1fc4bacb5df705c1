"""The report of one experiment: its figures and its Markdown results table, (re)made from the
stored study and the runs' logs, so it can be rebuilt at any time without training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from vae_lightning.experiments import figures
from vae_lightning.experiments.results import best_trial, collect
from vae_lightning.experiments.spec import Experiment
from vae_lightning.experiments.tables import results_table, summary_line


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote: the Markdown file and the figures."""

    markdown: Path
    figures: dict[str, Path]


def make_report(experiment: Experiment, study: optuna.Study, out_dir: Path, fast: bool = False) -> Report:
    """Write ``<name>_*.png`` and ``<name>.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = collect(experiment, study)
    title = experiment.display_title + (" (fast mode)" if fast else "")
    option = next(iter(experiment.vary)) if len(experiment.vary) == 1 else "setting"
    name = experiment.name
    paths = {
        "val_curves": figures.plot_val_curves(settings, title, out_dir / f"{name}_val_loss.png"),
        "final_loss": figures.plot_final_loss(settings, title, out_dir / f"{name}_final_loss.png"),
        "latent_ranges": figures.plot_latent_ranges(settings, title, out_dir / f"{name}_latent_ranges.png"),
        "grad_norms": figures.plot_grad_norms(settings, title, out_dir / f"{name}_grad_norms.png"),
        "best_samples": figures.plot_best_samples(best_trial(settings), title, out_dir / f"{name}_best_samples.png"),
    }
    lines = [
        f"# {title}",
        "",
        summary_line(settings, option),
        "",
        results_table(settings, option),
        "",
        *[f"![{key}]({path.name})" for key, path in paths.items()],
        "",
    ]
    markdown = out_dir / f"{name}.md"
    markdown.write_text("\n".join(lines))
    return Report(markdown=markdown, figures=paths)
