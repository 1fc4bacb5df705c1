"""Screenshots of TensorBoard's Scalars, Images and HParams dashboards for the README.

    python -m tools.screenshots     # from the repository root; a few minutes on 2 CPU cores

Trains two short runs of the default config that differ in the learning rate (10 epochs of 80
batches, validation on 10 batches), each into ``runs/docs/screenshots/lr_<rate>/``::

    python -m vae_lightning fit --config configs/default.yaml --data.data_dir ../shared/data \\
        --trainer.max_epochs 10 --trainer.limit_train_batches 80 --trainer.limit_val_batches 10 \\
        --trainer.log_every_n_steps 10 --model.optimizer.init_args.lr <0.003 | 0.01>

then serves them with ``tensorboard --logdir runs/docs/screenshots --host 127.0.0.1 --port <free port>``
and photographs each dashboard with Playwright driving Debian's headless Chromium (the
``chromium`` package), writing ``docs/screenshots/scalars.png``, ``images.png`` and
``hparams.png`` (the HParams table's columns ticked first). Rerunning it refreshes them.
``--skip-training`` photographs the runs already there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, sync_playwright

from tools.common import ROOT, cli, shrink_png

HERE = ROOT / "docs/screenshots"
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download is not needed
LOGS = Path("runs/docs/screenshots")
RATES = ("0.003", "0.01")
# The legacy Scalars and Images dashboards take a tag filter in the URL.
# name -> (URL fragment, viewport width, height, a script to run once the page has drawn)
PAGES = {
    "scalars": ("#scalars&tagFilter=" + quote("^(train|val)/(loss|rl|kl)(_step)?$"), 1400, 1150, None),
    "images": ("#images&tagFilter=" + quote("^(samples|reconstructions|latent_space/manifold)$"), 1400, 1000, None),
    "hparams": ("#hparams", 1760, 400, "show_columns"),
}
# the HParams table's columns (its sidebar's checkboxes, by label); the rest are unticked
HPARAMS_COLUMNS = [
    "batch_size", "network/init_args/hidden_dims", "network/init_args/latent_dim", "optimizer/class_path",
    "optimizer/init_args/lr", "optimizer/init_args/momentum", "hp_metric",
]
# every element under ``root``, through the dashboards' shadow DOMs
DEEP_QUERY = """
const deepQuery = (root, tag) => {
  const found = [];
  const walk = (node) => { for (const el of node.querySelectorAll("*")) {
    if (el.tagName === tag) found.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  } };
  walk(root);
  return found;
};
"""


def show_columns(page: Page) -> None:
    """Tick exactly the HParams sidebar's checkboxes named in HPARAMS_COLUMNS."""
    wanted = json.dumps(HPARAMS_COLUMNS)
    ticked = page.evaluate(DEEP_QUERY + f"""(() => {{
      const wanted = new Set({wanted});
      const boxes = deepQuery(document, "PAPER-CHECKBOX").filter((b) => b.textContent.trim() !== "");
      const hparams = boxes.slice(0, boxes.findIndex((b) => b.textContent.trim() === "Unknown"));
      for (const box of hparams) if (box.checked !== wanted.has(box.textContent.trim())) box.click();
      return hparams.filter((b) => b.checked).map((b) => b.textContent.trim());
    }})()""")
    missing = set(HPARAMS_COLUMNS) - set(ticked)
    if missing:
        raise SystemExit(f"the HParams dashboard has no column {sorted(missing)}")


def train(data_dir: str) -> None:
    shutil.rmtree(ROOT / LOGS, ignore_errors=True)
    for lr in RATES:
        subprocess.run(
            cli("fit", "--config", "configs/default.yaml", "--data.data_dir", data_dir,
             "--trainer.max_epochs", "10", "--trainer.limit_train_batches", "80", "--trainer.limit_val_batches", "10",
             "--trainer.log_every_n_steps", "10", "--model.optimizer.init_args.lr", lr,
             "--trainer.default_root_dir", str(LOGS / f"lr_{lr}"),
             "--progress_bar.refresh_rate", "0"),
            cwd=ROOT, check=True,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main(data_dir: str, skip_training: bool, wait: float) -> None:
    if not skip_training:
        train(data_dir)
    port = free_port()
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(LOGS), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for(base + "data/logdir")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for name, (fragment, width, height, action) in PAGES.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(base + fragment)
                page.wait_for_timeout(wait * 1000)  # TensorBoard fetches the runs and draws the charts
                if action == "show_columns":
                    show_columns(page)
                    page.wait_for_timeout(3000)
                out = HERE / f"{name}.png"
                page.screenshot(path=out)
                shrink_png(out)
                print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size // 1024} KB)")
    finally:
        board.terminate()
        board.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data", help="folder holding MNIST/raw")
    parser.add_argument("--skip-training", action="store_true", help="photograph the runs already in runs/docs/screenshots")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to let each dashboard load and draw")
    args = parser.parse_args()
    main(args.data_dir, args.skip_training, args.wait)
