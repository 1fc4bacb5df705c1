"""The ratios of a benchmark run, the targets they are held to, and its Markdown tables."""

from __future__ import annotations

from typing import Any

from rows import FLOOR, LIGHTNING, PLAIN, PROJECT, REFERENCE

#: The CPU targets at batch size 128, all against the fair floor (the config's numerics).
TARGETS = {
    "project_over_floor_time": ("<=", 1.15),
    "reference_over_project_time": (">=", 2.0),
    "project_over_floor_memory": ("<=", 1.25),
}

#: The main rows, with the short names the table of runs uses.
MAIN_ROWS = {FLOOR: "floor", PLAIN: "plain loop", REFERENCE: "reference", LIGHTNING: "lightning", PROJECT: "project"}

#: Time ratios reported for every run: (key, numerator row, denominator row).
TIME_RATIOS = [
    ("project_over_floor", PROJECT, FLOOR),
    ("reference_over_project", REFERENCE, PROJECT),
    ("lightning_over_floor", LIGHTNING, FLOOR),
    ("project_over_lightning", PROJECT, LIGHTNING),
    ("plain_loop_over_floor", PLAIN, FLOOR),
    ("reference_over_floor", REFERENCE, FLOOR),
]


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in rows if "error" not in r}


def ratios(rows: list[dict[str, Any]], device: str) -> dict[str, float]:
    """Wall-time ratios, and on CPU the same from process CPU seconds (which a busy machine
    disturbs less), and the peak-memory ratios of the project to the floor."""
    by = _by_name(rows)
    out: dict[str, float] = {}
    for key, a, b in TIME_RATIOS:
        if a in by and b in by:
            out[f"{key}_time"] = by[a]["seconds_per_epoch"] / by[b]["seconds_per_epoch"]
            if device == "cpu":
                out[f"{key}_cpu_time"] = by[a]["cpu_seconds_per_epoch"] / by[b]["cpu_seconds_per_epoch"]
    if PROJECT in by and FLOOR in by:
        mem_key = "peak_cuda_mb" if device == "cuda" else "peak_rss_mb"
        out["project_over_floor_memory"] = by[PROJECT][mem_key] / by[FLOOR][mem_key]
        above = [by[name].get("peak_rss_above_imports_mb") for name in (PROJECT, FLOOR)]
        if device == "cpu" and all(above):
            out["project_over_floor_memory_above_imports"] = above[0] / above[1]
    return {k: round(v, 3) for k, v in out.items()}


def per_run_ratios(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each interleaved run's seconds per epoch and time ratios (``--repeats``): their spread is
    the uncertainty of the combined ratios."""
    by = _by_name(rows)
    names = [name for name in MAIN_ROWS if name in by]
    if PROJECT not in by or "runs_seconds_per_epoch" not in by[PROJECT]:
        return []
    runs = []
    for i, values in enumerate(zip(*(by[name]["runs_seconds_per_epoch"] for name in names))):
        run = dict(zip(names, values))
        run.update({key: round(run[a] / run[b], 3) for key, a, b in TIME_RATIOS if a in run and b in run})
        shares = [by[name]["runs_others_cpu_share"][i] for name in names if "runs_others_cpu_share" in by[name]]
        if shares:
            run["others_cpu_share"] = max(shares)  # the busiest row's: how disturbed this run was
        runs.append(run)
    return runs


def targets(r: dict[str, float]) -> dict[str, Any]:
    out = {}
    for key, (op, bound) in TARGETS.items():
        if key in r:
            met = r[key] <= bound if op == "<=" else r[key] >= bound
            out[key] = {"value": r[key], "target": f"{op} {bound}", "bound": bound, "met": met}
    return out


def _conditions(report: dict[str, Any]) -> str:
    return (
        f"{report['device_name']}; {report['threads']} torch threads; load average "
        f"{report['load_average_start_end']} (start, end)"
    )


def markdown(report: dict[str, Any]) -> str:
    """The rows, the ratios with their targets, the runs one by one and the scaling table."""
    lines: list[str] = []
    if report["rows"]:
        lines += _rows_markdown(report)
    if report.get("scaling"):
        lines += ["", *_scaling_markdown(report)] if lines else _scaling_markdown(report)
    return "\n".join(lines) + "\n"


def _rows_markdown(report: dict[str, Any]) -> list[str]:
    cuda = report["device"] == "cuda"
    mem_head = "peak GPU MB (max_memory_allocated)" if cuda else "peak RSS MB (process)"
    lines = [
        f"Device: {_conditions(report)}; batch size {report['batch_size']}; {report['epochs']} epochs, median of "
        f"the last {report['epochs'] - report['warmup']}.",
        "",
        f"| row | s/epoch | CPU s/epoch | images/s | {mem_head} | RSS above imports MB | val loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | | | |")
            continue
        mem = r.get("peak_cuda_mb") if cuda else r.get("peak_rss_mb")
        lines.append(
            f"| {r['name']} | {r['seconds_per_epoch']:.3f} | {r['cpu_seconds_per_epoch']:.3f} | {r['images_per_s']:.0f} | "
            f"{mem} | {r.get('peak_rss_above_imports_mb')} | {r['val_loss']} |"
        )
    if report["ratios"]:
        lines += ["", "| ratio | value | target | met |", "|---|---:|---|---|"]
        for key, value in report["ratios"].items():
            t = report["targets"].get(key)
            lines.append(f"| {key} | {value:.3f} | {t['target'] if t else ''} | {t['met'] if t else ''} |")
    runs = report.get("runs") or []
    if runs:
        names = [name for name in MAIN_ROWS if name in runs[0]]
        keys = [key for key, _, _ in TIME_RATIOS if key in runs[0]] + [k for k in ("others_cpu_share",) if k in runs[0]]
        lines += [
            "",
            f"Each row above is the fastest of {len(runs)} runs, interleaved (each row once, then again in reverse "
            "order); the runs one by one "
            "(s/epoch, then the ratios, then the largest share of the machine other processes kept busy "
            "during one of the run's rows):",
            "",
            "| run | " + " | ".join([MAIN_ROWS[n] for n in names] + keys) + " |",
            "|---:|" + "---:|" * (len(names) + len(keys)),
        ]
        for i, run in enumerate(runs, start=1):
            lines.append(f"| {i} | " + " | ".join(f"{run[k]:.3f}" for k in names + keys) + " |")
    return lines


def _scaling_markdown(report: dict[str, Any]) -> list[str]:
    """One line per point: the floor's, bare Lightning's and the project's seconds per 55,000
    training images, and the ratios to the floor."""
    points: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for r in report["scaling"]:
        points.setdefault((r["batch_size"], r["point"]), {})[r["kind"]] = r
    images = report["scaling"][0]["limit_batches"] * report["scaling"][0]["batch_size"]
    lines = [
        f"Scaling on {_conditions(report)}: training steps only, no validation; each point one warm-up and one "
        f"measured pass over ~{images} images, the fastest of {report.get('repeats', 1)} interleaved runs; "
        "s/epoch = 55,000 / images per second.",
        "",
        "| batch | model | floor s/epoch | lightning s/epoch | project s/epoch | lightning/floor | project/floor | "
        "project/floor, CPU s | project ms/step over the floor's |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (bs, label), kinds in points.items():
        if any("error" in kinds.get(k, {"error": 1}) for k in ("floor", "lightning", "project")):
            lines.append(f"| {bs} | {label} | failed | | | | | | |")
            continue
        f, l, p = (55_000 / kinds[k]["images_per_s"] for k in ("floor", "lightning", "project"))
        cpu = kinds["project"]["cpu_seconds_per_epoch"] / kinds["floor"]["cpu_seconds_per_epoch"]
        extra_ms = (p - f) / (55_000 / bs) * 1000
        lines.append(f"| {bs} | {label} | {f:.2f} | {l:.2f} | {p:.2f} | {l / f:.2f} | {p / f:.2f} | {cpu:.2f} | {extra_ms:.2f} |")
    return lines
