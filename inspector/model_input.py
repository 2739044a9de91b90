"""What a model takes in and how training varies it: plain settings, no TensorFlow, so
the API can validate a training request without loading TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass

from inspector.errors import InspectorError


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: a square image of ``size`` pixels with ``channels`` channels."""

    size: int = 128
    channels: int = 3

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or not 32 <= self.size <= 1024:
            raise InspectorError(
                f"input must be 1 or 3 channels and 32-1024 px, not {self}", code="invalid_input"
            )


@dataclass(frozen=True)
class Augmentation:
    """Inspection-safe augmentation: surfaces have no up or down, defects no colour shift."""

    flip: bool = True
    rotation: float = 0.03  # fraction of a full turn (0.03 ≈ ±11°)
    shift: float = 0.1  # fraction of the image side
    brightness: float = 0.15  # fraction of the 0-255 range
    contrast: float = 0.15

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.flip or self.rotation or self.shift or self.brightness or self.contrast)
