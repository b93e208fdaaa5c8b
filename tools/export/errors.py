"""The exporter's one error type.

Every bad input (a file that is not safetensors, missing or unexpected keys,
shapes that do not fit, an unknown architecture, a bad flag) raises
ExportError with a one-line message naming the file, key or flag; export.py
prints it without a traceback and exits non-zero.
"""


class ExportError(Exception):
    """A one-line, user-facing export error (no traceback is shown for it)."""
