"""Only the optional native extension lives here; everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("tea._otlpfast", ["tea/_otlpfast.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11", "-ffp-contract=off"])])
