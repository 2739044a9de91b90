"""The synthetic production line: its parts, its mix, their encoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector import images, simulate
from inspector.records import DEFAULT_CLASSES
from inspector.simulate import CLASSES, SURFACES, LineSimulator, encode, parse_mix

# --- the line ---------------------------------------------------------------------------


def test_classes_are_the_vocabulary_and_the_default_mix_is_mostly_ok():
    assert tuple(DEFAULT_CLASSES) == CLASSES
    assert set(simulate.DEFAULT_MIX) == set(CLASSES)
    assert sum(simulate.DEFAULT_MIX.values()) == pytest.approx(1)
    assert simulate.DEFAULT_MIX["ok"] > 0.5


def test_the_same_seed_gives_the_same_parts_and_another_seed_others():
    def run(seed: int) -> list[simulate.SimulatedPart]:
        return list(LineSimulator(size=64, seed=seed).parts(6))

    first, again, other = run(7), run(7), run(8)
    assert [(p.label, p.surface) for p in first] == [(p.label, p.surface) for p in again]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("label", CLASSES)
def test_each_class_is_drawn_on_each_surface_with_its_label(label, surface):
    part = LineSimulator(size=96, surfaces=(surface,), seed=3).part(label)
    assert (part.label, part.surface) == (label, surface)
    assert part.image.shape == (96, 96, 3) and part.image.dtype == np.uint8
    assert 20 < part.image.mean() < 235  # a lit part, neither black nor blown out


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("label", [c for c in CLASSES if c != "ok"])
def test_a_defect_is_drawn_and_survives_downscaling_to_64_px(label, surface):
    # The same seed draws the same part under the same light; only the defect differs.
    for seed in range(3):
        clean = LineSimulator(size=256, surfaces=(surface,), seed=seed).part("ok").image
        faulty = LineSimulator(size=256, surfaces=(surface,), seed=seed).part(label).image
        diff = np.abs(clean.astype(np.int16) - faulty.astype(np.int16)).max(axis=2)
        changed = (diff > 20).mean()
        assert 0.0005 < changed < 0.3, f"{label} changed {changed:.2%} of the part"

        def small(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)

        # What a classifier trained on 64x64 images sees: a clear local difference.
        assert np.abs(small(clean) - small(faulty)).max() > 25


@pytest.mark.parametrize("label", ["pit", "scratch", "crack"])
def test_small_defects_are_a_few_pixels_wide_whatever_the_part_size(label):
    for size in ((128, 320), (500, 1260)):  # width × height: tall parts, like commutators
        clean = LineSimulator(size=size, seed=4, defect_size="small").part("ok").image
        faulty = LineSimulator(size=size, seed=4, defect_size="small").part(label).image
        changed = np.abs(clean.astype(np.int16) - faulty.astype(np.int16)).max(axis=2) > 20
        assert changed.any(), f"no {label} drawn"
        ys, xs = np.nonzero(changed)
        # Thin: the defect's pixels lie within a few pixels of a line or a point.
        thin = (
            min(np.ptp(ys), np.ptp(xs)) + 1
            if label == "pit"
            else changed.sum() / max(np.ptp(ys), np.ptp(xs), 1)
        )
        assert thin <= 6, f"{label} is {thin:.1f} px thick at {size}"

        # A model that squashes the part to 64 px loses it: what is left is faint.
        def squashed(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)

        normal = LineSimulator(size=size, seed=4).part(label).image
        faint = np.abs(squashed(clean) - squashed(faulty)).max()
        clear = np.abs(squashed(clean) - squashed(normal)).max()
        assert faint < clear, (label, size, faint, clear)


def test_defect_classes_differ_from_ok_in_their_statistics():
    def edges(label: str) -> float:
        sim = LineSimulator(size=128, seed=11, color=False)
        return float(
            np.mean([cv2.Laplacian(sim.part(label).image, cv2.CV_32F).var() for _ in range(8)])
        )

    ok = edges("ok")
    assert edges("scratch") > ok and edges("crack") > ok


def test_sizes_and_colour_modes_are_honoured():
    assert LineSimulator(size=80, seed=1).part().image.shape == (80, 80, 3)
    assert LineSimulator(size=(120, 50), seed=1).part("crack").image.shape == (50, 120, 3)
    gray = LineSimulator(size=(40, 70), seed=1, color=False).part("stain").image
    assert gray.shape == (70, 40) and gray.dtype == np.uint8


def test_a_megapixel_part_has_every_defect_drawn_to_scale():
    # Speed is measured in bench/, never asserted in tests.
    sim = LineSimulator(size=1000, seed=2)
    ok = sim.part("ok").image.astype(int)
    for label in CLASSES[1:]:
        image = LineSimulator(size=1000, seed=2).part(label).image
        assert image.shape == (1000, 1000, 3)
        assert (abs(image.astype(int) - ok).max(axis=2) > 20).mean() > 0.0002, label


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 8}, "too small"),
        ({"surfaces": ("wood",)}, "metal, plastic"),
        ({"surfaces": ()}, "metal, plastic"),
        ({"mix": {"dent": 1.0}}, "ok, scratch, pit, crack, stain"),
        ({"defect_size": "tiny"}, "normal, small"),
    ],
)
def test_a_simulator_refuses_what_it_cannot_draw(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LineSimulator(**kwargs)
    with pytest.raises(ValueError, match="known classes"):
        LineSimulator().part("dent")


# --- the mix ----------------------------------------------------------------------------


def test_sizes_parse_as_a_side_or_width_by_height():
    from inspector.simulate import parse_size

    assert parse_size("256") == 256 and parse_size("320x128") == (320, 128)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("wide")
    with pytest.raises(ValueError, match="too small"):
        parse_size("320x8")


def test_parse_mix_normalises_and_fills_in_unmentioned_classes():
    assert parse_mix("ok=7, scratch=2,stain=1") == {
        "ok": 0.7,
        "scratch": 0.2,
        "pit": 0.0,
        "crack": 0.0,
        "stain": 0.1,
    }
    assert parse_mix("crack=0.3") == {"ok": 0, "scratch": 0, "pit": 0, "crack": 1.0, "stain": 0}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("ok=0.5,dent=0.5", "'dent'.*known classes are ok, scratch, pit, crack, stain"),
        ("ok=0,scratch=0", "sum to 0"),
        ("", "sum to 0"),
        ("ok=-1,scratch=2", "'ok'.*>= 0"),
        ("ok=nan", "'ok'.*finite"),
        ("ok=lots", "not a number"),
        ("ok", "name=weight"),
        ("ok=1,ok=2", "twice"),
    ],
)
def test_parse_mix_refuses_bad_specs_clearly(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_mix(spec)


def test_labels_follow_the_mix():
    sim = LineSimulator(mix=parse_mix("ok=0.6,scratch=0.3,crack=0.1"), seed=5)
    drawn = [sim.next_label() for _ in range(2000)]
    share = {name: drawn.count(name) / len(drawn) for name in CLASSES}
    assert share["ok"] == pytest.approx(0.6, abs=0.05)
    assert share["scratch"] == pytest.approx(0.3, abs=0.05)
    assert share["crack"] == pytest.approx(0.1, abs=0.03)
    assert share["pit"] == share["stain"] == 0


# --- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("color", [True, False], ids=["bgr", "gray"])
@pytest.mark.parametrize("fmt", images.FORMATS)
def test_every_format_encodes_an_upload_the_api_accepts(fmt, color):
    image = LineSimulator(size=(72, 48), seed=4, color=color).part("pit").image
    data = encode(image, fmt)
    info = images.inspect_upload(data, images.ImageLimits())
    assert (info.format, info.width, info.height) == (fmt, 72, 48)
    assert info.channels == (3 if color else 1)
    if fmt != "jpeg":  # lossless formats give the pixels back
        assert np.array_equal(images.decode(data), image)


def test_encode_refuses_unknown_formats():
    with pytest.raises(ValueError, match="jpeg, png, bmp, tiff"):
        encode(np.zeros((8, 8), np.uint8), "gif")


def test_the_contact_sheet_has_a_tile_per_class_and_sample():
    sheet = simulate.contact_sheet(size=32, samples=1)
    assert sheet.shape == (18 + 32 * len(SURFACES), 32 * len(CLASSES), 3)
