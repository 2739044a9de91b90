"""Errors of the domain, as types. Each has a machine-readable ``code`` and a message
that says what to do; the API maps the types to HTTP statuses in one place."""

from __future__ import annotations


class InspectorError(Exception):
    """Base of the domain's errors."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ImageRejected(InspectorError):
    """The uploaded bytes are not an image we accept (empty, corrupt, unsupported, too large)."""

    code = "image_rejected"


class ImageTooLarge(ImageRejected):
    """The image's dimensions exceed the configured limits."""

    code = "image_too_large"


class InvalidMetadata(InspectorError):
    """A metadata field is missing, too long, or has characters we do not store."""

    code = "invalid_metadata"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownLabel(InspectorError):
    """A label that is not in the class vocabulary."""

    code = "unknown_label"


class InvalidClassName(InspectorError):
    """A proposed class name that does not fit the vocabulary's rules."""

    code = "invalid_class_name"


class ImageNotFound(InspectorError):
    """No image with that id has been accepted."""

    code = "image_not_found"


class IngestFailed(InspectorError):
    """An accepted image cannot be ingested, and retrying will not help."""

    code = "ingest_failed"
