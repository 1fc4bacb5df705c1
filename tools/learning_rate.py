"""The learning-rate table: writes docs/results/learning_rate.json and learning_rate.md.

    python -m tools.learning_rate        # from the repository root; a few minutes on 2 CPU cores

Runs, into ``runs/docs/learning_rate/lr_<lr>/``, for lr in 1e-3, 3e-3, 1e-2 and 3e-2::

    python -m vae_lightning fit --config configs/default.yaml --data.data_dir ../shared/data \\
        --trainer.max_epochs 5 --model.optimizer.init_args.lr <lr>

(SGD with momentum 0.9 and clip value 1.0, as in the default config) and records the
validation loss (RL + KL) after epochs 1, 3 and 5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vae_lightning.runs import read_scalars

from tools.common import ROOT, RESULTS, cli, machine, rounded, run, script_parser, write_json

OUT = Path("runs/docs/learning_rate")
RATES = ("1e-3", "3e-3", "1e-2", "3e-2")
EPOCHS = (1, 3, 5)


def table(rows: list[dict]) -> str:
    """The Markdown table the README shows: one row per learning rate."""
    lines = ["| lr | " + " | ".join(f"epoch {e}" for e in EPOCHS) + " |", "| --- |" + " --- |" * len(EPOCHS)]
    for row in rows:
        lines.append(f"| {row['lr']} | " + " | ".join(f"{row['val_loss'][str(e)]:.2f}" for e in EPOCHS) + " |")
    return "\n".join(lines) + "\n"


def main(data_dir: str) -> None:
    shutil.rmtree(ROOT / OUT, ignore_errors=True)
    rows = []
    for lr in RATES:
        save_dir = OUT / f"lr_{lr}"
        timing = run(
            cli("fit", "--config", "configs/default.yaml", "--data.data_dir", data_dir, "--trainer.max_epochs", str(max(EPOCHS)),
                "--model.optimizer.init_args.lr", lr, "--trainer.default_root_dir", str(save_dir)),
            ROOT / save_dir / "fit.log",
        )
        val = read_scalars(ROOT / save_dir / "lightning_logs/version_0")["val/loss"]
        rows.append({"lr": lr, "val_loss": {str(e): rounded(val[e - 1]) for e in EPOCHS}, "val_loss_per_epoch": [rounded(v) for v in val], "fit": timing})
    result = {
        "description": "configs/default.yaml for 5 epochs at four learning rates; validation loss (RL + KL) after epochs 1, 3 and 5",
        "script": "python -m tools.learning_rate",
        "machine": machine(),
        "rows": rows,
    }
    write_json(RESULTS / "learning_rate.json", result)
    (RESULTS / "learning_rate.md").write_text(
        "<!-- written by python -m tools.learning_rate; numbers from learning_rate.json -->\n\n"
        "Validation loss (RL + KL) of configs/default.yaml after epochs 1, 3 and 5, by learning rate:\n\n" + table(rows)
    )
    print(table(rows))


if __name__ == "__main__":
    parser = script_parser(__doc__, summarize=False)
    main(parser.parse_args().data_dir)
