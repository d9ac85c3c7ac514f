"""Build of the optional C row kernels (softmax_xp._backends._rows).

Everything else is declared in pyproject.toml. The extension is optional: where no C compiler is
found the build goes on without it and the NumPy fast path uses NumPy's ufuncs instead (slower,
same results). ``softmax-xp check`` and ``softmax_xp._backends._numpy.HAVE_ROWS`` tell which.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        for ext in self.extensions:
            if self.compiler.compiler_type == "msvc":
                ext.extra_compile_args += ["/O2", "/fp:precise"]
            else:
                # -O3: the lane loops vectorise; no -ffast-math (NaN and inf must behave).
                ext.extra_compile_args += [
                    "-O3",
                    "-std=gnu11",
                    "-fno-strict-aliasing",
                    "-Wno-psabi",
                ]
        super().build_extensions()


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
