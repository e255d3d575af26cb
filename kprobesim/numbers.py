"""Numbers as the kernel's ``kstrtoul(text, 0)`` reads them in probe specs.

``0x``/``0X`` starts hex, a leading ``0`` octal (so ``010`` is 8 and ``08`` is an error),
anything else decimal; ASCII digits only, and the value must fit in 64 bits.
"""

from __future__ import annotations

import re

NUMBER = r"(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
_NUMBER = re.compile(NUMBER, re.ASCII)
MASK64 = (1 << 64) - 1


def kernel_number(text: str) -> int | None:
    """The value of ``text``, or None when it is not a number the kernel accepts."""
    if not _NUMBER.fullmatch(text):
        return None
    if text[:2] in ("0x", "0X"):
        value = int(text[2:], 16)
    elif text[0] == "0" and len(text) > 1:
        value = int(text[1:], 8)
    else:
        value = int(text)
    return value if value <= MASK64 else None
