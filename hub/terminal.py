"""Text that reaches a terminal or a text log: control characters (ANSI/OSC escapes, newlines, bidi overrides) are
shown escaped, never interpreted, so a value from an export (an export name, a tag, a file name) can neither
restyle the terminal nor forge a log line."""

from __future__ import annotations

import json


def printable(text: object) -> str:
    """``text`` with every non-printable character written as its escape (``\\x1b``, ``\\n``, ``\\u202e``)."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)


def log_value(value: object) -> str:
    """A value of a ``key=value`` text log line: escaped, and quoted when it holds spaces, ``=`` or quotes (so one
    value never reads as several fields): a quoted value is a JSON string of the escaped text, non-ASCII letters kept
    (``"exports/tencent/账单 5月/a.zip"``, not ``\\u8d26...``)."""
    text = printable(value)
    return json.dumps(text, ensure_ascii=False) if not text or any(c in text for c in ' ="\'') else text
