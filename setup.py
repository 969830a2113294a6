"""Only the optional native extension lives here; everything else is in pyproject.toml.

TEA_OTLPFAST_SANITIZE=1 builds it for the fuzzer instead (fuzz/build.sh: clang, AddressSanitizer,
UndefinedBehaviorSanitizer and libFuzzer's coverage counters, into a directory of its own); without it the
build is the ordinary optimised one."""
import os

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-ffp-contract=off"]  # (no fused multiply-add: the cost of a span is the float Python computes)
LINK: list[str] = []
if os.environ.get("TEA_OTLPFAST_SANITIZE") == "1":
    # the sanitizer runtimes come from the process (fuzz/run.py preloads atheris' asan_with_fuzzer.so)
    # coverage as libFuzzer reads it, without fuzzer-no-link's comparison tracing (3x slower here; the
    # dictionary and libFuzzer's memcmp hooks find the keys); -fno-wrapv: Python's CFLAGS have -fwrapv, which
    # turns off UBSan's overflow checks
    FLAGS = ["-O1", "-g", "-std=c11", "-ffp-contract=off", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fsanitize-coverage=inline-8bit-counters,pc-table", "-fno-sanitize-recover=all", "-DTEA_FUZZ_ALLOC",
             "-fno-wrapv"]
    LINK = ["-fsanitize=address,undefined"]

setup(ext_modules=[Extension("tea._otlpfast", ["tea/_otlpfast.c"], optional=True,
                             extra_compile_args=FLAGS, extra_link_args=LINK)])
