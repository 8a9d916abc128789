#!/usr/bin/env python3
"""The queue benchmark suite: `python benchmarks/bench_queue.py [--quick] [--out DIR]`.

The cases live in the package (shmkit/bench/suite_queue.py) so that
`shmkit bench` works from an installed shmkit; this script runs
that suite from a checkout, with the options of `shmkit bench`.  Results:
DIR/results.json and PNG charts (default DIR: bench-results/).
"""
import sys

from shmkit.bench import harness

if __name__ == "__main__":
    sys.exit(harness.main(sys.argv[1:], suites=["queue"]))
