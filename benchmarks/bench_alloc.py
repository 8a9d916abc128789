#!/usr/bin/env python3
"""The alloc benchmark suite: `python benchmarks/bench_alloc.py [--quick] [--out DIR]`.

The cases live in the package (shmkit/bench/suite_alloc.py) so that
`shmkit bench` works from an installed shmkit; this script is
`shmkit bench --suite alloc` for a checkout.  Results: DIR/results.json and
PNG charts (default DIR: bench-results/).
"""
import sys

from shmkit.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], suites=["alloc"]))
