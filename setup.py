"""Build of the optional C row kernels (softmax_xp._backends._rows).

Everything else is declared in pyproject.toml. The kernels are plain C11 with the GNU vector
extensions (_rows_core.h), which GCC and Clang compile (both are built and tested by
``nox -s wheel``). On x86-64 the core is compiled three times, for the baseline (SSE2), AVX2+FMA
(x86-64-v3) and AVX-512 (x86-64-v4), each at its native vector width, and the module picks the
best level the CPU runs when it loads; elsewhere (aarch64: NEON) once, for the baseline.

MSVC has no vector extensions: on Windows with MSVC, and wherever no compiler is found or the
build fails, the install goes on without the extension, printing one warning line, and the NumPy
fast path uses NumPy's ufuncs instead (slower, same results). ``softmax-xp check`` and
``softmax_xp._backends._numpy.HAVE_ROWS`` tell which.
"""

import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_FALLBACK = (
    "WARNING: softmax-xp: the C row kernels were not built ({why}); the package works without "
    "them (NumPy ufuncs, slower). To get them, install GCC or Clang and reinstall from source."
)


def _warn(why: str) -> None:
    # One line on stderr, which `pip install -v` shows and a plain `pip install` keeps in its log.
    print(_FALLBACK.format(why=" ".join(why.split())), file=sys.stderr, flush=True)


_DIR = "src/softmax_xp/_backends/"
# -O3: the lane loops vectorise; no -ffast-math (NaN and inf must behave).
_FLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-Wno-psabi"]
# The kernel core compiled once per instruction-set level: each file at its own flags, so that
# every kernel runs at its target's native vector width; _rows.c picks one at load time.
_X86_LEVELS = {"_rows_avx2.c": ["-march=x86-64-v3"], "_rows_avx512.c": ["-march=x86-64-v4"]}


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            _warn("MSVC is not supported: the kernels need GCC or Clang vector extensions")
            return
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            levels = _X86_LEVELS if _is_x86_64() else {}
            ext.extra_compile_args = [*_FLAGS, "-pthread"]
            ext.extra_link_args = ["-pthread"]  # the thread pool (_rows_pool.c); old glibc needs it
            ext.extra_objects = list(ext.extra_objects or [])
            for name, flags in levels.items():
                ext.extra_objects += self.compiler.compile(
                    [_DIR + name],
                    output_dir=self.build_temp,
                    include_dirs=[_DIR],
                    extra_postargs=_FLAGS + flags,
                    depends=ext.depends,
                )
            super().build_extension(ext)
        except Exception as exc:  # no compiler, a failed compile or link: fall back
            _warn(str(exc) or type(exc).__name__)


setup(
    ext_modules=[
        Extension(
            "softmax_xp._backends._rows",
            sources=[_DIR + "_rows.c", _DIR + "_rows_pool.c", _DIR + "_rows_base.c"],
            depends=[_DIR + f for f in ("_rows_core.h", "_rows_kernels.h", "_rows_pool.h", *_X86_LEVELS)],
            include_dirs=[_DIR],
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
