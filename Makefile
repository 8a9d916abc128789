# shmkit -- build, test and demo entry points.
#
#   make demo         virtualenv + shmkit with benchmark extras, then the demo
#   make test         virtualenv + test deps, lint, cycles, C tests (plain, ASan+UBSan, chaos), pytest
#                     (python, compat, torture, lincheck; Redis/Valkey included)
#   make lint         format-check, ruff check, mypy on the package, stubtest of _shmkit.pyi
#   make lib          build/libshmkit.a and build/libshmkit.so only
#   make install      build the extension into .venv (-Werror, with the test hooks)
#   make example      the plain-C example linked against libshmkit
#   make ctest        the C tests; ctest-san, ctest-chaos, ctest-tsan: under ASan+UBSan,
#                     the chaos build, ThreadSanitizer
#   make fuzz         the libFuzzer targets (fuzz-seeds regenerates their seeds)
#   make torture      the long crash-torture and hostile-segment runs (+ valgrind)
#   make lincheck     the long linearizability run, plain and chaos builds
#   make cbench       the C microbenchmarks
#   make scale        ops/s against 1..32 processes, C and Python (SCALE_ARGS=...);
#                     scale-table prints its markdown table
#   make latency      queue round-trip percentiles against the peers (LATENCY_ARGS=...)
#   make wheel        the sdist and the wheel in build/dist (python -m build)
#   make wheel-smoke  the wheel installed into a fresh virtualenv, smoke-tested
#                     from outside the source tree
#   make cycles       files that depend on each other, C (nm) and Python (imports)
#   make format-check the C sources against .clang-format (changes nothing); make format
#                     rewrites them
#   make clean        remove build/
#   make help         this list
#
# Warnings are errors everywhere (-Wall -Wextra -Werror).

PYTHON   ?= python3
VENV     ?= .venv
VPY      := $(VENV)/bin/python
CC       ?= cc
CSTD     := -std=c11
WARN     := -Wall -Wextra -Werror
CFLAGS   ?= -O2 -g
INCLUDES := -Iinclude -Isrc
LDLIBS   := -lpthread -lrt

SRC      := $(sort $(wildcard src/*.c))
HDR      := $(wildcard include/*.h include/shmkit/*.h src/*.h)
CTESTS   := $(sort $(wildcard tests/c/test_*.c))
# bench_scale is `make scale`'s (minutes with 32 processes), not cbench's.
CBENCH   := $(filter-out benchmarks/c/bench_scale.c,$(sort $(wildcard benchmarks/c/*.c)))

B        := build
OBJ      := $(patsubst src/%.c,$(B)/obj/%.o,$(SRC))
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SANOBJ   := $(patsubst src/%.c,$(B)/san/%.o,$(SRC))
# Test hooks (crash points: src/crash.c) are compiled into the test builds
# only (C tests in every flavour, fuzz targets, the extension `make install`
# builds for `make test`), never into libshmkit.a/.so, the example or the
# benchmarks.  The plain C tests link libshmkit-test.a, built apart.
HOOKS    := -DSHK_TEST_HOOKS
TOBJ     := $(patsubst src/%.c,$(B)/tobj/%.o,$(SRC))

.PHONY: all help lib demo test lint ctest ctest-san pytest venv venv-bench example torture valgrind clean cbench install lincheck lincheck-chaos

all: lib

help:
	@sed -n '3,/^# Warnings/{/^# Warnings/d;s/^#   //p;s/^#                     /                  /p}' Makefile

lib: $(B)/libshmkit.a $(B)/libshmkit.so

$(B)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -fPIC $(INCLUDES) -c $< -o $@

$(B)/tobj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(HOOKS) $(INCLUDES) -c $< -o $@

$(B)/san/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(HOOKS) $(INCLUDES) -c $< -o $@

$(B)/libshmkit.a: $(OBJ)
	ar rcs $@ $^

$(B)/libshmkit.so: $(OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(B)/libshmkit-test.a: $(TOBJ)
	ar rcs $@ $^

$(B)/libshmkit-san.a: $(SANOBJ)
	ar rcs $@ $^

$(B)/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(B)/libshmkit-test.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(HOOKS) $(INCLUDES) $< -o $@ $(B)/libshmkit-test.a $(LDLIBS)

$(B)/san-tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(B)/libshmkit-san.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(HOOKS) $(INCLUDES) $< -o $@ $(B)/libshmkit-san.a $(LDLIBS)

CTEST_BINS := $(patsubst tests/c/%.c,$(B)/tests/%,$(CTESTS))
SAN_BINS   := $(patsubst tests/c/%.c,$(B)/san-tests/%,$(CTESTS))

ctest: $(CTEST_BINS)
	@set -e; for t in $^; do echo "== $$t"; $$t; done

ctest-san: $(SAN_BINS)
	@set -e; for t in $^; do echo "== $$t (ASan+UBSan)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

$(B)/example_c: examples/c_example.c $(B)/libshmkit.a
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -Iinclude $< -o $@ $(B)/libshmkit.a $(LDLIBS)

example: $(B)/example_c
	$(B)/example_c

$(B)/bench/%: benchmarks/c/%.c benchmarks/c/bench_common.h $(B)/libshmkit.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O2 $(INCLUDES) $< -o $@ $(B)/libshmkit.a $(LDLIBS)

cbench: $(patsubst benchmarks/c/%.c,$(B)/bench/%,$(CBENCH))
	@set -e; for b in $^; do $$b; done

$(VENV)/.stamp-test: pyproject.toml setup.py requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-test.txt
	@touch $@

# One requirement at a time, tolerating failures: a peer that does not
# install is skipped by the benchmark with the reason (install_peers.py).
$(VENV)/.stamp-bench: $(VENV)/.stamp-test requirements-bench.txt
	$(VPY) benchmarks/install_peers.py
	@touch $@

venv: $(VENV)/.stamp-test

# Installs the package (the C extension is compiled with -Werror).
install: venv
	SHMKIT_TEST_HOOKS=1 SHMKIT_WERROR=1 $(VPY) -m pip install -q --no-build-isolation --force-reinstall --no-deps .

pytest: install $(B)/bench/bench_scale
	@rm -f $(B)/lincheck-summary.txt
	cd tests && SHMKIT_TEST_HOOKS=1 ../$(VPY) -m pytest -q -p no:cacheprovider python compat torture lincheck

test: lint cycles ctest ctest-san ctest-chaos example pytest

# Seconds: clang-format on the C sources (format-check), ruff on the Python
# sources, mypy on the package (settings in
# pyproject.toml), and the C extension's stubs checked against the built
# extension (so after `install`).
lint: install format-check
	$(VENV)/bin/ruff check python benchmarks tests examples
	$(VPY) -m mypy
	MYPYPATH=python $(VPY) -m mypy.stubtest shmkit._shmkit \
	  --allowlist tests/stubtest-allowlist.txt --ignore-unused-allowlist

demo: $(VENV)/.stamp-bench install
	$(VPY) examples/demo.py

# The long mode: 1,000 kills per structure, 12 corruptions of each kind per
# region of each layout (tests/python/test_hostile.py, ~3 min), and the C
# tests under valgrind.
torture: install valgrind
	cd tests && SHMKIT_TEST_HOOKS=1 SHMKIT_TORTURE=long ../$(VPY) -m pytest -q -s -p no:cacheprovider torture
	cd tests && SHMKIT_TORTURE=long ../$(VPY) -m pytest -q -p no:cacheprovider python/test_hostile.py

# Memory errors only: leaks are LeakSanitizer's job (ctest-san).  valgrind's
# leak check would run in every forked test child as it ends and read all of
# its mappings word by word, faulting on each word of a segment reservation
# beyond the file's end: a child of a 64 GiB reservation never ended.
valgrind: $(CTEST_BINS)
	@command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	@set -e; for t in $^; do echo "== $$t (valgrind memcheck)"; \
	  SHMKIT_TEST_SCALE=50 valgrind -q --error-exitcode=1 --leak-check=no \
	    --trace-children=yes $$t; done

clean:
	rm -rf $(B) *.egg-info python/*.egg-info

# ---------------------------------------------------------------------------
# ThreadSanitizer: every C test, including the multi-threaded
# stress of tests/c/test_stress_threads.c, built with -fsanitize=thread in
# its own build directory.  Not part of `make test` (TSan slows the tests
# 5-15x); CI runs it as a separate step.  About 10-20 s on 2 cores.
TSAN      := -fsanitize=thread -fno-omit-frame-pointer
TSANOBJ   := $(patsubst src/%.c,$(B)/tsan/%.o,$(SRC))
TSAN_BINS := $(patsubst tests/c/%.c,$(B)/tsan-tests/%,$(CTESTS))

$(B)/tsan/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(TSAN) $(HOOKS) $(INCLUDES) -c $< -o $@

$(B)/libshmkit-tsan.a: $(TSANOBJ)
	ar rcs $@ $^

$(B)/tsan-tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(B)/libshmkit-tsan.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(TSAN) $(HOOKS) $(INCLUDES) $< -o $@ $(B)/libshmkit-tsan.a $(LDLIBS)

.PHONY: ctest-tsan
ctest-tsan: $(TSAN_BINS)
	@set -e; for t in $^; do echo "== $$t (TSan)"; \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$(CURDIR)/tests/c/tsan.supp $$t; done

# ---------------------------------------------------------------------------
# libFuzzer: each tests/fuzz/fuzz_<t>.c is built with clang
# -fsanitize=fuzzer,address,undefined against the library sources and run
# for FUZZ_SECONDS from its committed seed corpus tests/fuzz/corpus/<t>/
# (new inputs go to build/fuzz/corpus-<t>/, crashes to build/fuzz/).
# `make fuzz` = 5 targets x 20 s plus ~30 s of builds.  `make fuzz-seeds`
# regenerates the seeds after a layout change (commit them).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
# A fixed seed makes a CI run explore the same inputs every time (and a
# longer local run a superset of them), so CI is not flaky; FUZZ_SEED=0
# picks a random seed for exploratory runs.
FUZZ_SEED    ?= 1
FUZZ_FLAGS   := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1
FUZZ_SRCS    := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRCS))

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_FLAGS) $(HOOKS) $(INCLUDES) $< $(SRC) -o $@ $(LDLIBS)

.PHONY: fuzz fuzz-build fuzz-seeds
fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs $(FUZZ_CC) (apt-get install clang)"; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@set -e; for f in $(FUZZ_BINS); do t=$${f##*/fuzz_}; \
	  mkdir -p $(B)/fuzz/corpus-$$t; \
	  echo "== $$f: $(FUZZ_SECONDS) s from tests/fuzz/corpus/$$t"; \
	  if ! ASAN_OPTIONS=detect_leaks=1 $$f -max_total_time=$(FUZZ_SECONDS) -seed=$(FUZZ_SEED) \
	      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(B)/fuzz/$$t- \
	      $(B)/fuzz/corpus-$$t tests/fuzz/corpus/$$t > $(B)/fuzz/$$t.log 2>&1; then \
	    tail -n 60 $(B)/fuzz/$$t.log; rm -f /dev/shm/shmkit-fuzz-$$t-*; \
	    echo "FUZZ FAILURE in $$t (log: $(B)/fuzz/$$t.log)"; exit 1; fi; \
	  grep -E "^stat::number_of_executed_units|^Done" $(B)/fuzz/$$t.log || true; \
	done

$(B)/gen_seeds: tests/fuzz/gen_seeds.c $(B)/libshmkit.a
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(INCLUDES) $< -o $@ $(B)/libshmkit.a $(LDLIBS)

fuzz-seeds: $(B)/gen_seeds
	@mkdir -p tests/fuzz/corpus
	$(B)/gen_seeds tests/fuzz/corpus

# ---------------------------------------------------------------------------
# The chaos build: every shared-memory atomic access may yield or spin
# (SHK_A in src/internal.h), so the C tests, which fork more processes than
# cores, preempt operations between any two atomic steps.  Part of
# `make test`; SHMKIT_CHAOS_SEED picks the run (default: from the clock,
# printed so a failure can be replayed).
CHAOSOBJ   := $(patsubst src/%.c,$(B)/chaos/%.o,$(SRC))
CHAOS_BINS := $(patsubst tests/c/%.c,$(B)/chaos-tests/%,$(CTESTS))

$(B)/chaos/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -DSHMKIT_CHAOS $(HOOKS) $(INCLUDES) -c $< -o $@

$(B)/libshmkit-chaos.a: $(CHAOSOBJ)
	ar rcs $@ $^

$(B)/chaos-tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(B)/libshmkit-chaos.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(HOOKS) $(INCLUDES) $< -o $@ $(B)/libshmkit-chaos.a $(LDLIBS)

.PHONY: ctest-chaos
ctest-chaos: $(CHAOS_BINS)
	@seed=$${SHMKIT_CHAOS_SEED:-$$(date +%s%N)}; echo "chaos seed $$seed"; \
	set -e; for t in $^; do echo "== $$t (chaos)"; SHMKIT_CHAOS_SEED=$$seed $$t; done

# ---------------------------------------------------------------------------
# Linearizability (tests/lincheck/): 16+ processes run random operations on
# every structure; each history is checked against a sequential model.  A
# short pass is part of `make pytest`; `make lincheck` is the long one
# (SHMKIT_LINCHECK=long) on the plain build and then on a chaos build (every
# shared-memory atomic access may yield or spin: SHMKIT_CHAOS=1, seeded by
# SHMKIT_CHAOS_SEED) installed into $(B)/chaos-site, not .venv.  The chaos
# copy is built from a copy of the sources in $(B)/chaos-src, so neither
# build reuses the other's objects.  Summary: $(B)/lincheck-summary.txt.
CHAOS_SITE := $(B)/chaos-site
LC_PYTEST  := ../$(VPY) -m pytest -q -s -p no:cacheprovider

$(CHAOS_SITE)/.stamp: $(VENV)/.stamp-test $(SRC) $(HDR) setup.py pyproject.toml \
		$(wildcard python/shmkit/*.py python/shmkit/_ext/*.c python/shmkit/_ext/*.h)
	rm -rf $(B)/chaos-src $(CHAOS_SITE)
	mkdir -p $(B)/chaos-src
	cp -r src include python setup.py pyproject.toml README.md $(B)/chaos-src/
	cd $(B)/chaos-src && SHMKIT_CHAOS=1 SHMKIT_WERROR=1 $(CURDIR)/$(VPY) -m pip install -q \
	  --no-deps --no-build-isolation --target $(CURDIR)/$(CHAOS_SITE) .
	@touch $@

lincheck: install $(CHAOS_SITE)/.stamp
	@rm -f $(B)/lincheck-summary.txt
	cd tests && $(LC_PYTEST) lincheck/test_lincheck_checker.py
	cd tests && SHMKIT_LINCHECK=long $(LC_PYTEST) lincheck/test_lincheck_structures.py
	cd tests && PYTHONPATH=$(CURDIR)/$(CHAOS_SITE) SHMKIT_LINCHECK=long \
	  $(LC_PYTEST) lincheck/test_lincheck_structures.py
	@cat $(B)/lincheck-summary.txt

# The short pass on the chaos build only (about a minute plus the build).
lincheck-chaos: $(CHAOS_SITE)/.stamp
	cd tests && PYTHONPATH=$(CURDIR)/$(CHAOS_SITE) $(LC_PYTEST) lincheck/test_lincheck_structures.py

# ---------------------------------------------------------------------------
# The scaling benchmark: every workload (C: build/bench/bench_scale; Python:
# shmkit.bench.scale, with the peers that are installed) for N in
# 1,2,4,8,16,32 processes, pinned one per core when N <= cores, median of 3.
# Writes bench-results/scale.json, scale-c.json and scale.png; `make
# scale-table` prints the markdown table of docs/BENCHMARKS.md.  Limit it
# with SHMKIT_SCALE_PROCS=1,2,4 (or SCALE_ARGS="--procs 1,2 --seconds 0.3").
# Python: the venv's when there is one (make install; make demo adds the
# peers), else $(PYTHON) with shmkit on its path, e.g. from a plain checkout:
#   python3 -m pip install --no-index --no-deps --no-build-isolation --target /tmp/site .
#   PYTHONPATH=/tmp/site make scale
SCALE_PY   ?= $(if $(wildcard $(VPY)),$(VPY),$(PYTHON))
SCALE_ARGS ?=

.PHONY: scale scale-table
scale: $(B)/bench/bench_scale
	@$(SCALE_PY) -c "import shmkit" 2>/dev/null || { echo "make scale: $(SCALE_PY) cannot import shmkit: run 'make install', or install it with pip --target DIR and set PYTHONPATH=DIR"; exit 1; }
	$(SCALE_PY) -m shmkit.bench.scale --c-binary $(B)/bench/bench_scale --out bench-results $(SCALE_ARGS)

scale-table:
	@$(SCALE_PY) -m shmkit.bench.scale --table bench-results/scale.json

# Queue round-trip latency against the peers (LATENCY_ARGS=--trips N ...):
# bench-results/latency.json, latency.png and the markdown table.
LATENCY_ARGS ?=
.PHONY: latency
latency: $(VENV)/.stamp-bench install
	$(VPY) -m shmkit.bench.latency --out bench-results $(LATENCY_ARGS)

# ---------------------------------------------------------------------------
# Packaging: `python -m build` makes the sdist and then the wheel from that
# sdist (so a file missing from MANIFEST.in fails the build).  No build
# isolation: .venv already has the build requirements (setuptools, wheel),
# which saves fetching them on every run.  wheel-smoke installs only the
# wheel into a fresh virtualenv and runs tools/wheel_smoke.py from a
# directory outside the source tree.  About a minute, most of it compiling.
DIST       := $(B)/dist
SMOKE_VENV := $(B)/wheel-venv

.PHONY: wheel wheel-smoke
wheel: venv
	rm -rf $(DIST)
	$(VPY) -m build --no-isolation --outdir $(DIST) .

wheel-smoke: wheel
	rm -rf $(SMOKE_VENV) $(B)/wheel-run
	$(PYTHON) -m venv $(SMOKE_VENV)
	$(SMOKE_VENV)/bin/python -m pip install -q --no-index --no-deps $(DIST)/*.whl
	mkdir -p $(B)/wheel-run
	cd $(B)/wheel-run && $(CURDIR)/$(SMOKE_VENV)/bin/python -I $(CURDIR)/tools/wheel_smoke.py

# ---------------------------------------------------------------------------
# Dependency cycles between files: C from the defined and undefined symbols
# of each object file (nm), Python from the imports of python/shmkit (ast).
# Fails, listing each cycle with the symbols or imports of its edges.
.PHONY: cycles
EXTOBJ := $(patsubst python/shmkit/_ext/%.c,$(B)/ext-obj/%.o,$(sort $(wildcard python/shmkit/_ext/*.c)))

cycles: $(OBJ) $(EXTOBJ)
	$(PYTHON) tools/check_cycles.py --c-objects $(OBJ) $(EXTOBJ) --python python/shmkit

# The extension's objects on their own, for `make cycles` (the same flags
# as setup.py; nothing links them).
$(B)/ext-obj/%.o: python/shmkit/_ext/%.c $(HDR) $(wildcard python/shmkit/_ext/*.h)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -fPIC $(INCLUDES) -Ipython/shmkit/_ext \
	  $$($(PYTHON) -c 'import sysconfig; print("-I" + sysconfig.get_paths()["include"])') -c $< -o $@

# ---------------------------------------------------------------------------
# C formatting: clang-format (pinned in requirements-test.txt, so every
# machine formats alike) against .clang-format.  format-check changes
# nothing and fails listing the files that differ; format rewrites them.
CLANG_FORMAT := $(VENV)/bin/clang-format
FORMAT_SRCS   = $(sort $(wildcard include/*.h include/shmkit/*.h src/*.c src/*.h \
                  python/shmkit/_ext/*.c python/shmkit/_ext/*.h))

.PHONY: format-check format
format-check: venv
	@bad=$$(for f in $(FORMAT_SRCS); do $(CLANG_FORMAT) $$f | cmp -s - $$f || echo $$f; done); \
	if [ -n "$$bad" ]; then \
	  echo "not clang-formatted (make format rewrites them; $(CLANG_FORMAT) --dry-run FILE shows where):"; \
	  echo "$$bad" | sed 's/^/  /'; exit 1; fi

format: venv
	$(CLANG_FORMAT) -i $(FORMAT_SRCS)
