"""The Bernoulli VAE of configs/bernoulli.yaml against Burda et al. 2015: writes docs/results/bernoulli.json.

    python -m tools.bernoulli            # from the repository root; about 30-60 min on 2 CPU cores

Runs, into ``runs/docs/bernoulli/``::

    python -m vae_lightning fit --config configs/default.yaml --config configs/bernoulli.yaml \\
        --data.data_dir ../shared/data --trainer.max_epochs 20
    python -m vae_lightning test --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt \\
        --evaluation.iwae_samples '[1, 50, 500]'
    python -m vae_lightning test ... --evaluation.iwae_samples '[500]' --trainer.limit_test_batches 10

A fixed number of epochs, not a time limit, so that the numbers do not depend on the machine's
load. Records the IWAE bounds L_1 (the ELBO), L_50 and L_500 on the 10,000 test images (and
L_500 on the first 1,000), the active units after the last validation, the PSNR and SSIM of
reconstructions and of denoising (noise std 0.5), the validation loss per epoch, and the wall
time of each command with the machine's load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vae_lightning.runs import read_events, read_scalars

from tools.common import ROOT, RESULTS, cli, machine, rounded, script_parser, test_metrics, timed_commands, write_json

OUT = Path("runs/docs/bernoulli")


def main(data_dir: str, epochs: int, summarize_only: bool) -> None:
    version = OUT / "lightning_logs/version_0"
    ckpt = version / "checkpoints/last.ckpt"
    test = ["test", "--config", str(version / "config.yaml"), "--data.data_dir", data_dir, "--ckpt_path", str(ckpt)]
    commands = None
    if not summarize_only:
        shutil.rmtree(ROOT / OUT, ignore_errors=True)
        commands = {
            "fit": (cli("fit", "--config", "configs/default.yaml", "--config", "configs/bernoulli.yaml", "--data.data_dir", data_dir,
                        "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(OUT)), ROOT / OUT / "fit.log"),
            "test": (cli(*test, "--evaluation.iwae_samples", "[1, 50, 500]"), ROOT / OUT / "test.log"),
            "test_first_1000": (cli(*test, "--evaluation.iwae_samples", "[500]", "--evaluation.denoise_std", "0",
                                    "--trainer.limit_test_batches", "10"), ROOT / OUT / "test_first_1000.log"),
        }
    timings = timed_commands(ROOT / OUT, commands)
    trained = read_scalars(ROOT / version)
    tested = test_metrics(ROOT / OUT / "lightning_logs/version_1")
    tested_1000 = test_metrics(ROOT / OUT / "lightning_logs/version_2")
    val_loss = [rounded(v) for v in trained["val/loss"]]
    result = {
        "description": "configs/bernoulli.yaml (784-200-200-50 MLP VAE, Bernoulli likelihood, dynamically binarized "
        "MNIST, Adam lr 1e-3, batch 100), trained for a fixed number of epochs and tested on the 10,000 test images",
        "script": "python -m tools.bernoulli",
        "machine": machine(),
        **timings,
        "epochs": len(val_loss),
        "batch_size": 100,
        "optimizer_steps": max(e.step for e in read_events(ROOT / version).Scalars("val/loss")) + 1,
        "val_loss_per_epoch": val_loss,
        "val_loss_drop_per_epoch_last_5": rounded((val_loss[-6] - val_loss[-1]) / 5),
        "active_units": int(trained["latent/active_units"][-1]),
        "latent_dim": 50,
        "iwae": {str(k): rounded(tested[f"iwae_k{k}"]) for k in (1, 50, 500)},
        "iwae_k500_minus_k50": rounded(tested["iwae_k500"] - tested["iwae_k50"]),
        "iwae_k500_first_1000": rounded(tested_1000["iwae_k500"]),
        "gap_to_reference": rounded(-86.76 - tested["iwae_k500"]),
        "test_minutes": rounded(timings["test"]["wall_time_s"] / 60, 1),
        "test_metrics": tested,
        "denoise_std": 0.5,  # the default evaluation section's: noise on the test images for test/denoise_*
        "reference": {"paper": "Burda et al. 2015, Table 1, VAE, 1 stochastic layer, k=1, L_5000", "log_likelihood": -86.76, "passes": 3280},
    }
    write_json(RESULTS / "bernoulli.json", result)


if __name__ == "__main__":
    parser = script_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    main(args.data_dir, args.epochs, args.summarize_only)
