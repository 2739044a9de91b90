"""What a defect map and the test-time flips cost at serving: the product's SavedModel
(probabilities, verdict and ``defect_map``: one forward and one backward pass per view)
judging by 1, 2 and 4 flipped views (``test_time_flips``; 4 is the default), against the
same model exported without the map and with one view (one forward pass), on the same
encoded images, in this process.

    .venv/bin/python bench/defect_maps.py                      # KolektorSDD's canvas
    .venv/bin/python bench/defect_maps.py --canvas 192x192x3   # NEU's

Latency does not depend on the weights' values, so the model is built untrained with the
product's ``build_model`` at the canvas a trained version has (KolektorSDD: 560×224×1).
The images are KolektorSDD JPEGs when ../shared is there, else simulated parts of the
same size. Prints ms per image at batch 1 and 8 and the ratios to the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import tempfile
import time

from bench import common

FLIPS = (1, 2, 4)
KOLEKTOR = common.ROOT / ".." / "shared" / "datasets" / "kolektorsdd" / "ok"


def images(count: int, height: int, width: int) -> list[bytes]:
    """Encoded camera images: KolektorSDD's where present, simulated otherwise."""
    files = sorted(KOLEKTOR.glob("*.jpg"))[:count] if KOLEKTOR.is_dir() else []
    if files:
        return [f.read_bytes() for f in files]
    from inspector.simulate import LineSimulator, encode

    sim = LineSimulator(size=(width * 2, height * 2), seed=1)
    return [encode(sim.part().image, "jpeg") for _ in range(count)]


def export_plain(model, spec, path: Path) -> None:
    """The baseline: the same graph without the map (probabilities only)."""
    import keras
    import tensorflow as tf

    from inspector.export import decode_batch
    from inspector.modeling import logits_model

    logits = logits_model(model)
    archive = keras.export.ExportArchive()
    archive.track(logits)

    def plain(encoded: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = decode_batch(encoded, spec)
        return {"probabilities": tf.nn.softmax(logits(pixels, training=False))}

    archive.add_endpoint("serving_default", plain, [tf.TensorSpec([None], tf.string)])
    archive.write_out(str(path), verbose=False)


def latency(path: Path, data: list[bytes], batch: int, seconds: float) -> float:
    """Median ms per image over repeated calls of ``batch`` images."""
    import statistics

    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    name = next(iter(fn.structured_input_signature[1]))
    chunk = tf.constant(data[:batch])
    fn(**{name: chunk})  # warm up
    times = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t = time.perf_counter()
        fn(**{name: chunk})
        times.append((time.perf_counter() - t) * 1000 / batch)
    return statistics.median(times)


def main() -> None:
    """Export both ways, time both, print and save the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canvas", default="560x224x1", help="height x width x channels")
    parser.add_argument("--seconds", type=float, default=10, help="timing per case")
    args = parser.parse_args()
    height, width, channels = (int(v) for v in args.canvas.split("x"))
    from inspector import export
    from inspector.model_input import InputSpec
    from inspector.modeling import build_model

    spec = InputSpec(height, width, channels)
    model = build_model("fcn16", ["ok", "crack"], ["ok"], spec)
    work = Path(tempfile.mkdtemp(prefix="defect-map-cost-"))
    for flips in FLIPS:
        export.export_saved_model(
            model, ["ok", "crack"], spec, work / f"x{flips}", threshold=0.5, flips=flips
        )
    export_plain(model, spec, work / "without_map")
    data = images(16, height, width)
    rows = []
    for batch in (1, 8):
        without = latency(work / "without_map", data, batch, args.seconds)
        row: dict[str, float] = {"batch": batch, "without_map_ms": round(without, 2)}
        for flips in FLIPS:
            ms = latency(work / f"x{flips}", data, batch, args.seconds)
            row[f"map_x{flips}_ms"] = round(ms, 2)
            row[f"map_x{flips}_ratio"] = round(ms / without, 2)
        rows.append(row)
    print(f"canvas {spec}; {common.describe(common.machine())}")
    print(common.table(rows, [(k, k) for k in rows[0]]))
    out = common.save_results(
        "defect_maps", {"canvas": str(spec), "rows": rows, "machine": common.machine()}
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
