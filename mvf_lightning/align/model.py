"""The model ``align`` embeds with and the evaluation preprocessing that goes with it, from a
checkpoint (its own hyper-parameters and DataModule settings) or from a config file."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, MissingFileError

__all__ = ["Preprocessing", "file_identity", "load_model"]


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation preprocessing of the DataModule: decode size, then the evaluation crop
    (``resize``: shorter side to ``crop_size`` then centre; ``native``: the centred square)
    and normalisation (``data.augment.EvalTransform``)."""

    crop_size: int = 224
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    decode_size: tuple[int, int] | None = None
    eval_crop: str = "resize"

    @classmethod
    def from_data_settings(cls, settings: dict[str, Any] | None, backbone: Any = None
                           ) -> Preprocessing:
        """From a DataModule's hyper-parameters / ``init_args`` (missing keys: the defaults;
        no ``mean`` / ``std``: the backbone's own, as the DataModule does, else ImageNet's)."""
        from ..data.augment import IMAGENET_MEAN, IMAGENET_STD

        s = dict(settings or {})
        size = s.get("decode_size")
        mean = s.get("mean") or getattr(backbone, "mean", None) or IMAGENET_MEAN
        std = s.get("std") or getattr(backbone, "std", None) or IMAGENET_STD
        return cls(
            crop_size=int(s.get("crop_size") or 224),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            decode_size=None if size is None else (int(size[0]), int(size[1])),
            eval_crop=str(s.get("eval_crop") or "resize"),
        )

    def transform(self):
        from ..data.augment import EvalTransform

        return EvalTransform(crop_size=self.crop_size, mean=self.mean, std=self.std,
                             crop=self.eval_crop)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Path, size and sha256 of a file: what a result was computed from."""
    path = Path(path).resolve()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    if "mvf_lightning" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path}: not an mvf_lightning MV-Former checkpoint (another architecture: no "
            "'mvf_lightning' entry or model hyper-parameters)"
        )
    return ckpt


def load_model(
    ckpt: str | os.PathLike | None = None, config: str | os.PathLike | None = None
) -> tuple[Any, Preprocessing, dict[str, Any]]:
    """``(MVFormerModule in eval mode, preprocessing, identity)``.

    With ``ckpt`` alone the model and preprocessing come from the checkpoint; with
    ``config`` they come from the config (its ``pretrained`` backbone), and a checkpoint
    given too must fit that architecture. The identity records where the weights came from.
    """
    from ..training.module import MVFormerModule

    if ckpt is None and config is None:
        raise ConfigError("align needs --ckpt CHECKPOINT or --config CONFIG (or both)")
    checkpoint = None
    identity: dict[str, Any] = {}
    if ckpt is not None:
        path = Path(ckpt).expanduser()
        checkpoint = _read_checkpoint(path)
        identity["checkpoint"] = file_identity(path)
    if config is not None:
        config = Path(config).expanduser()
        if not config.is_file():
            raise MissingFileError(f"config not found: {config}")
        from ..cli.lightning_cli import config_sections

        model_args, data_args = config_sections(config)
        identity["config"] = file_identity(config)
    else:
        model_args = dict(checkpoint["hyper_parameters"])
        data_args = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    try:
        module = MVFormerModule.from_settings(model_args, checkpoint)
    except (ValueError, RuntimeError) as e:
        if checkpoint is None:
            raise
        raise CheckpointError(f"{ckpt}: {e}".splitlines()[0]) from e
    identity["backbone"] = module.backbone_identity()
    module.eval()
    return module, Preprocessing.from_data_settings(data_args, module.model.backbone), identity
