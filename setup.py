"""Build hook: compiles mibs/UNHINDERED-MIB into unhindered/snmp/mibs/UNHINDERED-MIB.py with
pysmi (a build requirement) before the Python files are collected, for wheels and for
editable installs alike. Everything else is in pyproject.toml."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithMib(build_py):
    def run(self) -> None:
        # Loaded by path: importing the unhindered package needs its run-time dependencies,
        # which the isolated build environment does not have.
        spec = importlib.util.spec_from_file_location(
            "_unhindered_mibcompile", HERE / "unhindered" / "snmp" / "mibcompile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        written = module.compile_mib()
        print(f"compiled {written.relative_to(HERE)}")
        super().run()


setup(cmdclass={"build_py": BuildPyWithMib})
