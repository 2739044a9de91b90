"""How long a run trains: the floors of inspector.train_config.plan_training."""

from __future__ import annotations

import pytest

from inspector.model_input import ImageShape, choose_input
from inspector.train_config import TrainConfig, plan_training

DEFAULTS = TrainConfig()


@pytest.mark.parametrize(
    ("images", "classes", "fine_tune", "steps", "budget_steps"),
    [
        # Few images: min_steps (1,000 over 30 epochs: 34 a epoch) decides for two classes.
        (200, 2, False, 1020, 1020),
        # Five classes: 400 each, 2,000 steps (67 an epoch); the canvas is chosen for 1,020.
        (200, 5, False, 2010, 1020),
        # Many images: one pass an epoch is more than either floor.
        (3_200, 5, False, 6000, 6000),
        # A warm start has its own floor (300 over 12 epochs) and no class floor.
        (200, 6, True, 300, 300),
    ],
)
def test_a_first_run_trains_at_least_its_floors(images, classes, fine_tune, steps, budget_steps):
    plan = plan_training(DEFAULTS, images, fine_tune=fine_tune, classes=classes)
    assert plan.steps == steps
    assert plan.budget_steps == budget_steps


def test_more_classes_train_longer_at_the_same_canvas():
    shapes = [ImageShape(560, 1400, 1)] * 5
    canvases, steps = [], []
    for classes in (2, 3, 6):
        plan = plan_training(DEFAULTS, 300, fine_tune=False, classes=classes)
        steps.append(plan.steps)
        canvases.append(
            choose_input(
                shapes,
                samples=plan.budget_samples(DEFAULTS.batch_size),
                pixel_budget=DEFAULTS.pixel_budget,
            )
        )
    assert steps[0] < steps[1] < steps[2]
    assert canvases[0] == canvases[1] == canvases[2]


def test_the_class_floor_can_be_turned_off():
    config = TrainConfig(min_steps_per_class=0)
    assert plan_training(config, 200, fine_tune=False, classes=6).steps == 1020
