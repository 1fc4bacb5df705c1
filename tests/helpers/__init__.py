"""What the tests share: running the CLI on real MNIST (runs.py, with the YAML files of
tests/conf/), recording and fault-injecting callbacks (recorders.py, faults.py), comparing runs
(compare.py), sweeps (sweeps.py), networks named by class path, dataset files written in their
real formats, a PostgreSQL server."""
