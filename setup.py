"""Builds the C extension shmkit._shmkit from the libshmkit sources (src/)
and the binding sources (python/shmkit/_ext/).  Everything else is in
pyproject.toml.  See docs/BUILD.md for why setuptools."""
import glob
import os
import re

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def c_version():
    """The one version: SHMKIT_VERSION in include/shmkit.h."""
    with open(os.path.join(HERE, "include", "shmkit.h")) as f:
        m = re.search(r'^#define SHMKIT_VERSION "([^"]+)"', f.read(), re.M)
    return m.group(1)


def rel(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]
if os.environ.get("SHMKIT_WERROR") == "1":
    flags.append("-Werror")
# The chaos build (src/internal.h, SHK_A): for the linearizability tests only.
if os.environ.get("SHMKIT_CHAOS") == "1":
    flags.append("-DSHMKIT_CHAOS")
# Test hooks (crash points, _arm_crash_point): `make install` sets this for
# `make test`; a plain pip install or wheel has none.  Their own build
# directory, so that neither build reuses the other's objects.
options = {}
if os.environ.get("SHMKIT_TEST_HOOKS") == "1":
    flags.append("-DSHK_TEST_HOOKS")
    options = {"build": {"build_base": os.path.join("build", "py-test-hooks")}}

setup(
    version=c_version(),
    options=options,
    ext_modules=[
        Extension(
            "shmkit._shmkit",
            sources=rel("src/*.c") + rel("python/shmkit/_ext/*.c"),
            include_dirs=["include", "src", "python/shmkit/_ext"],
            depends=rel("include/**/*.h") + rel("src/*.h") + rel("python/shmkit/_ext/*.h"),
            extra_compile_args=flags,
            libraries=["pthread", "rt"],
        )
    ]
)
