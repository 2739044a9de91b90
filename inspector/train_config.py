"""What shapes a training run, and how long it trains: plain settings, no TensorFlow, so
the API validates a training request without loading TensorFlow.

:class:`TrainConfig` is everything that changes a run's result (it is part of the run
key). :func:`plan_training` turns it, the number of training images and of classes into
steps: an epoch is one pass over the training images, but never fewer than
``min_steps / epochs`` steps, because 50 images in batches of 16 are 4 steps an epoch, and
120 steps do not teach a network from scratch to find a 2-pixel pit; and a first run
trains at least ``min_steps_per_class`` steps for each class, because
each class gets a share of every balanced batch, and five classes in 1,000 steps were still
being told apart when the run ended. Defaults are chosen in BENCHMARKS.md ("Real lines",
what was tried) on KolektorSDD, NEU and the simulator, never per line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inspector.datasets import SplitPolicy

# Kept in step with inspector.modeling.ARCHITECTURES (a test checks), so a request for an
# unknown architecture is refused without loading TensorFlow.
Architecture = Literal["fcn16", "compact_cnn", "mobilenet_v3_small"]


class AugmentConfig(BaseModel):
    """Augmentation switches (see :class:`inspector.model_input.Augmentation`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flip: bool = True
    rotation: float = Field(0.03, ge=0, le=0.5)
    shift: float = Field(0.1, ge=0, le=0.5)
    zoom: float = Field(0.0, ge=0, le=1)
    brightness: float = Field(0.15, ge=0, le=1)
    contrast: float = Field(0.15, ge=0, le=1)


class TrainConfig(BaseModel):
    """Everything that shapes a run's result (and so its run key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Architecture = "fcn16"
    # The canvas's longer side in pixels; None: chosen from the training images and the
    # pixel budget (inspector.model_input.choose_input). A warm start keeps its parent's.
    image_size: int | None = Field(None, ge=32, le=1024)
    channels: Literal[1, 3] | None = Field(None, description="None: 1 when every image is grey")
    # The canvas's pixels × the samples of the steps the images and min_steps ask for
    # (the class floor adds steps at that canvas: more classes take longer, not smaller).
    # Only lines whose images are larger than it allows feel it: KolektorSDD's 500×1254
    # parts get 688×272 at 3·10⁹ (560×224 at 2·10⁹): seeds 0-4 let 2 of 65 held-back cracks
    # pass instead of 6 (AUROC 0.99-1.00 instead of 0.93-1.00) and rejected 27 of 495 good
    # parts instead of 17, in 460-525 s instead of 280-400 s here; a verdict costs 1.33×
    # (BENCHMARKS.md, "A larger canvas for large parts"). NEU and the simulator's parts
    # train at their native size either way.
    pixel_budget: float = Field(
        3.0e9, gt=0, description="canvas pixels × training samples a first run may spend"
    )
    batch_size: int = Field(16, ge=1, le=1024)
    epochs: int = Field(30, ge=1, le=1000)
    min_steps: int = Field(1000, ge=1, description="a first run trains at least this many steps")
    # A first run from scratch trains at least this many steps per class. On sim-small's
    # five classes 1,000 steps left the training accuracy climbing at 0.83 and one class
    # unlearnt (held back 84 %); 2,000 steps at the same canvas: 97 % (BENCHMARKS.md,
    # "Steps per class"). With two classes min_steps decides. On NEU (no good class) the
    # floor once made the next warm start forget; since the new classes' calibration it
    # gives the better day 1 and day 2 ("NEU's first run with the class floor").
    min_steps_per_class: int = Field(400, ge=0)
    fine_tune_epochs: int = Field(12, ge=1, le=1000)
    fine_tune_min_steps: int = Field(300, ge=1)
    # The wall time a run may take, from its start to its version, in minutes; 0: no limit.
    # Where the epochs measured so far say the fit would overrun it, the run trains fewer
    # epochs (the cosine decay ends with them) instead of taking longer: the same data
    # trains the same model on a machine fast enough, a shorter one on a slower machine
    # (the version says so). On a 2-core Zen 3 KolektorSDD's run took 853 s; 18 of its 30
    # epochs gave AUROC 0.945 against 0.981 (BENCHMARKS.md, "A time budget for slower
    # machines").
    time_budget_minutes: float = Field(9.5, ge=0)
    # Which weights a run keeps. "best_epoch": the epoch with the lowest validation loss
    # (early stopping, inspector.trainer_callbacks.EarlyStop); "last": the last epoch's
    # unless the run stopped early; "average": the mean of the weights at the end of each
    # epoch over the last ``1 - average_from`` of the planned epochs (stochastic weight
    # averaging, AverageWeights): the run goes its whole schedule, without early stopping.
    # ``keep_weights`` is for first runs and warm starts, ``refit_keep_weights`` for a
    # refit (a warm start that did not learn trained again on every image): averaged,
    # sim-small's second day was blessed on three seeds of three instead of one; first
    # runs averaged were no better on KolektorSDD and worse on NEU (BENCHMARKS.md,
    # "Averaged weights").
    keep_weights: Literal["average", "best_epoch", "last"] = "best_epoch"
    refit_keep_weights: Literal["average", "best_epoch", "last"] = "average"
    average_from: float = Field(0.5, gt=0, lt=1)
    # Early stopping ("best_epoch" or "last"): epochs without a better
    # validation loss before the run stops.
    patience: int = Field(10, ge=1)
    # Batch-norm statistics lag in the first epochs, when the validation loss of a still
    # uniform model can look best: early stopping watches only from this epoch on.
    early_stopping_from_epoch: int = Field(10, ge=0)
    # The optimizer's exponential moving average of the weights, which replaces them at
    # the end of the run (Keras' use_ema); 0: off. Only with keep_weights and
    # refit_keep_weights "last": the best epoch is judged on the raw weights.
    ema_momentum: float = Field(0.0, ge=0, lt=1)
    # A version judges each part by its logits averaged over this many views: 1 the image
    # alone, 2 also turned 180°, 4 also mirrored left-right and up-down (the flips training
    # draws; 1 where augmentation has no flips). In the SavedModel and the TFLite file alike;
    # a verdict costs that many forward passes.
    test_time_flips: Literal[1, 2, 4] = 4
    learning_rate: float = Field(2e-3, gt=0, le=1)
    # cosine: two epochs of linear warm-up to the learning rate, then cosine decay to 1 %
    # of it over the remaining epochs; constant: no schedule.
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    fine_tune_learning_rate: float = Field(1e-3, gt=0, le=1)
    # A warm start keeps this many of the trunk's convolutions (from the input on, with
    # their batch norms) as its parent trained them: they see a few pixels each, what every
    # defect type shares, and leaving them out of the backward pass halves a step's cost.
    fine_tune_frozen: int = Field(3, ge=0, le=100)
    replay_per_class: int = Field(200, ge=0)
    # How often each class is drawn into a batch: balanced = equally, whatever its count.
    sampling: Literal["balanced", "sqrt", "natural"] = "balanced"
    # The validation loss (which early stopping watches): every image alike ("uniform"),
    # or each weighted as training draws its class ("sampling": with balanced sampling a
    # line's few defects count as much as its many good parts). "sampling" on KolektorSDD
    # seeds 0-2: no better ranking, and seed 2's first model refused by the gate
    # (BENCHMARKS.md, "The threshold on kept scores, ...").
    validation_weights: Literal["uniform", "sampling"] = "uniform"
    # Log-sum-exp sharpness of the defect classes' pooling (1: near the mean; 20: near
    # the maximum over the class map).
    pooling_sharpness: float = Field(4.0, gt=0, le=100)
    # The share of good training parts that get a twin with a synthetic defect drawn in,
    # whose cells the trunk learns to find and which the classes must call defective
    # (inspector.synthetic_defects); 0: off. No effect on a line without a good class.
    synthetic_defects: float = Field(0.5, ge=0, le=1)
    # The share of those twins whose defect is a soft blob 4-16 px in radius (a stain, a
    # dent) instead of a dot or a stroke. Without blobs, five classes from scratch on
    # sim-small stayed near chance (held back 21 %; stains 52 %); with a third of the twins
    # blobs, 90 % (stains 90 %). On KolektorSDD the luck of the seed moves the result more
    # than the blobs do (BENCHMARKS.md, "Blobs and the fallback by default").
    synthetic_blobs: float = Field(0.33, ge=0, le=1)
    # A twin judged below this P(defect) no longer pulls the classes (its loss is capped at
    # −log of it): one the model cannot see. On KolektorSDD about 45 % of the twins stay
    # unseen (those under 2-3 times the part's spread), and asking for them lifted every
    # good part's P(defect) (median 0.10; with 0.2: 0.013). 0: every twin pulls
    # (BENCHMARKS.md, "Twins the model cannot see").
    twin_give_up: float = Field(0.2, ge=0, lt=1)
    # A warm start that recalls fewer than this share of the (unaugmented) training images
    # of a class new to its parent trains again on every image in the same run (below);
    # 0: off. A warm start does not learn a stain that a run from scratch with blobs
    # learns (the section named above).
    new_class_recall: float = Field(0.8, ge=0, le=1)
    # A warm start that recalls fewer than this share of the (unaugmented) training images
    # of a class its parent knew (its replayed images) has forgotten it, and trains again
    # the same way; 0: off. On NEU's second day (seed 2) the warm start recalled crazing
    # on 67 % of its replayed images (judged rolled-in scale, new that day): the gate
    # refused it (96.6 %, crazing forgotten by 8.6 pp); trained again, 99.8 %, nothing
    # forgotten, blessed (BENCHMARKS.md, "A warm start that forgot trains again").
    kept_class_recall: float = Field(0.8, ge=0, le=1)
    # What that second run starts from, on every labelled image with a first run's plan:
    # the parent's weights shrunk and perturbed (0.4 × the parent's + 0.1 × a fresh
    # initialisation: Ash and Adams, "On warm-starting neural network training", NeurIPS
    # 2020), or random weights ("scratch"). On sim-small's second day the shrunk parent
    # learnt the stains and kept the old classes (held back 99.3 %, no escape of 72, 2 of
    # 208 good parts rejected, blessed) where a run from scratch did not keep them (97.1 %,
    # 2 / 72, 5 / 208, refused), and the parent's weights as they are did not learn the
    # stains at all (BENCHMARKS.md, "Shrink and perturb").
    fallback: Literal["shrink_perturb", "scratch"] = "shrink_perturb"
    # A warm start that learnt its new classes moves their logits by the one offset that
    # fits its validation images best (inspector.calibration): it comes out favouring
    # them. On NEU's second day, seeds 0-2: held back 98.3 → 99.1, 98.5 → 98.9,
    # 96.1 → 96.6 % (BENCHMARKS.md, "A warm start's new classes, calibrated").
    calibrate_new_classes: bool = True
    # A warm start that adds classes can also learn to answer as its parent did over the
    # parent's classes (inspector.distillation: Li and Hoiem's "learning without
    # forgetting"): the weight of that loss beside the labels' and the temperature that
    # softens both answers. Off (0) by default: at 1.0 on NEU's second day it kept the old
    # classes' answers among themselves, but lowered the accuracy on every seed and forgot
    # more on two of three (BENCHMARKS.md, "Learning without forgetting").
    distillation: float = Field(0.0, ge=0, le=100)
    distillation_temperature: float = Field(2.0, gt=0, le=20)
    target_escape_rate: float = Field(0.01, gt=0, lt=1)
    # With too few defective validation images to estimate the escape rate, the threshold
    # rejects at most this share of the good validation parts (inspector.thresholds);
    # 0: off. On KolektorSDD catching one hard validation crack at any price rejected up
    # to half of the unseen good parts (BENCHMARKS.md, "Test-time flips").
    false_reject_ceiling: float = Field(0.05, ge=0, lt=1)
    min_images_per_class: int = Field(5, ge=1)
    heldout_fraction: float = Field(0.2, gt=0, lt=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    augmentation: AugmentConfig = AugmentConfig()
    seed: int = 0
    weights_path: str | None = Field(None, description="local Keras weights file for a fresh model")
    tflite_quantize: bool = True
    warmup_images: int = Field(8, ge=1, le=64)
    divergence_factor: float = Field(20.0, gt=1)

    @model_validator(mode="after")
    def _averaged_weights_are_kept(self) -> TrainConfig:
        if self.ema_momentum > 0 and {self.keep_weights, self.refit_keep_weights} != {"last"}:
            raise ValueError(
                "ema_momentum needs keep_weights='last' and refit_keep_weights='last': "
                "the best epoch is judged on the raw weights, and Keras' moving average "
                "would replace an average of epochs"
            )
        return self

    @property
    def judging_flips(self) -> int:
        """The views a version judges with: the image alone where training drew no flips
        (the flipped views would be parts the model never saw)."""
        return self.test_time_flips if self.augmentation.flip else 1

    @property
    def split_policy(self) -> SplitPolicy:
        """The snapshot's split."""
        return SplitPolicy(self.heldout_fraction, self.validation_fraction)


@dataclass(frozen=True)
class TrainingPlan:
    """How long a run trains; ``budget_steps``: the steps its canvas is chosen for (the
    images' and ``min_steps``', without the class floor)."""

    steps_per_epoch: int
    epochs: int
    learning_rate: float
    budget_steps: int = 0

    @property
    def steps(self) -> int:
        """All steps of the run."""
        return self.steps_per_epoch * self.epochs

    def budget_samples(self, batch_size: int) -> int:
        """The training samples the pixel budget is divided by."""
        return (self.budget_steps or self.steps) * batch_size

    def to_doc(self) -> dict[str, Any]:
        """As stored in the version document."""
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
        }


def plan_training(
    config: TrainConfig, train_images: int, *, fine_tune: bool, classes: int = 2
) -> TrainingPlan:
    """Steps per epoch and epochs for ``train_images`` images of ``classes`` classes (0:
    no class floor; see the module docstring)."""
    epochs = config.fine_tune_epochs if fine_tune else config.epochs
    floor = config.fine_tune_min_steps if fine_tune else config.min_steps
    base = max(math.ceil(train_images / config.batch_size), math.ceil(floor / epochs), 1)
    per_class = 0 if fine_tune else config.min_steps_per_class * classes
    per_epoch = max(base, math.ceil(per_class / epochs))
    rate = config.fine_tune_learning_rate if fine_tune else config.learning_rate
    return TrainingPlan(per_epoch, epochs, rate, budget_steps=base * epochs)


def config_from_settings(settings: Any, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The settings' training defaults (``INSPECTOR_TRAIN_*``, ``INSPECTOR_TARGET_ESCAPE_RATE``)
    with ``overrides``; raises pydantic's ValidationError on a bad override."""
    base = {
        "architecture": settings.train_architecture,
        "image_size": settings.train_image_size,
        "channels": settings.train_channels,
        "epochs": settings.train_epochs,
        "target_escape_rate": settings.target_escape_rate,
    }
    return TrainConfig(**{**base, **(overrides or {})})
