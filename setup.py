"""Build of the C core and its Cython binding (metadata is in pyproject.toml)."""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

if sys.platform == "win32":
    sys.exit(
        "shmring needs POSIX shared memory and futex/wait-on-address; Windows is not "
        "supported. Use Linux or macOS (or WSL)."
    )

C_SOURCES = [
    "csrc/errors.c",
    "csrc/hooks.c",
    "csrc/kinds.c",
    "csrc/layout.c",
    "csrc/liveness.c",
    "csrc/members.c",
    "csrc/participants.c",
    "csrc/queue.c",
    "csrc/queue_recovery.c",
    "csrc/recovery.c",
    "csrc/segment.c",
    "csrc/slots.c",
    "csrc/topic.c",
    "csrc/topic_recovery.c",
    "csrc/wait.c",
]

extensions = [
    Extension(
        "shmring._core",
        sources=["src/shmring/_core.pyx"] + C_SOURCES,
        include_dirs=["csrc"],
        depends=["csrc/shmring.h", "csrc/layout.h", "csrc/internal.h", "csrc/slots.h", "csrc/kind.h", "csrc/queue.h", "csrc/topic.h", "src/shmring/_cshmring.pxd"],
        # hidden: only PyInit__core is exported (PyMODINIT_FUNC), so calls into the
        # C core bind directly (no PLT) and queue.c can inline its own API functions
        extra_compile_args=["-O3", "-std=c11", "-fvisibility=hidden"],
        libraries=["rt"] if sys.platform.startswith("linux") else [],
    )
]


class build_py_with_ceiling(build_py):
    """Ship bench/c_ceiling.c (and the pin.h it includes) inside the package:
    `python -m shmring.bench` builds it."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # `pip install -e .` imports src/: bench/records.py finds bench/c_ceiling.c in the checkout
        for name in ("c_ceiling.c", "pin.h"):
            target = os.path.join(self.build_lib, "shmring", "bench", name)
            self.mkpath(os.path.dirname(target))
            self.copy_file(os.path.join("bench", name), target)


setup(
    cmdclass={"build_py": build_py_with_ceiling},
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "auto_pickle": False,
            "embedsignature": True,
            # The binding's own state (operations in flight, exports of the mapping, the
            # set-once codec) is guarded by the GIL: on free-threaded Python the
            # interpreter enables the GIL for it (docs/wheels.md)
            "freethreading_compatible": False,
        },
    ),
)
