"""Errors caused by user input. The CLI prints them as one clear line, without a traceback."""

from __future__ import annotations


class UbernetError(Exception):
    """Bad user input (a file, a config key, an option): the message names it and says what is valid."""


class DataError(UbernetError, ValueError):
    """A dataset file is missing, unreadable or malformed; the message names the file and the problem."""


class ConfigError(UbernetError, ValueError):
    """A configuration key or value is invalid; the message names the key and the valid values."""
