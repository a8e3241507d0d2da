"""The error every schema check raises (its own module so the schema's parts can share it)."""

from catalog import CatalogError

__all__ = ["SchemaError"]


class SchemaError(CatalogError, ValueError):
    """A file that breaks its format's schema; the message is one line naming file, line, field."""
