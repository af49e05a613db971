"""Build of the optional native accelerator (everything else is in pyproject.toml).

``embstore.store._halfconv`` decodes stored float16 to float32 with the CPU's
F16C instructions (see ``embstore/store/_halfconv.c``). It is optional: when no
C compiler or Python headers are present, the install goes on without it and
``embstore.store.decode`` uses its pure NumPy version (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "embstore.store._halfconv",
            ["embstore/store/_halfconv.c"],
            extra_compile_args=["-O3", "-std=c99"],
            optional=True,
        )
    ]
)
