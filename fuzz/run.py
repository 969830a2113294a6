"""Fuzz tea._otlpfast with AddressSanitizer and UndefinedBehaviorSanitizer, guided by the C code's coverage.

    python -m fuzz.run [--target map_traces|find_any|find_exponent|format_double|group_lines] [--processes N] [libFuzzer flags ...]
                       [corpus dirs ...]

atheris (PyPI) runs libFuzzer in this Python process; the extension is built a second time for it
(build/fuzz: clang, ASan, UBSan and libFuzzer's coverage counters, setup.py's TEA_OTLPFAST_SANITIZE=1) and
loaded as ``tea._otlpfast`` in place of the ordinary build, so the receiver's own code (tea.receive.otlp)
drives it. The process re-executes itself once with atheris' ASan+UBSan+libFuzzer runtime preloaded (the
fuzz build takes the extension's buffers from libc's malloc, which ASan watches: TEA_FUZZ_ALLOC in the C
file). Every input goes through the target's oracle (fuzz/oracle.py for map_traces); an input that
crashes, trips a sanitizer or breaks the oracle is saved by libFuzzer as ``crash-<sha1>`` and the run fails.
New inputs go to the first corpus directory given (made if missing), else to build/fuzz/corpus/<target>;
the seeds (fuzz/seeds.py) and the kept corpus (fuzz/corpus/<target>) are read as well, unless libFuzzer is
given files to run (replaying crashes, ``-runs=0 FILE ...``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "fuzz"
SOURCE = ROOT / "tea" / "_otlpfast.c"
CHILD = "TEA_FUZZ_CHILD"


def extension_path(build: Path = BUILD) -> Path:
    return build / "lib" / "tea" / ("_otlpfast" + sysconfig.get_config_var("EXT_SUFFIX"))


def build_sanitized(build: Path = BUILD) -> Path:
    """The extension built for fuzzing (again only when tea/_otlpfast.c or setup.py is newer)."""
    so = extension_path(build)
    if so.exists() and so.stat().st_mtime >= max(SOURCE.stat().st_mtime, (ROOT / "setup.py").stat().st_mtime):
        return so
    env = {**os.environ, "TEA_OTLPFAST_SANITIZE": "1", "CC": "clang", "LDSHARED": "clang -shared"}
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--force", "--build-lib", str(build / "lib"),
                    "--build-temp", str(build / "tmp")], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not so.exists():  # setup.py's extension is optional: a failed build is silent there
        raise SystemExit(f"fuzz: the sanitized build of {SOURCE} failed (needs clang and libclang-rt-14-dev)")
    return so


def sanitizer_env(custom_mutator: bool, replay: bool) -> dict[str, str]:
    """The environment of the fuzzing process; ``replay``: files are replayed, so ASan's reports name where
    memory was allocated (while fuzzing that costs a stack walk per allocation)."""
    import atheris  # noqa: F401  (its wheel ships the runtime next to the package)
    package = Path(atheris.__file__).resolve().parent
    preload = [package.parent / "asan_with_fuzzer.so"]
    if custom_mutator:  # libFuzzer looks for LLVMFuzzerCustomMutator when its library loads: atheris'
        # definition must be loaded by then too, or the protobuf-aware mutator (fuzz/mutator.py) is never called
        preload.append(next(package.glob("custom_mutator.*.so")))
    return {
        "LD_PRELOAD": " ".join(map(str, preload)), CHILD: "1",
        # CPython's own allocations at exit are not the extension's leaks; the first report aborts the run
        "ASAN_OPTIONS": f"detect_leaks=0:allocator_may_return_null=1:malloc_context_size={30 if replay else 0}:"
                        "symbolize=1:detect_stack_use_after_return=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }


def load_build(so: Path) -> None:
    """Makes ``tea._otlpfast`` the build at ``so`` (sanitized, or for coverage), before tea.receive.otlp
    imports it."""
    import importlib.util

    import tea
    spec = importlib.util.spec_from_file_location("tea._otlpfast", so)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["tea._otlpfast"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    tea._otlpfast = module  # type: ignore[attr-defined]


def _split(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """This module's own options (--target, --processes) and libFuzzer's."""
    ours, rest = {"target": "map_traces", "processes": "1"}, []
    it = iter(argv)
    for arg in it:
        name = arg[2:].split("=", 1)[0]
        if arg.startswith("--") and name in ours:
            ours[name] = arg.split("=", 1)[1] if "=" in arg else next(it)
        else:
            rest.append(arg)
    return ours, rest


def main(argv: list[str]) -> None:
    ours, flags = _split(argv[1:])
    target = ours["target"]
    so = build_sanitized()
    if int(ours["processes"]) > 1:
        from fuzz import parallel
        raise SystemExit(parallel.run(target, int(ours["processes"]), flags))
    from fuzz import targets
    test_one, mutator = targets.TARGETS[target]
    if os.environ.get(CHILD) != "1":
        replay = any(Path(f).is_file() for f in flags)
        os.execve(sys.executable, [sys.executable, "-m", "fuzz.run", *argv[1:]],
                  {**os.environ, **sanitizer_env(mutator is not None, replay)})
    # loaded already: the symbolizer ASan starts must not load Python's modules, and the processes libFuzzer
    # starts itself (-merge=1) set it up again, as this one did
    del os.environ["LD_PRELOAD"], os.environ[CHILD]
    load_build(so)
    import atheris

    options = [f for f in flags if f.startswith("-")]
    flags = options + targets.corpus([f for f in flags if not f.startswith("-")], target)
    command = f"{sys.executable} -m fuzz.run --target={target}"  # what libFuzzer runs for -merge=1
    atheris.Setup([command, *targets.default_flags(target, flags), *flags], test_one, custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
