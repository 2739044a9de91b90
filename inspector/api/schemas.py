"""What comes in and what goes out of the HTTP API (separate models for each)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """A machine-readable code and a human message."""

    code: str = Field(examples=["unsupported_format"])
    message: str = Field(examples=["not a JPEG, PNG, BMP or TIFF image"])
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """Every error the API returns."""

    error: ErrorBody


class UploadAccepted(BaseModel):
    """The answer to an upload: the image id (its content hash) and what happens next."""

    image_id: str
    duplicate: bool = Field(description="true when these exact bytes were accepted before")
    ingest: Literal["queued", "deferred", "done"] = Field(
        description="deferred: the broker is down; the reconciler will queue it"
    )
    received_at: str
    label: str | None = None
    url: str
    verdict: dict[str, Any] | None = Field(
        None, description="label, confidence, defect, model_version, latency_ms, probabilities"
    )
    verdict_status: Literal["done", "pending", "no_model"] = Field(
        "pending", description="pending: poll verdict_url; no_model: no model serves yet"
    )
    verdict_url: str = ""


class VerdictOut(BaseModel):
    """An image's verdict and the verdicts every version gave it."""

    image_id: str
    verdict_status: Literal["done", "pending"]
    verdict: dict[str, Any] | None
    history: list[dict[str, Any]]


class LabelIn(BaseModel):
    """An operator's or a downstream station's ground truth for an image."""

    label: str = Field(min_length=1, max_length=32, examples=["scratch"])
    reason: str | None = Field(None, max_length=500)


class LabelEventOut(BaseModel):
    """One entry of an image's label history."""

    label: str
    by: str
    source: str
    at: str
    reason: str | None = None


class LabelOut(BaseModel):
    """An image's current label and its history, oldest first."""

    image_id: str
    label: str | None
    history: list[LabelEventOut]


class ImageOut(BaseModel):
    """Everything known about one accepted image."""

    image_id: str
    record: dict[str, Any]
    ingest: dict[str, Any]
    label: str | None
    label_history: list[LabelEventOut]


class ClassIn(BaseModel):
    """A new class for the vocabulary."""

    name: str = Field(min_length=1, max_length=32, examples=["dent"])
    description: str = Field("", max_length=200)


class ClassOut(BaseModel):
    """One class of the vocabulary."""

    name: str
    description: str
    defect: bool
    added_by: str
    added_at: str
