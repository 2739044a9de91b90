"""Real-line scenarios for bench/real_lines.py: which images a plant uploads labelled on
which "day", and which parts are held back to be judged afterwards.

- ``kolektor``: ../shared/datasets/kolektorsdd (347 good commutators, 52 cracked; masks).
  Held back: whole commutators — blocks of 8 consecutive numbers, about 30 % of them
  (by a hash of the block number). One day.
- ``neu-cl``: ../shared/datasets/neu (6 steel-defect classes × 300). Held back: 30 % of
  the images (by a salted hash of their bytes). Day 1 uploads four classes, day 2 the
  other two (class-incremental learning).
- ``sim-small``: the project's simulator drawing a line shaped like the one issue 9 was
  measured on: grey parts of three sizes (400×240, 300×260, 560×320), defects a few
  pixels wide, 700 good parts beside 40-70 of each defect type; scratch and pit on
  day 1, crack and stain on day 2. Written once into bench/results/sim-small-data.
- ``--data DIR``: any folder of class folders (``ok`` is the good class), held back as
  NEU is; ``--day2 a,b`` holds those classes back until day 2.

Class names are the folder names in lower case with other characters as ``_``, so that
the vocabulary accepts them. Imports no TensorFlow.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT

DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
HELD_BACK = 0.3


@dataclass(frozen=True)
class Item:
    """One image file with its class and, where the data set has one, its defect mask."""

    path: Path
    label: str
    mask: Path | None = None

    @property
    def name(self) -> str:
        """A short name for part ids and logs."""
        return f"{self.path.parent.name}-{self.path.stem}"


@dataclass(frozen=True)
class Scenario:
    """What a plant uploads labelled on each day, and what it later sends to be judged."""

    name: str
    days: tuple[tuple[Item, ...], ...]
    held_back: tuple[Item, ...]
    good: str = "ok"
    notes: tuple[str, ...] = field(default=())

    @property
    def classes(self) -> list[str]:
        """Every class of the scenario, sorted."""
        return sorted(
            {i.label for day in self.days for i in day} | {i.label for i in self.held_back}
        )

    def classes_of_day(self, day: int) -> list[str]:
        """The classes uploaded on ``day`` (0-based) and before."""
        return sorted({i.label for d in self.days[: day + 1] for i in d})


def class_name(folder: str) -> str:
    """A folder name as a vocabulary class name (a-z 0-9 _, starting with a letter)."""
    name = re.sub(r"[^a-z0-9_]", "_", folder.lower()).strip("_") or "class"
    return name if name[0].isalpha() else f"c_{name}"


def _fraction(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def _salted(path: Path) -> float:
    return int(hashlib.sha256(b"held-back:" + path.read_bytes()).hexdigest()[:12], 16) / 16**12


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def folder_scenario(root: Path, name: str, day2: tuple[str, ...] = ()) -> Scenario:
    """Any folder of class folders; ``day2`` classes are uploaded on a second day."""
    if not root.is_dir():
        raise SystemExit(f"no data set at {root}")
    items = [
        Item(path, class_name(folder.name))
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in _images(folder)
    ]
    if not items:
        raise SystemExit(f"{root} has no class folders with images")
    unknown = set(day2) - {i.label for i in items}
    if unknown:
        raise SystemExit(f"--day2 names classes {sorted(unknown)} that {root} does not have")
    back = tuple(i for i in items if _salted(i.path) < HELD_BACK)
    labelled = [i for i in items if i not in back]
    first = tuple(i for i in labelled if i.label not in day2)
    second = tuple(i for i in labelled if i.label in day2)
    days = (first, second) if second else (first,)
    return Scenario(name, days, back)


def kolektor(root: Path = DATASETS / "kolektorsdd") -> Scenario:
    """KolektorSDD, commutators held back whole (blocks of 8 consecutive numbers)."""
    if not root.is_dir():
        raise SystemExit(f"KolektorSDD not found at {root}")
    items = []
    for folder, label in (("ok", "ok"), ("defect", "crack")):
        for path in _images(root / folder):
            mask = root / "masks" / f"{path.stem}.png"
            items.append(Item(path, label, mask if mask.exists() else None))

    def block(item: Item) -> int:
        return int(item.path.stem.split("-")[1]) // 8

    back = tuple(i for i in items if _fraction(f"kolektor-block-{block(i)}") < HELD_BACK)
    return Scenario(
        "kolektor",
        (tuple(i for i in items if i not in back),),
        back,
        notes=("held back by commutator: blocks of 8 consecutive image numbers",),
    )


SIM_COUNTS = {"ok": 700, "scratch": 70, "pit": 60, "crack": 50, "stain": 40}
SIM_SIZES = ((400, 240), (300, 260), (560, 320))


def simulated_small(root: Path = ROOT / "bench" / "results" / "sim-small-data") -> Scenario:
    """The simulator's small defects on grey parts of mixed sizes, drawn once into ``root``
    (the same seeds give the same images), crack and stain on day 2."""
    import cv2

    from inspector.simulate import LineSimulator

    if not (root / "done").exists():
        for k, size in enumerate(SIM_SIZES):
            sim = LineSimulator(size=size, seed=100 + k, color=False, defect_size="small")
            for label, count in SIM_COUNTS.items():
                (root / label).mkdir(parents=True, exist_ok=True)
                for i in range(count // len(SIM_SIZES) + (k < count % len(SIM_SIZES))):
                    path = root / label / f"{size[0]}x{size[1]}-{i:04d}.png"
                    cv2.imwrite(str(path), sim.part(label).image)
        (root / "done").write_text("drawn by bench/lines.py simulated_small\n")
    return folder_scenario(root, "sim-small", ("crack", "stain"))


NEU_DAY2 = ("rolled_in_scale", "scratches")


def neu_cl(root: Path = DATASETS / "neu") -> Scenario:
    """NEU, class-incremental: four classes on day 1, two more on day 2."""
    scenario = folder_scenario(root, "neu-cl", NEU_DAY2)
    return Scenario(
        scenario.name,
        scenario.days,
        scenario.held_back,
        notes=("no good class: every part is defective, and the label says which defect",),
    )
