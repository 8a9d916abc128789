"""``shmkit bench``: side-by-side benchmarks of shmkit against the standard
library and peer packages.  See ``harness.py`` for the model; the suites are
``suite_alloc``, ``suite_dict`` and ``suite_queue``.  ``benchmarks/bench_*.py``
in the repository call ``harness.main``.  ``scale`` is the
scaling benchmark (``shmkit bench --scale``, ``make scale``): ops/s against
the number of processes, C and Python."""
from .harness import MODES, SUITES, main, run

__all__ = ["run", "main", "SUITES", "MODES"]
