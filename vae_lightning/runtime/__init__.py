"""What every run needs around the model: checkpoint checks, user errors and their exit status,
the console's filters, the process-wide numerics, the no-op profiler and reading back the
TensorBoard scalars a run wrote."""
