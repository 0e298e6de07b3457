"""The compiled UNHINDERED-MIB (UNHINDERED-MIB.py, written here at build time from
mibs/UNHINDERED-MIB; git-ignored). The probe's agent and notifier and the collector load it
from this directory: add_to() gives a pysnmp MibBuilder this directory as a MIB source."""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
MODULE = "UNHINDERED-MIB"


class MibMissing(RuntimeError):
    pass


def add_to(builder) -> None:
    """Loads UNHINDERED-MIB into a pysnmp MibBuilder (pysnmp.smi.builder.MibBuilder)."""
    from pysnmp.smi import builder as smi_builder

    if not (DIRECTORY / f"{MODULE}.py").is_file():
        raise MibMissing(f"{DIRECTORY / (MODULE + '.py')} is missing: it is built from "
                         "mibs/UNHINDERED-MIB when the package is installed; reinstall it "
                         "(pip install -e . in a checkout)")
    builder.add_mib_sources(smi_builder.DirMibSource(str(DIRECTORY)))
    builder.load_modules(MODULE)
