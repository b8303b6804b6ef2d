"""One DataModule per dataset: the :class:`VideoDataModule` settings each dataset fixes
(splits, evaluation sets and protocol, frame window, how to prepare it)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from ..errors import ConfigError
from .datamodules import VideoDataModule
from .demo import DEMO_NUM_PHASES, default_demo_root, ensure_demo_dataset, is_demo_dataset
from .sampling import TimeWindow

__all__ = [
    "DemoDataModule",
    "FineGymDataModule",
    "Kinetics400DataModule",
    "PennActionDataModule",
    "PouringDataModule",
]


class PennActionDataModule(VideoDataModule):
    """Penn Action: one model trained on all 13 actions; one evaluation set per action.

    Index splits ``train`` and ``val`` under ``root``; ``actions`` restricts both.
    Fixed here (and so not in the CLI): ``groups`` (= ``actions``), ``eval_by_group=True``.
    """

    eval_name = "penn"
    stored_size = 224

    prepare_hint = (
        "python -m mvf_lightning prepare penn-action --source <Penn_Action> --labels "
        "<penn_action_labels> --out {root} (from CARL's release: --carl <CARL penn_action> "
        "--trust-pickle instead of --source and --labels)"
    )

    def __init__(self, root: str, actions: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(root=root, groups=actions, eval_by_group=True, **kwargs)


class FineGymDataModule(VideoDataModule):
    """FineGym 99 or 288: splits ``<variant>_train`` / ``<variant>_val``; one evaluation set.

    Views are local windows (``time_window="frames"``: ``ceil(r min(L, T))`` frames at a
    random offset), the reference's FineGym sampling.
    """

    prepare_hint = (
        "python -m mvf_lightning prepare finegym --annotations "
        "<finegym_annotation_info_v1.0.json> --splits-dir <split files> --videos <raw videos> "
        "--out {root} (from CARL's release: --carl <CARL finegym> --trust-pickle instead of "
        "--annotations, --splits-dir and --videos)"
    )

    protocol_settings: ClassVar[dict[str, Any]] = {
        "probe": "sgd", "fractions": (0.1, 0.5, 1.0),  # the reference's SGD probe
    }

    def __init__(
        self,
        root: str,
        variant: Literal["gym99", "gym288"] = "gym99",
        num_frames: int = 240,
        time_window: TimeWindow = "frames",
        **kwargs: Any,
    ) -> None:
        if variant not in ("gym99", "gym288"):
            raise ConfigError(f"FineGym variant must be 'gym99' or 'gym288', got {variant!r}")
        self.variant = variant
        self.eval_name = variant
        self.alignment_stride = 5
        super().__init__(
            root=root,
            train_split=f"{variant}_train",
            eval_train_split=f"{variant}_train",
            eval_val_split=f"{variant}_val",
            eval_by_group=False,
            eval_set_name=variant,
            num_frames=num_frames,
            time_window=time_window,
            **kwargs,
        )


class Kinetics400DataModule(VideoDataModule):
    """Kinetics-400 pretraining: unlabeled split ``train_split`` of ``root``; evaluation on
    Penn Action (one set per action, splits ``train``/``val``) from ``eval_root``, or none
    without it; ``eval_actions`` restricts evaluation to those actions (the reference
    evaluates ``[baseball_pitch]`` only). Missing or undecodable clips are skipped up to
    ``max_broken_fraction`` (default 5%: every real copy has some)."""

    eval_name = "penn"

    prepare_hint = (
        "python -m mvf_lightning prepare kinetics400 --source <kinetics400 folder> --out {root}"
    )

    def __init__(
        self,
        root: str,
        eval_root: str | None = None,
        eval_actions: list[str] | None = None,
        max_broken_fraction: float = 0.05,
        **kwargs: Any,
    ) -> None:
        has_eval = eval_root is not None
        super().__init__(
            root=root,
            eval_root=eval_root,
            eval_train_split="train" if has_eval else None,
            eval_val_split="val" if has_eval else None,
            eval_by_group=True,
            groups=None,
            eval_groups=eval_actions,
            max_broken_fraction=max_broken_fraction,
            **kwargs,
        )

    def hint(self, root: str) -> str:
        if root == self.eval_root and root != self.root:
            return PennActionDataModule.prepare_hint.format(root=root)
        return super().hint(root)


class PouringDataModule(VideoDataModule):
    """Pouring (TCC): splits ``train`` / ``val`` (``eval_val_split="test"`` for the test set);
    one evaluation set, ``pouring``; Kendall's tau and retrieval every 5th frame."""

    eval_name = "pouring"
    alignment_stride = 5
    protocol_settings: ClassVar[dict[str, Any]] = {"fractions": (0.1, 0.5, 1.0)}

    prepare_hint = (
        "python -m mvf_lightning prepare pouring --carl <CARL pouring> --trust-pickle --out {root}"
    )

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(root=root, eval_by_group=False, eval_set_name="pouring", **kwargs)


class DemoDataModule(VideoDataModule):
    """The generated demo dataset (4 phases, 64x64, 24 train + 12 val videos).

    ``root`` defaults to ``$MVF_LIGHTNING_DEMO_ROOT`` or ``~/.cache/mvf_lightning/demo``;
    the data is generated in :meth:`prepare_data` (rank 0) or on first :meth:`setup`.
    """

    eval_name = "demo"
    alignment_stride = 1
    makes_its_data = True

    num_phases = DEMO_NUM_PHASES

    def __init__(
        self,
        root: str | None = None,
        num_frames: int = 32,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=str(root) if root is not None else str(default_demo_root()),
            num_frames=num_frames,
            num_workers=num_workers,
            eval_by_group=False,
            eval_set_name="demo",
            groups=None,
            **kwargs,
        )

    def hint(self, root: str) -> str:
        return f"DemoDataModule(root={root!r}).prepare_data()"

    def prepare_data(self) -> None:
        ensure_demo_dataset(self.root)

    def setup(self, stage: str | None = None) -> None:
        if not is_demo_dataset(self.root):
            ensure_demo_dataset(self.root)  # atomic: safe if several ranks get here
        super().setup(stage)
