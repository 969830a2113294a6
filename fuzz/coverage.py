"""Source coverage of tea/_otlpfast.c by a fuzz corpus: ``python -m fuzz.coverage [CORPUS_DIR ...]``.

Builds the extension once more with clang's source-based coverage (build/fuzz-cov), replays the corpus
directories (default: the working corpus, the seeds, the kept corpus and the regressions of every target)
through the same targets as the fuzzer, and prints llvm-cov's summary for the C file: the share of its
functions, lines, regions and branches the corpus reaches.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "fuzz-cov"
SOURCE = ROOT / "tea" / "_otlpfast.c"


def _tool(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/llvm-*/bin/{name}")) or sorted(glob.glob(f"/usr/bin/{name}*"))
    if not found:
        raise SystemExit(f"fuzz.coverage: {name} not found (Debian: llvm, installed with clang)")
    return found[-1]


def so_path() -> Path:
    return BUILD / ("_otlpfast" + sysconfig.get_config_var("EXT_SUFFIX"))


def build() -> Path:
    so = so_path()
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run(["clang", "-shared", "-fPIC", "-O1", "-std=c11", "-fprofile-instr-generate", "-fcoverage-mapping",
                    f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(so)], check=True)
    return so


def replay(corpora: dict[str, list[Path]]) -> None:
    """Every input of every corpus through its target, in this process (the profile is written at exit)."""
    from fuzz import oracle, targets
    for target, dirs in corpora.items():
        test_one = targets.TARGETS[target][0]
        for directory in dirs:
            for path in sorted(directory.iterdir()) if directory.is_dir() else ():
                try:
                    test_one(path.read_bytes())
                except FileNotFoundError:  # a running fuzzer replaced it with a smaller input
                    pass
                except (AssertionError, oracle.Finding):  # a finding is the fuzzer's to report, not coverage's
                    pass


def default_corpora() -> dict[str, list[Path]]:
    from fuzz import targets
    return {t: [targets.WORK / "corpus" / t, targets.seed_dir(t), targets.KEPT / t, ROOT / "fuzz" / "regressions" / t]
            for t in targets.TARGETS}


def main(argv: list[str]) -> None:
    profile = BUILD / "otlpfast.profraw"
    if os.environ.get("TEA_FUZZ_COVERAGE_CHILD") == "1":
        from fuzz.run import load_build
        load_build(so_path())  # before anything imports tea.receive.otlp (and with it the ordinary build)
        corpora = {"map_traces": [Path(a) for a in argv[1:]]} if argv[1:] else default_corpora()
        replay(corpora)
        return
    so = build()
    profile.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "fuzz.coverage", *argv[1:]], cwd=ROOT, check=True,
                   env={**os.environ, "TEA_FUZZ_COVERAGE_CHILD": "1", "LLVM_PROFILE_FILE": str(profile)})
    merged = BUILD / "otlpfast.profdata"
    subprocess.run([_tool("llvm-profdata"), "merge", "-sparse", str(profile), "-o", str(merged)], check=True)
    subprocess.run([_tool("llvm-cov"), "report", str(so), f"-instr-profile={merged}", str(SOURCE)], check=True)


if __name__ == "__main__":
    main(sys.argv)
