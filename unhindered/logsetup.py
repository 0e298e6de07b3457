"""Logging for both programs: plain text for a terminal, or one JSON object a line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unhindered.timefmt import iso_utc

# Libraries that log at INFO (or WARNING) during normal work, quieted unless --verbose:
# Alembic says which database backend it found on every collector command, fontTools
# reports every font subset while a PDF report renders.
QUIET_LIBRARIES = {"alembic": logging.WARNING, "fontTools": logging.WARNING,
                   "fpdf": logging.WARNING}


class LoggingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["text", "json"] = Field(
        "text", description="text for a terminal; json: one JSON object a line")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the least severe messages logged")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_utc(record.created)


def setup(fmt: str = "text", level: str = "INFO", verbose: bool = False) -> None:
    """`verbose` logs at DEBUG, the libraries' messages included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else level)
    for name, quiet in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else quiet)
