"""The model version bench/serving.py serves (trained here, or a copy of ``--store``)
and the request images it sends.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.serving_processes import say


def prepare_store(workdir: Path, args: argparse.Namespace) -> tuple[Any, int, dict[str, Any]]:
    """A local store with a production version: a copy of ``--store``, or trained here."""
    from inspector import registry
    from storage.local import LocalStore

    target = workdir / "store"
    if args.store:
        shutil.copytree(args.store, target)
        store = LocalStore(target)
        version = registry.alias(store, "production")
        if version is None:
            sys.exit(f"--store {args.store} has no production version")
        doc = registry.get_version(store, version)
        return store, version, {"reused_store": str(args.store), "config": doc.get("config")}

    from inspector import training
    from inspector.training import TrainConfig
    from tests.factories import fill_store

    store = LocalStore(target)
    t0 = time.perf_counter()
    mix = {"ok": 0.4, "scratch": 0.15, "pit": 0.15, "crack": 0.15, "stain": 0.15}
    fill_store(store, args.train_images, mix=mix, seed=11, size=args.input_size, fmt="png")
    filled = time.perf_counter() - t0
    config = TrainConfig(
        architecture="compact_cnn",
        image_size=args.input_size,
        channels=3,
        epochs=args.train_epochs,
        patience=args.train_epochs,
        batch_size=32,
    )
    request = training.request_run(store, by="bench", config=config, parent="none")
    t0 = time.perf_counter()
    result = training.execute_run(store, request["run_id"], cache_dir=workdir / "train-cache")
    if result.get("state") != "succeeded":
        sys.exit(f"training failed: {result}")
    version = int(result["version"])
    for action in ("register", "gate_passed", "approve"):
        registry.transition(store, version, action, actor="bench", role="operator", reason="bench")
    if args.save_store:
        shutil.rmtree(args.save_store, ignore_errors=True)
        shutil.copytree(target, args.save_store)
    return (
        store,
        version,
        {
            "trained_here": True,
            "images": args.train_images,
            "fill_seconds": round(filled, 1),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "config": config.model_dump(),
        },
    )


def make_pool(size: tuple[int, int], count: int, seed: int) -> list[bytes]:
    """``count`` distinct simulated parts (all classes) as JPEG, quality 92."""
    from inspector.simulate import LineSimulator, encode

    mix = {"ok": 0.6, "scratch": 0.1, "pit": 0.1, "crack": 0.1, "stain": 0.1}
    sim = LineSimulator(size=size, seed=seed, mix=mix)
    return [encode(part.image, "jpeg") for part in sim.parts(count)]


def prepare_model(
    args: argparse.Namespace, workdir: Path, result: dict[str, Any]
) -> tuple[Any, int, Path]:
    """The store, its production version and that version's SavedModel (downloaded);
    ``result["model"]`` describes them."""
    from inspector import registry

    say("\npreparing the model version …")
    t0 = time.perf_counter()
    store, version, model_info = prepare_store(workdir, args)
    saved_model = registry.download_directory(
        store, version, "saved_model", workdir / "model" / "saved_model"
    )
    size_bytes = sum(p.stat().st_size for p in saved_model.rglob("*") if p.is_file())
    doc = registry.get_version(store, version)
    result["model"] = {
        **model_info,
        "version": version,
        "classes": doc["classes"],
        "architecture": (model_info.get("config") or {}).get("architecture"),
        "input_size": (model_info.get("config") or {}).get("image_size"),
        "saved_model_bytes": size_bytes,
        "prepare_seconds": round(time.perf_counter() - t0, 1),
    }
    say(
        f"  version {version} ({result['model']['architecture']}, "
        f"{result['model']['input_size']} px, classes {doc['classes']}) ready in "
        f"{result['model']['prepare_seconds']} s"
    )
    return store, version, saved_model


def request_pools(
    args: argparse.Namespace, model: Any, result: dict[str, Any]
) -> dict[tuple[int, int], list[bytes]]:
    """``--pool`` request images of each ``--image-sizes`` size (``result["images"]``
    describes them); ``model`` is traced once on the first size."""
    pools = {}
    for w, h in args.sizes:
        pools[(w, h)] = make_pool((w, h), args.pool, seed=w * 7 + h)
        sizes = [len(p) for p in pools[(w, h)]]
        say(f"  {args.pool} request images of {w}x{h}: mean {np.mean(sizes) / 1024:.1f} KiB")
    result["images"] = {
        f"{w}x{h}": {"count": len(p), "mean_bytes": int(np.mean([len(x) for x in p]))}
        for (w, h), p in pools.items()
    }
    model.predict_bytes(pools[args.sizes[0]][: args.batch])  # trace once
    return pools
