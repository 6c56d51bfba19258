"""One `configure_logging()`: structlog on stderr (stdout stays for results), secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from .config import SECRET_WORDS

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if SECRET_WORDS.search(key) and not key.endswith("_env"):
            event[key] = "********"
    return event


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Console lines on a terminal, JSON lines otherwise; `fmt` forces one of them."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose one of {', '.join(LEVELS)}")
    tty = (stream or sys.stderr).isatty()
    console = fmt == "console" or (fmt == "auto" and tty)
    renderer: Any = structlog.dev.ConsoleRenderer(colors=tty) if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # resolve stderr at each use, so a replaced sys.stderr (tests, pipes) is honoured
        logger_factory=lambda *_args: structlog.PrintLogger(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # SDKs log through the standard library; keep them on stderr and quieter than ours.
    root = logging.getLogger()
    if not any(getattr(h, "_migrate", False) for h in root.handlers):
        handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
        handler._migrate = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(max(LEVELS[level], logging.WARNING))


def keep_stdout_for_results() -> int:
    """Move every standard-library log handler that writes to stdout over to stderr; returns how many.

    Some SDKs log to stdout from the moment they are imported (the `neptune` client adds a stdout handler to
    the `neptune` logger, which neptune-query logs through too), and a log line on stdout breaks `--json`.
    Called after the plugins' factories ran, since they import the SDKs."""
    moved = 0
    loggers = [logging.getLogger()] + [logger for logger in logging.root.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.StreamHandler) or isinstance(handler, _StderrHandler):
                continue
            if handler.stream not in (sys.stdout, sys.__stdout__):
                continue
            replacement = _StderrHandler()
            replacement.setLevel(handler.level)
            replacement.setFormatter(handler.formatter)
            for item in handler.filters:
                replacement.addFilter(item)
            logger.removeHandler(handler)
            logger.addHandler(replacement)
            moved += 1
    return moved
