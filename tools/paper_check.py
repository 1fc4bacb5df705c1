"""The VAE, IWAE-5, IWAE-50 and the VampPrior against their papers: writes docs/results/paper_check.json.

    python -m tools.paper_check --epochs 10            # from the repository root; hours on 2 CPU cores
    python -m tools.paper_check --epochs 1 --k 20 --trial_batches 5 --out /tmp/paper_check.json   # a trial run

Every model is configs/bernoulli.yaml, Burda et al.'s one-stochastic-layer architecture (784-200-200-50
MLP, Bernoulli likelihood, dynamically binarized MNIST, Adam lr 1e-3 eps 1e-4, batches of 100), trained
for the same fixed number of epochs (``--epochs``: the same budget of passes, not of time, so that the
numbers do not depend on the machine's load), and differs only in its objective or prior::

    vae        the ELBO, N(0, I)                   (Burda et al. 2015, Table 1: VAE, k = 1)
    iwae_5     configs/iwae.yaml, K = 5            (Table 1: IWAE, k = 5)
    iwae_50    configs/iwae.yaml, K = 50           (Table 1: IWAE, k = 50)
    vampprior  configs/vampprior.yaml, 500 pseudo-inputs, the ELBO (Tomczak & Welling 2018)

Each runs, into ``runs/docs/paper_check/<model>/``::

    python -m vae_lightning fit --config configs/default.yaml --config configs/bernoulli.yaml [--config <overlay>] \\
        --data.data_dir ../shared/data --trainer.max_epochs <epochs>
    python -m vae_lightning test --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt \\
        --evaluation.iwae_samples '[1, <k>]'

and is scored by the same test-set bound L_k (``--k``, at least 1,000 for the result file; Burda et al.
report L_5000) on the 10,000 test images. The target is the papers' effect, the gain in nats over
the VAE, not their absolute numbers (which took 3,280 passes): the result records each model's L_1
and L_k, its gain over the VAE beside the paper's, and the wall time of each command with the load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vae_lightning.runs import read_scalars

from tools.common import ROOT, RESULTS, cli, machine, rounded, script_parser, test_metrics, timed_commands, write_json

OUT = Path("runs/docs/paper_check")

#: The models and what each adds to configs/bernoulli.yaml.
MODELS: dict[str, list[str]] = {
    "vae": [],
    "iwae_5": ["--config", "configs/iwae.yaml", "--model.objective.init_args.k", "5"],
    "iwae_50": ["--config", "configs/iwae.yaml", "--model.objective.init_args.k", "50"],
    "vampprior": ["--config", "configs/vampprior.yaml", "--model.prior.init_args.components", "500"],
}

#: Each paper's test log-likelihood of the model and of its baseline on dynamically binarized MNIST.
REFERENCES = {
    "iwae_5": {"paper": "Burda et al. 2015, Table 1, one stochastic layer, IWAE k=5 against the VAE, L_5000",
               "log_likelihood": -85.54, "baseline": -86.76},
    "iwae_50": {"paper": "Burda et al. 2015, Table 1, one stochastic layer, IWAE k=50 against the VAE, L_5000",
                "log_likelihood": -84.78, "baseline": -86.76},
    "vampprior": {"paper": "Tomczak & Welling 2018, Table 1, static MNIST, VAE (L=1) with the VampPrior against the "
                  "standard prior (their architecture: gated layers of 300, 40 latent dimensions, KL warm-up, L_5000)",
                  "log_likelihood": -85.57, "baseline": -88.56},
}

#: The smallest K of a bound the result file accepts.
MIN_K = 1000


def _commands(data_dir: str, epochs: int, k: int, trial_batches: int | None) -> dict[str, tuple[list[str], Path]]:
    commands = {}
    for name, overlay in MODELS.items():
        folder = OUT / name
        version = folder / "lightning_logs/version_0"
        limit = ([f"--trainer.limit_{stage}_batches={trial_batches}" for stage in ("train", "val", "test")] if trial_batches else [])
        commands[f"{name}_fit"] = (
            cli("fit", "--config", "configs/default.yaml", "--config", "configs/bernoulli.yaml", *overlay, "--data.data_dir", data_dir,
                "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(folder), "--sample_quality.every_n_epochs", "0", *limit[:2]),
            ROOT / folder / "fit.log",
        )
        commands[f"{name}_test"] = (
            cli("test", "--config", str(version / "config.yaml"), "--data.data_dir", data_dir, "--ckpt_path", str(version / "checkpoints/last.ckpt"),
                "--evaluation.iwae_samples", f"[1, {k}]", "--evaluation.denoise_std", "0", "--evaluation.feature_network", "null", *limit[2:]),
            ROOT / folder / "test.log",
        )
    return commands


def main(data_dir: str, epochs: int, k: int, trial_batches: int | None, out: Path, summarize_only: bool) -> None:
    if out.resolve() == (RESULTS / "paper_check.json").resolve() and (k < MIN_K or trial_batches):
        raise SystemExit(f"docs/results/paper_check.json is scored by L_k with k >= {MIN_K}, trained and tested on all the images; "
                         "pass --out <file> for a trial with a smaller --k or --trial_batches")
    if not summarize_only:
        shutil.rmtree(ROOT / OUT, ignore_errors=True)
    timings = timed_commands(ROOT / OUT, None if summarize_only else _commands(data_dir, epochs, k, trial_batches))
    models = {}
    for name in MODELS:
        trained = read_scalars(ROOT / OUT / name / "lightning_logs/version_0")
        tested = test_metrics(ROOT / OUT / name / "lightning_logs/version_1")
        models[name] = {
            "fit": timings[f"{name}_fit"],
            "test": timings[f"{name}_test"],
            "epochs": len(trained["val/loss"]),
            "val_loss_per_epoch": [rounded(v) for v in trained["val/loss"]],
            "active_units": int(trained["latent/active_units"][-1]),
            "test_elbo": rounded(tested["iwae_k1"]),
            "test_iwae": rounded(tested[f"iwae_k{k}"]),
        }
    baseline = models["vae"]["test_iwae"]
    for name, model in models.items():
        model["gain_over_vae"] = rounded(model["test_iwae"] - baseline)
        if name in REFERENCES:
            reference = REFERENCES[name]
            paper_gain = reference["log_likelihood"] - reference["baseline"]
            model["reference"] = {**reference, "gain": rounded(paper_gain)}
            model["gain_minus_paper_gain"] = rounded(model["gain_over_vae"] - paper_gain)
    result = {
        "description": "configs/bernoulli.yaml (784-200-200-50 MLP, Bernoulli likelihood, dynamically binarized MNIST, Adam lr 1e-3 "
        "eps 1e-4, batches of 100) trained with the ELBO, IWAE k=5, IWAE k=50 and the VampPrior for the same number of epochs, "
        "each scored by the test-set IWAE bound L_k; gain_over_vae is L_k less the VAE's, beside each paper's gain",
        "script": "python -m tools.paper_check",
        "machine": machine(),
        "epochs": epochs,
        "batch_size": 100,
        "k": k,
        "trial_batches": trial_batches,  # null: every training, validation and test image
        "models": models,
    }
    write_json(out, result)


if __name__ == "__main__":
    parser = script_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of every model (the same budget)")
    parser.add_argument("--k", type=int, default=MIN_K, help=f"importance samples of the test-set bound L_k (>= {MIN_K} for the result file)")
    parser.add_argument("--trial_batches", type=int, default=None,
                        help="a trial run: this many batches of 100 per epoch of training, validation and test")
    parser.add_argument("--out", type=Path, default=RESULTS / "paper_check.json", help="the result file")
    args = parser.parse_args()
    main(args.data_dir, args.epochs, args.k, args.trial_batches, args.out, args.summarize_only)
