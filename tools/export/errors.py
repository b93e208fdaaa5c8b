"""The exporter's one error type: a one-line message for the user (no traceback)."""


class ExportError(Exception):
    """Bad input to tools/export (file, flag, key or shape); str(e) is one line naming it."""
