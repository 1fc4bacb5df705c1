"""The numbers quoted in README.md and docs/*.md agree with the result files the measuring commands wrote.

A doc ties a table or paragraph to its result files with a comment on the line before it::

    <!-- numbers: docs/results/default_run.json -->
    Measured on 2 CPU cores: the 20 epochs took 1 min 20 s, and the test loss was **36.64** ...

and every measured number in that block must be one of the file's values at the precision the
doc shows: each number with a decimal point or a percent sign, and in a table every number of
every cell after the first (the first names the row). JSON result files give their values; a
Markdown result file (a report's table) gives every number it contains. Some tables are checked
cell by cell against their result file, found by their header, wherever they are.

The measurements themselves are made by the harness in ``tools/``, which takes minutes to
hours; this test only reads their files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TAG = re.compile(r"<!--\s*numbers:\s*(.+?)\s*-->")
# a number standing alone: not part of a word, a version (2.9.1), a path or an exponent (1e-3);
# optionally followed by % or by x (a ratio, "0.95x")
NUMBER = re.compile(r"(?<![\w.\-/^])(-?\d+(?:,\d{3})*(?:\.\d+)?)(%|x\b)?(?![\w]|\.\d)")
CODE_OR_LINK = re.compile(r"`[^`]*`|\]\([^)]*\)|<!--.*?-->")


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(doc: Path) -> Iterator[tuple[list[Path], int, list[str]]]:
    """(result files, first line number, lines) of each block the doc tags with ``<!-- numbers: ... -->``:
    the lines after the comment, up to the next blank line."""
    lines = doc.read_text().splitlines()
    for i, line in enumerate(lines):
        match = TAG.search(line)
        if not match:
            continue
        files = [ROOT / name for name in match.group(1).split()]
        start = i + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        end = start
        while end < len(lines) and lines[end].strip() and not TAG.search(lines[end]):
            end += 1
        yield files, start + 1, lines[start:end]


def tokens(line: str, in_table: bool) -> Iterator[str]:
    """The measured numbers of one line, as written (``36.64``, ``23%``, ``-96.55``, ``0.95x``)."""
    text = CODE_OR_LINK.sub(" ", line)
    if in_table:
        cells = text.strip().strip("|").split("|")
        text = "|".join(cells[1:])
    for match in NUMBER.finditer(text):
        number, suffix = match.group(1), match.group(2) or ""
        if in_table or "." in number or suffix == "%":
            yield number + suffix


def json_values(value: object) -> Iterator[float]:
    """Every number in a JSON document: values, numeric strings and numeric keys."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, str):
        try:
            yield float(value)
        except ValueError:
            return
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from json_values(key)
            yield from json_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_values(item)


def result_values(path: Path) -> list[float]:
    """The numbers a result file holds."""
    if path.suffix == ".json":
        return list(json_values(json.loads(path.read_text())))
    return [float(m.group(1).replace(",", "")) for m in NUMBER.finditer(path.read_text())]


def matches(token: str, values: list[float]) -> bool:
    """Whether a number as the doc writes it is one of ``values`` rounded to the doc's precision
    (a percentage also as a fraction: 23% is 0.23)."""
    percent = token.endswith("%")
    number = token.rstrip("%x").replace(",", "")
    decimals = len(number.split(".")[1]) if "." in number else 0
    target = float(number)
    tolerance = 0.5 * 10.0**-decimals + 1e-9
    candidates = [v for v in values if math.isfinite(v)]
    if percent:
        candidates += [100 * v for v in candidates]
    return any(abs(v - target) <= tolerance for v in candidates)


def tagged_blocks() -> list[tuple[Path, list[Path], int, list[str]]]:
    return [(doc, files, line, lines) for doc in DOCS for files, line, lines in blocks(doc)]


TAGGED = [pytest.param(*block, id=f"{relative(block[0])}:{block[2]}") for block in tagged_blocks()]


def test_the_docs_tag_their_measured_numbers_with_result_files():
    tagged = {relative(f) for _, files, _, _ in tagged_blocks() for f in files}
    for required in ("docs/results/default_run.json", "docs/results/learning_rate.json", "docs/results/bernoulli.json",
                     "docs/diagnostics/results.json"):
        assert required in tagged, f"no doc quotes {required} under a <!-- numbers: {required} --> comment"


@pytest.mark.parametrize("doc, files, line, lines", TAGGED)
def test_every_number_of_a_tagged_block_is_in_its_result_files(doc, files, line, lines):
    missing = [f for f in files if not f.is_file()]
    assert not missing, f"{relative(doc)}:{line} names result files that do not exist: {[relative(f) for f in missing]}"
    values = [v for f in files for v in result_values(f)]
    names = ", ".join(relative(f) for f in files)
    wrong = []
    for offset, text in enumerate(lines):
        in_table = text.lstrip().startswith("|")
        if in_table and (offset == 0 or set(text.replace("|", "").strip()) <= set("-: ")):
            continue  # a table's header and separator
        wrong += [f"{token} (line {line + offset})" for token in tokens(text, in_table) if not matches(token, values)]
    assert not wrong, f"{relative(doc)}: numbers not in {names}: {', '.join(wrong)}"


@pytest.mark.parametrize("doc, files, line, lines", TAGGED)
def test_a_doc_that_quotes_a_result_names_the_command_that_wrote_it(doc, files, line, lines):
    text = doc.read_text()
    for path in files:
        if path.suffix != ".json" or not path.is_file():
            continue
        result = json.loads(path.read_text())
        command = result.get("script") or result.get("command")
        assert command, f"{relative(path)} does not name the command that wrote it (a 'script' or 'command' field)"
        words = command.split()
        # the program: a script's file, or python -m and its module (python -m tools.benchmark)
        program = " ".join(words[: words.index("-m") + 2]) if "-m" in words else next((w for w in words if w.endswith(".py")), command)
        assert program in text, f"{relative(doc)} quotes {relative(path)} but does not name its command {command!r}"


def tables(text: str) -> Iterator[list[list[str]]]:
    """Each Markdown table of ``text`` as rows of stripped cells, header first, separator dropped."""
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            yield rows
            rows = []


def first_number(cell: str) -> float:
    match = NUMBER.search(cell.replace("**", ""))
    assert match, f"no number in the table cell {cell!r}"
    return float(match.group(1).replace(",", ""))


def test_learning_rate_tables_match_their_runs():
    result = json.loads((ROOT / "docs/results/learning_rate.json").read_text())
    measured = {row["lr"]: row["val_loss"] for row in result["rows"]}
    found = 0
    for doc in DOCS:
        for rows in tables(doc.read_text()):
            header = [c.lower() for c in rows[0]]
            if header[:1] != ["lr"] or not all(c.startswith("epoch ") for c in header[1:]):
                continue
            found += 1
            assert {re.sub(r"[*()]|default", "", r[0]).strip() for r in rows[1:]} == set(measured), (
                f"{relative(doc)}: the learning-rate table's rates differ from docs/results/learning_rate.json's {sorted(measured)}"
            )
            for row in rows[1:]:
                lr = re.sub(r"[*()]|default", "", row[0]).strip()
                for column, cell in zip(header[1:], row[1:]):
                    epoch = column.split()[1]
                    assert f"{first_number(cell):.2f}" == f"{measured[lr][epoch]:.2f}", (
                        f"{relative(doc)}: lr {lr}, {column}: {cell} where docs/results/learning_rate.json has {measured[lr][epoch]:.2f}"
                    )
    assert found, "no doc shows the learning-rate table (header | lr | epoch 1 | ...)"


def report_rows(path: Path) -> list[str]:
    """The table rows of a Markdown result file, as lines."""
    return [line.strip() for line in path.read_text().splitlines() if line.lstrip().startswith("|")]


#: Pages that show a result file's tables as written (page, result file): the diagnostics table,
#: the sweeps' reports.
COPIED_TABLES = [
    ("docs/diagnostics.md", ROOT / "docs/diagnostics/table.md"),
    *(("docs/experiments.md", report) for report in sorted((ROOT / "docs/experiments").glob("*.md"))),
]


@pytest.mark.parametrize("page, report", COPIED_TABLES, ids=lambda p: p if isinstance(p, str) else relative(p))
def test_a_page_shows_every_table_row_of_the_result_file_it_copies(page, report):
    missing = [row for row in report_rows(report) if row not in (ROOT / page).read_text()]
    assert not missing, f"{page} lacks these rows of {relative(report)}: {missing}"


def test_the_checker_finds_numbers_as_written():
    assert list(tokens("took 1 min 20 s, loss **36.64** (RL 31.90), 23% of steps, 0.95x, v2.9.1, 1e-3", False)) == [
        "36.64", "31.90", "23%", "0.95x",
    ]
    assert list(tokens("| 1e-3 (default) | 51.98 | 3,280 passes | -86.76 |", True)) == ["51.98", "3,280", "-86.76"]
    assert matches("36.64", [36.6412]) and not matches("36.64", [36.65])
    assert matches("23%", [0.2301]) and matches("0.0002%", [2.1e-6]) and matches("3,280", [3280])
