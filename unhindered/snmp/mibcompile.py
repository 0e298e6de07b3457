"""Compiles the shipped MIB (mibs/UNHINDERED-MIB) into the pysnmp module the probe and the
collector load. Runs at build time only (setup.py's build hook, and the tests): probes
never compile MIBs, which is slow and writes to the user's home.

This file imports nothing from the project, so that setup.py can load it by path in the
isolated build environment, where only setuptools and pysmi are installed."""

from __future__ import annotations

from pathlib import Path

MODULE = "UNHINDERED-MIB"
ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "mibs", ROOT / "mibs" / "ietf")
OUTPUT = Path(__file__).resolve().parent / "mibs"


class MibCompileError(RuntimeError):
    pass


def compile_mib(output: Path = OUTPUT, sources: tuple[Path, ...] = SOURCES,
                module: str = MODULE) -> Path:
    """Writes <output>/<module>.py from the MIB text found in `sources`; returns its path."""
    from pysmi.codegen import PySnmpCodeGen
    from pysmi.compiler import MibCompiler
    from pysmi.parser import SmiStarParser
    from pysmi.reader import FileReader
    from pysmi.searcher import StubSearcher
    from pysmi.writer import PyFileWriter

    output.mkdir(parents=True, exist_ok=True)
    compiler = MibCompiler(SmiStarParser(), PySnmpCodeGen(), PyFileWriter(str(output)))
    compiler.add_sources(*(FileReader(str(s), recursive=False) for s in sources))
    # pysnmp ships its own compiled base MIBs (SNMPv2-SMI, -TC, -CONF): only ours is built.
    compiler.add_searchers(StubSearcher(*PySnmpCodeGen.baseMibs))
    results = compiler.compile(module, rebuild=True, genTexts=True)
    status = str(results.get(module, "missing"))
    if status not in ("compiled", "untouched"):
        problems = {name: str(r) for name, r in results.items() if str(r) != "compiled"}
        raise MibCompileError(f"{module} did not compile ({status}): {problems}")
    return output / f"{module}.py"
