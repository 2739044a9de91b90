"""Input pipeline benchmark: the product's ``make_dataset`` against its ceiling and the
naive way, training the same model on the same NEU train split in one process.

(a) ceiling    the images decoded and resized once, held in memory as a float32 tensor:
               ``from_tensor_slices(...).batch(32).prefetch(AUTOTUNE)``, no augmentation;
(b) pipeline   ``make_dataset(...)`` on the JPEG files with the production settings
               (shuffle, augmentation on): its first epoch decodes and fills the cache,
               the later ones read the cache and augment;
(b0) no aug    ``make_dataset(...)`` with augmentation off: what the pipeline costs
               without the augmentation (diagnosis);
(c) naive      a Python generator that reads and decodes each file with OpenCV, one by
               one, and yields numpy batches via ``from_generator`` (no prefetch, no
               augmentation: it is omitted, which flatters this path);
(k) layers    (with ``--keras-layers``) the pipeline as it augmented before 2026-11-26,
               with Keras' random layers (``make_dataset_keras_layers``).

(b) is ``make_dataset``, as BENCHMARKS.md measured it. The product's training now feeds
``training_dataset`` instead (the same decode, cache and augmentation, but one cached
stream per class, drawn by ``sample_from_datasets``, endless): not timed here.

Every path trains the one compiled model (traced once beforehand), one epoch at a time,
in interleaved rounds: round 0 is every path's first epoch (the one in which (b) decodes),
then ``--rounds`` rounds of one epoch each (more, up to ``--max-rounds``, until every path
has three clean epochs), in an order rotated every round, so that a drift or a burst of
load elsewhere on the machine lands on every path alike; each round first waits a little
for an idle machine. Each epoch records its wall time, the CPU this process used and the
cores the rest of the machine used; the medians of the steady epochs are reported, over
the epochs in which the rest of the machine stayed under 0.25 cores when there are at
least three such epochs. CPU milliseconds per trained image are reported too: on a
shared machine they move much less than wall time. Then each pipeline is iterated
without the model, to show how much CPU it needs per image (on 2 cores every core-second
the pipeline spends is one the training step does not get).

This file is the command line and the run: the model traced, the interleaved rounds, the
pipelines alone, the table and the JSON. Beside it in bench/: pipeline_ways.py (the ways
of feeding the model, each built as a dataset) and pipeline_measure.py (CPU time, the
epoch timer, each way's timed epochs and their medians, a pipeline iterated alone, and
the cost of decoding one image).

    .venv/bin/python bench/pipeline.py
    .venv/bin/python bench/pipeline.py --architecture compact_cnn --size 128 --channels 1
    .venv/bin/python bench/pipeline.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench import common
from bench.pipeline_measure import CLEAN, Way, decode_costs, iterate_only
from bench.pipeline_ways import Feed, feeds

if TYPE_CHECKING:
    from inspector.model_input import InputSpec

COLUMNS = [
    ("path", "path"),
    ("name", "what"),
    ("first_epoch_images_per_s", "1st epoch img/s"),
    ("median_images_per_s", "median img/s"),
    ("ratio_to_ceiling", "÷ (a)"),
    ("first_epoch_ratio", "1st ÷ (a)"),
    ("cpu_ms_per_image", "CPU ms/img"),
    ("cpu_ratio_to_ceiling", "(a) CPU ÷ this"),
    ("own_cores", "cores"),
    ("clean_epochs", "clean"),
    ("others_cores_median", "others"),
    ("alone_first_images_per_s", "alone 1st img/s"),
    ("alone_images_per_s", "alone img/s"),
    ("alone_cpu_ms_per_image", "alone CPU ms/img"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=common.NEU_DEFAULT, help="the NEU folder")
    parser.add_argument("--architecture", default="compact_cnn")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=6, help="steady epochs of each path (after the first)"
    )
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=24,
        help="more rounds, up to this many, until every path has 3 clean epochs",
    )
    parser.add_argument(
        "--round-idle-timeout",
        type=float,
        default=90,
        help="before each round, wait up to this many seconds for an idle machine",
    )
    parser.add_argument(
        "--alone-epochs", type=int, default=4, help="epochs of each pipeline without the model"
    )
    parser.add_argument(
        "--keras-layers",
        action="store_true",
        help="also run (k) the earlier augmentation with Keras' random layers",
    )
    parser.add_argument("--seed", type=int, default=0)
    common.add_wait_options(parser)
    return parser.parse_args(argv)


def load_train(data: Path, batch_size: int) -> tuple[list[Path], list[int], list[str]]:
    """NEU's train split: its paths and labels, and the class names."""
    classes, images = common.load_neu(data.resolve())
    train = [i for i in images if i.split == "train"]
    print(f"NEU train split: {len(train)} images, {len(classes)} classes, batch {batch_size}")
    return [i.path for i in train], [i.label for i in train], classes


def traced_model(
    architecture: str, classes: list[str], spec: InputSpec, ceiling: Callable[[], Any]
) -> Any:
    """The one compiled model, its training step traced (full and last partial batch) on
    one epoch of the ceiling before any timing. NEU has no good class: every class is a
    defect (no good names), as NEU lines train in the product."""
    import keras

    from inspector.modeling import build_model

    model = build_model(architecture, classes, [], spec)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(ceiling(), epochs=1, verbose=0)
    return model


def prepare(
    args: argparse.Namespace, paths: list[Path], labels: list[int], classes: list[str]
) -> tuple[InputSpec, list[Feed], Any]:
    """From ``--seed``: the input spec (a ``--size`` square canvas), each way with what
    builds its dataset, and the traced model."""
    import keras

    from inspector.model_input import InputSpec

    keras.utils.set_random_seed(args.seed)
    spec = InputSpec(height=args.size, width=args.size, channels=args.channels)
    made = feeds(paths, labels, spec, args)
    ceiling = {key: make for key, _, make in made}["a"]
    return spec, made, traced_model(args.architecture, classes, spec, ceiling)


def interleave(ways: list[Way], model: Any, n: int, args: argparse.Namespace) -> None:
    """Round 0, then the rounds of one epoch a way, in an order rotated every round, until
    ``--rounds`` are done and every way has 3 clean epochs (or ``--max-rounds`` are)."""
    round_ = 0
    while True:
        clean = min(sum(e["others"] <= CLEAN for e in way.epochs[1:]) for way in ways)
        if round_ > args.rounds and (clean >= 3 or round_ > args.max_rounds):
            break
        if args.round_idle_timeout > 0:
            common.wait_for_idle(args.round_idle_timeout, log=lambda _: None)
        shift = round_ % len(ways)
        line = []
        for way in ways[shift:] + ways[:shift]:
            if not args.no_wait:
                common.wait_for_quiet_machine()
            epoch = way.train_epoch(model)
            line.append(f"({way.key}) {n / epoch['wall']:6.1f} img/s [{epoch['others']:.2f}]")
        label = "first" if round_ == 0 else f"{round_:5d}"
        print(f"   round {label}: " + "  ".join(line), flush=True)
        round_ += 1


def add_ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each row's images/s (steady and first epoch) and CPU per image against (a)'s; (a)'s
    row."""
    ceiling = next(r for r in rows if r["path"] == "a")
    for row in rows:
        row["ratio_to_ceiling"] = round(
            row["median_images_per_s"] / ceiling["median_images_per_s"], 3
        )
        row["first_epoch_ratio"] = round(
            row["first_epoch_images_per_s"] / ceiling["median_images_per_s"], 3
        )
        row["cpu_ratio_to_ceiling"] = round(
            ceiling["cpu_ms_per_image"] / row["cpu_ms_per_image"], 3
        )
    return ceiling


def add_alone(
    made: list[Feed], rows: list[dict[str, Any]], n: int, args: argparse.Namespace
) -> None:
    """Each pipeline iterated without the model; its numbers added to its row."""
    print("\n== the pipelines alone (no model)", flush=True)
    for (key, _, make), row in zip(made, rows, strict=True):
        alone = iterate_only(make, n, args.alone_epochs, not args.no_wait)
        row["alone_first_images_per_s"] = alone["first_epoch_images_per_s"]
        row["alone_images_per_s"] = alone["median_images_per_s"]
        row["alone_cpu_ms_per_image"] = alone["cpu_ms_per_image"]
        print(f"   ({key}) {alone}", flush=True)


def report(rows: list[dict[str, Any]]) -> None:
    """The table, then each path against (a) (target for (b): at least 0.90)."""
    by = {r["path"]: r for r in rows}
    print()
    print(common.table(rows, COLUMNS))
    print(
        f"\n(a) = {by['a']['median_images_per_s']} images/s; 'others' = median cores the rest of "
        f"the machine used per epoch; medians from epochs where it used ≤ {CLEAN} cores"
    )
    print(f"(b)/(a) = {by['b']['ratio_to_ceiling']:.3f}   target ≥ 0.90")
    print(f"(b) first epoch/(a) = {by['b']['first_epoch_ratio']:.3f}")
    print(f"(b0)/(a) = {by['b0']['ratio_to_ceiling']:.3f}   (no augmentation)")
    print(f"(c)/(a) = {by['c']['ratio_to_ceiling']:.3f}")
    if "k" in by:
        print(f"(k)/(a) = {by['k']['ratio_to_ceiling']:.3f}   (Keras augmentation layers)")


def main(argv: list[str] | None = None) -> int:
    """Time the paths, print the table and the ratios, write the JSON."""
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths, labels, classes = load_train(args.data, args.batch_size)
    n = len(paths)
    spec, made, model = prepare(args, paths, labels, classes)

    waited, waited_idle = common.wait_before_measuring(args)
    info = common.machine()
    started = common.utc_now()
    print(f"machine: {common.describe(info)}")
    shape = f"{args.size}x{args.size}x{args.channels}"
    print(f"model: {args.architecture} {shape}; 1 + {args.rounds} epochs a path, interleaved")
    print("each round: images/s of an epoch [cores the rest of the machine used]\n")

    ways = [Way(key, name, make()) for key, name, make in made]
    interleave(ways, model, n, args)
    rows = [way.summary(n) for way in ways]
    ceiling_row = add_ratios(rows)
    add_alone(made, rows, n, args)

    print("\n== decode + resize, one image at a time (ms)", flush=True)
    decode_ms = decode_costs(paths, spec)
    for name, row in decode_ms.items():
        print(f"   {name}: {row}")
    report(rows)

    result = {
        "benchmark": "pipeline",
        "started": started,
        "finished": common.utc_now(),
        "waited_for_other_benchmarks_s": round(waited, 1),
        "waited_for_idle_machine_s": round(waited_idle, 1),
        "machine": info,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "data": str(args.data.resolve()),
        "train_images": n,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ceiling_images_per_s": ceiling_row["median_images_per_s"],
        "rows": rows,
        "decode_ms": decode_ms,
    }
    out = common.save_results("pipeline", result)
    print(f"results: {common.shown(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
