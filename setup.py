"""Build of the optional C row kernels (softmax_xp._backends._rows).

Everything else is declared in pyproject.toml. The kernels are written in C11 with the GNU vector
extensions and ``target_clones``, which GCC and Clang compile (both are built and tested by
``nox -s wheel``). MSVC has neither: on Windows with MSVC, and wherever no compiler is found or the
build fails, the install goes on without the extension, printing one warning line, and the NumPy fast
path uses NumPy's ufuncs instead (slower, same results). ``softmax-xp check`` and
``softmax_xp._backends._numpy.HAVE_ROWS`` tell which.
"""

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


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            _warn("MSVC is not supported: the kernels need GCC or Clang vector extensions")
            return
        for ext in self.extensions:
            # -O3: the lane loops vectorise; no -ffast-math (NaN and inf must behave).
            ext.extra_compile_args += ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-Wno-psabi"]
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # no compiler, a failed compile or link: fall back
            _warn(str(exc) or type(exc).__name__)


setup(
    ext_modules=[
        Extension(
            "softmax_xp._backends._rows",
            sources=["src/softmax_xp/_backends/_rows.c"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
