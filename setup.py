"""The one part of the build that pyproject.toml cannot state without an experimental table: the
parser's fused lexer and LALR loop in C (`dsl/_fused.c`). `pip install` compiles it, with a C
compiler and Python's headers (Debian: gcc and python3-dev). Where it cannot be built, the install
goes on and `dsl/lalr.py` runs the same loop in Python, about 1.5 times slower to parse;
`make test` then fails `test_the_compiled_loop_is_built`, which says what is missing."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dsl._fused", sources=["dsl/_fused.c"], optional=True)])
