# shmkit -- build, test and demo entry points.
#
#   make demo     virtualenv + shmkit with benchmark extras, then the demo
#   make test     virtualenv + test deps, C tests (plain and ASan+UBSan), pytest
#   make lib      build/libshmkit.a and build/libshmkit.so only
#   make example  the plain-C example linked against libshmkit
#   make torture  the long crash-torture run
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
CBENCH   := $(sort $(wildcard benchmarks/c/*.c))

B        := build
OBJ      := $(patsubst src/%.c,$(B)/obj/%.o,$(SRC))
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SANOBJ   := $(patsubst src/%.c,$(B)/san/%.o,$(SRC))

.PHONY: all lib demo test ctest ctest-san pytest venv venv-bench example torture valgrind clean cbench install

all: lib

lib: $(B)/libshmkit.a $(B)/libshmkit.so

$(B)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -fPIC $(INCLUDES) -c $< -o $@

$(B)/san/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(INCLUDES) -c $< -o $@

$(B)/libshmkit.a: $(OBJ)
	ar rcs $@ $^

$(B)/libshmkit.so: $(OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(B)/libshmkit-san.a: $(SANOBJ)
	ar rcs $@ $^

$(B)/tests/%: tests/c/%.c tests/c/check.h $(B)/libshmkit.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(INCLUDES) $< -o $@ $(B)/libshmkit.a $(LDLIBS)

$(B)/san-tests/%: tests/c/%.c tests/c/check.h $(B)/libshmkit-san.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(INCLUDES) $< -o $@ $(B)/libshmkit-san.a $(LDLIBS)

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

$(B)/bench/%: benchmarks/c/%.c $(B)/libshmkit.a
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O2 $(INCLUDES) $< -o $@ $(B)/libshmkit.a $(LDLIBS)

cbench: $(patsubst benchmarks/c/%.c,$(B)/bench/%,$(CBENCH))
	@set -e; for b in $^; do $$b; done

$(VENV)/.stamp-test: pyproject.toml setup.py
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
	SHMKIT_WERROR=1 $(VPY) -m pip install -q --no-build-isolation --force-reinstall --no-deps .

pytest: install
	cd tests && ../$(VPY) -m pytest -q -p no:cacheprovider python torture

test: ctest ctest-san example pytest

demo: $(VENV)/.stamp-bench install
	$(VPY) examples/demo.py

# The long mode: 1,000 kills per structure, and the C tests under valgrind.
torture: install valgrind
	cd tests && SHMKIT_TORTURE=long ../$(VPY) -m pytest -q -s -p no:cacheprovider torture

valgrind: $(CTEST_BINS)
	@command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	@set -e; for t in $^; do echo "== $$t (valgrind memcheck)"; \
	  SHMKIT_TEST_SCALE=50 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	    --trace-children=yes $$t; done

clean:
	rm -rf $(B) *.egg-info python/*.egg-info
