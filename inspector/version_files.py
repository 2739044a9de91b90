"""A fitted run's version files: the SavedModel (with its threshold, flips and defect
map), the trainable Keras model, the TFLite file, warm-up requests, the class list and
the training curves; and the held-out self-check of the exported forms, which
:mod:`inspector.trainer` adds to the version document. TensorFlow: the train worker only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from inspector import export, fitted, modeling, thresholds
from inspector.train_config import TrainConfig
from inspector.training import Progress
from inspector.training_data import TrainingData


def write(
    model: keras.Model,
    judge: keras.Model,
    config: TrainConfig,
    data: TrainingData,
    point: thresholds.OperatingPoint,
    splits: tuple[fitted.Split | None, fitted.Split],
    work_dir: Path,
    progress: Progress,
    summary: dict[str, Any],
) -> dict[str, Path]:
    """Write the version's files (``model`` the trainable form, ``judge`` what serves:
    the same weights averaged over the test-time flips); adds the held-out self-check
    and TFLite to ``summary``. ``splits``: the held-out and the training images."""
    progress({"phase": "exporting"})
    heldout, train = splits
    out = work_dir / "version"
    out.mkdir()
    saved = out / "saved_model"
    export.export_saved_model(
        model,
        data.classes,
        data.spec,
        saved,
        threshold=point.threshold,
        flips=config.judging_flips,
    )
    modeling.save_keras(model, out / "model.keras")
    serving = export.ServingModel(saved)
    tflite = export.to_tflite(judge, quantize=config.tflite_quantize)
    (out / "model.tflite").write_bytes(tflite)
    if heldout is not None:
        progress({"phase": "evaluating", "images": len(heldout.entries)})
        summary["heldout"] = fitted.self_check(judge, serving, tflite, heldout, data, point)
    summary["tflite"] = {
        "bytes": len(tflite),
        "quantization": "dynamic_range" if config.tflite_quantize else "none",
        "input": "float32 [1, height, width, channels], 0-255 (preprocessed)",
        "output": "probabilities",
    }
    warm = heldout or train
    export.save_json(
        export.warmup_document(
            serving,
            [(e.image_id, p.read_bytes()) for e, p in zip(warm.entries, warm.paths, strict=True)][
                : config.warmup_images
            ],
        ),
        out / "warmup.json",
    )
    export.save_json(data.classes, out / "classes.json")
    return {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}


def history(curves: dict[str, list[float]], work_dir: Path) -> dict[str, Path]:
    """The training curves (``history.json``) and the TensorBoard logs, as version files."""
    path = work_dir / "version" / "history.json"
    export.save_json({k: [float(v) for v in vs] for k, vs in curves.items()}, path)
    tensorboard_dir = work_dir / "tensorboard"
    return {
        "history.json": path,
        **{
            f"tensorboard/{p.relative_to(tensorboard_dir)}": p
            for p in tensorboard_dir.rglob("*")
            if p.is_file()
        },
    }
