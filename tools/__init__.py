"""The project's measuring harness: result scripts, the benchmark and the screenshots, run from
the repository root as ``python -m tools.<name>``. It imports the package, never the reverse."""
