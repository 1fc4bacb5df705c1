"""The default run, as the README's quick start trains and tests it: writes docs/results/default_run.json
and the README's pictures in docs/pictures/.

    python -m tools.default_run          # from the repository root; a few minutes on 2 CPU cores

Runs, into ``runs/docs/default/``::

    python -m vae_lightning fit --config configs/default.yaml --data.data_dir ../shared/data \\
        --trainer.default_root_dir runs/docs/default
    python -m vae_lightning test --config configs/default.yaml --data.data_dir ../shared/data \\
        --ckpt_path <run>/checkpoints/last.ckpt --trainer.default_root_dir runs/docs/default
    python -m vae_lightning.explore --ckpt_path <run>/checkpoints/last.ckpt --out docs/pictures

(the pictures then rewritten with a palette of 128 colours, to keep them small).
Records the validation loss after every epoch, the test loss, RL and KL of the last checkpoint
(and the test metrics of the default ``evaluation`` section), and the wall time of ``fit`` with
the machine, its load (``uptime``) and the torch and Lightning versions.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from vae_lightning.runs import read_scalars

from tools.common import ROOT, RESULTS, cli, machine, rounded, script_parser, shrink_png, test_metrics, timed_commands, write_json

OUT = Path("runs/docs/default")
PICTURES = Path("docs/pictures")


def main(data_dir: str, summarize_only: bool) -> None:
    version = OUT / "lightning_logs/version_0"
    ckpt = version / "checkpoints/last.ckpt"
    logger = ["--trainer.default_root_dir", str(OUT)]
    commands = None
    if not summarize_only:
        shutil.rmtree(ROOT / OUT, ignore_errors=True)
        commands = {
            "fit": (cli("fit", "--config", "configs/default.yaml", "--data.data_dir", data_dir, *logger), ROOT / OUT / "fit.log"),
            "test": (cli("test", "--config", "configs/default.yaml", "--data.data_dir", data_dir, "--ckpt_path", str(ckpt), *logger),
                     ROOT / OUT / "test.log"),
            "explore": ([sys.executable, "-m", "vae_lightning.explore", "--ckpt_path", str(ckpt), "--out", str(PICTURES),
                         "--data_dir", data_dir], ROOT / OUT / "explore.log"),
        }
    timings = timed_commands(ROOT / OUT, commands)
    if commands is not None:
        for picture in (ROOT / PICTURES).glob("*.png"):
            shrink_png(picture)
    trained = read_scalars(ROOT / version)
    tested = test_metrics(ROOT / OUT / "lightning_logs/version_1")
    val = trained["val/loss"]
    val_rl, val_kl = trained["val/rl"], trained["val/kl"]
    fit_s = timings["fit"]["wall_time_s"]
    result = {
        "description": "configs/default.yaml (784-512-256-2 MLP VAE, RL + KL, SGD lr 3e-3 momentum 0.9, clip value 1.0, "
        "batch 128, 20 epochs), tested on the 10,000 test images with its last checkpoint",
        "script": "python -m tools.default_run",
        "machine": machine(),
        **timings,
        "epochs": len(val),
        "fit_minutes": rounded(fit_s / 60, 1),
        "fit_seconds_per_epoch": rounded(fit_s / len(val), 1),
        "val_loss_per_epoch": [rounded(v) for v in val],
        "val_rl_per_epoch": [rounded(v) for v in val_rl],
        "val_kl_per_epoch": [rounded(v) for v in val_kl],
        "val_loss_epoch_10": rounded(val[9]),
        "val_loss_epoch_20": rounded(val[19]),
        "val_rl_epoch_1_per_pixel": rounded(val_rl[0] / 784, 3),
        "test_loss": rounded(tested["loss"]),
        "test_rl": rounded(tested["rl"]),
        "test_kl": rounded(tested["kl"]),
        "test_metrics": tested,
        "active_units": int(trained["latent/active_units"][-1]),
        "pictures": sorted(str(p.relative_to(ROOT)) for p in (ROOT / PICTURES).glob("*.png")),
    }
    write_json(RESULTS / "default_run.json", result)


if __name__ == "__main__":
    args = script_parser(__doc__).parse_args()
    main(args.data_dir, args.summarize_only)
