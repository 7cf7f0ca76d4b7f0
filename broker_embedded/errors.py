"""The error that coordinators and handlers raise to answer with a specific Kafka error code.

It lives below both `api/` and `coordinator/` so that coordinators need not import the protocol layer;
`api/errors.py` is still the one place where every other exception is mapped to a code.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode


class KafkaError(Exception):
    """Answer with `code` (and `message` where the API carries one)."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message
