"""``shmkit bench``: side-by-side benchmarks of shmkit against the standard
library and peer packages.  See ``harness.py`` for the model; the suites are
``suite_alloc``, ``suite_dict`` and ``suite_queue``.  ``benchmarks/bench_*.py``
in the repository are entry points onto these modules.  ``scale`` is the
scaling benchmark (``shmkit bench --scale``, ``make scale``): ops/s against
the number of processes, C and Python."""
from .harness import MODES, SUITES, run

__all__ = ["run", "SUITES", "MODES", "main"]


def main(argv=None, suites=None) -> int:
    """Entry point of the ``benchmarks/bench_*.py`` scripts: ``shmkit bench``
    restricted to ``suites``."""
    from ..cli import main as cli_main

    args = ["bench"] + list(argv or [])
    for s in suites or ():
        args += ["--suite", s]
    return cli_main(args)
