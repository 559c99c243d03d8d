"""Nothing hostile in what people open: text cells of every CSV we write and customer-supplied text in Markdown.

Customer names, invoice references, memos and reasons come from source systems nobody here controls. Written
as-is, ``=HYPERLINK("http://evil", "click")`` in a customer name is a live formula when the tax adviser opens the
listing in a spreadsheet, and ``[pay here](http://evil)`` or a backtick in a Markdown report renders as a link or
breaks out of a code span. Two helpers, one home:

- :func:`csv_cell` / :func:`csv_writer`: a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a
  leading apostrophe (the OWASP recommendation); numbers, and text that is exactly a plain decimal number such
  as ``-120.50``, stay numbers.
- :func:`md`: Markdown punctuation is backslash-escaped, HTML brackets become entities and line breaks become
  spaces, so the text renders literally (no links, images, emphasis, tables cells or code-span breakouts).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
#: Markdown punctuation that can start a link, image, emphasis, code span, table cell, strike-through or HTML, plus
#: underscores that are not inside a word (``statute_expired`` stays readable; ``_x_`` would be emphasis).
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~!#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def csv_cell(value: Any) -> Any:
    """``value`` safe for a spreadsheet: formula-looking text is prefixed with ``'``; numbers are untouched."""
    if not isinstance(value, str) or isinstance(value, bool):
        return value
    if value.startswith(FORMULA_PREFIXES) and value not in ("-", "+") and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class _SafeWriter:
    def __init__(self, writer: Any) -> None:
        self._w = writer

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([csv_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(f: Any, **kwargs: Any) -> _SafeWriter:
    """``csv.writer`` whose every text cell goes through :func:`csv_cell`."""
    return _SafeWriter(csv.writer(f, **kwargs))


def md(value: Any) -> str:
    """Customer-supplied text for Markdown: rendered literally, on one line."""
    if value is None:
        return ""
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    text = " ".join(str(value).split())  # line breaks and tabs would end a table row or start a block
    # No entity tricks (&#96; is a backtick) and no raw HTML.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)
