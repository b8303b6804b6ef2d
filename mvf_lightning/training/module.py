"""The LightningModule: wires the MV-Former model, the training loss (any ``SequenceLoss``),
the optimiser, the learning-rate schedule and logging. Evaluation metrics live in callbacks."""

from __future__ import annotations

import dataclasses
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch

from ..data.contract import TrainingBatches, evaluation_data, training_data
from ..errors import CheckpointError, ConfigError, MissingFileError
from ..evaluation.windows import equal_windows
from ..losses import SequenceLoss, build_loss
from ..models.backbone import BackboneConfig
from ..models.cached_backbone import CachedBackbone, FeatureCacheConfig
from ..models.mvformer import EmbedderConfig, MVFormer
from .exact_resume import seed_training_batch
from .lightning_private import attached_trainer

CHECKPOINT_FORMAT = 1


DEFAULT_LOSS = {"class_path": "mvf_lightning.losses.SCL"}
"""``model.loss`` when none is given: SCL with the paper's settings."""


@dataclass
class OptimizerConfig:
    name: str = "adam"
    """``adam`` or ``adamw``."""
    lr: float = 1e-4
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)


SCHEDULES = ("epoch_cosine", "cosine", "constant")


@dataclass
class SchedulerConfig:
    """Learning-rate schedule, decaying to ``min_lr_ratio * lr``.

    ``epoch_cosine`` (the reference's, used by the paper configs): cosine annealing stepped
    once per epoch with T_max = max_epochs + 1, no warm-up. ``cosine``: linear warm-up, then
    cosine decay, stepped every optimiser step. ``constant``: warm-up, then constant.
    """

    name: str = "cosine"
    """``epoch_cosine``, ``cosine`` or ``constant``."""
    warmup_epochs: float = 1.0
    """Read by ``cosine`` and ``constant`` only."""
    warmup_steps: int | None = None
    """Overrides ``warmup_epochs`` when set."""
    min_lr_ratio: float = 0.0


class WarmupCosine:
    """Learning-rate factor per optimiser step; a plain object so its state checkpoints as
    plain values."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float, cosine: bool):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)
        self.min_ratio = float(min_ratio)
        self.cosine = bool(cosine)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not self.cosine:
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EpochCosine:
    """Learning-rate factor per epoch: cosine annealing over ``t_max`` epochs to ``min_ratio``
    (torch's ``CosineAnnealingLR`` in closed form); a plain object so it checkpoints as plain
    values."""

    def __init__(self, t_max: int, min_ratio: float):
        self.t_max = int(t_max)
        self.min_ratio = float(min_ratio)

    def __call__(self, epoch: int) -> float:
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (
            1 + math.cos(math.pi * epoch / self.t_max)
        )


def _as(cls: type, value: Any, name: str) -> Any:
    """Accept a dataclass instance or a plain dict (as stored in checkpoints)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return dataclasses.replace(value)
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"model.{name}: unknown key(s) {unknown}; valid keys: {sorted(known)}"
            )
        return cls(**value)
    raise ConfigError(
        f"model.{name} must be a {cls.__name__} or a dict, got {type(value).__name__}"
    )


TRAINING_HEADS = ("model.projection.", "loss_head.")
"""State-dict prefixes of the parts only a training loss uses (the projection head, a loss's
own head): evaluation and ``init_from`` do without them."""


class MVFormerModule(pl.LightningModule):
    """MV-Former training: the views of each video -> embeddings (projected, normalised or
    raw, as the loss says) -> the training loss.

    The frozen backbone has ``requires_grad=False``, is left out of the optimiser and out of
    checkpoints; a checkpoint records the backbone's name and weight source instead, and loading
    rebuilds it from there.
    """

    def __init__(
        self,
        backbone: BackboneConfig = BackboneConfig(),
        embedder: EmbedderConfig = EmbedderConfig(),
        loss: SequenceLoss = DEFAULT_LOSS,
        optimizer: OptimizerConfig = OptimizerConfig(),
        scheduler: SchedulerConfig = SchedulerConfig(),
        init_from: str | None = None,
        step_seed: int | Literal["auto"] | None = "auto",
        eval_max_frames: int = 1000,
        max_nonfinite_steps: int = 10,
        feature_cache: FeatureCacheConfig = FeatureCacheConfig(),
    ) -> None:
        """
        Args:
            backbone: frozen image model and its weights.
            embedder: the trainable MV-Former (or late-fusion) part.
            loss: training loss and only its own settings, e.g. ``{class_path: TCC,
                init_args: {temperature: 0.1}}`` (see ``mvf_lightning.losses``); it decides
                the embedding it sees (a projection head is built only for ``projected``),
                the training batches (through the DataModule) and any head of its own.
            optimizer: Adam / AdamW settings.
            scheduler: per-epoch cosine (the reference's) or warm-up and per-step cosine.
            init_from: checkpoint of another run whose trainable weights start this one (no
                optimiser state), e.g. Kinetics-400 pretraining before Penn Action.
            step_seed: reseed torch's RNG from (seed, epoch, batch, rank) before each training
                batch is augmented, so that a resumed run repeats an uninterrupted one exactly
                (augmentation and dropout); ``auto``: the seed is ``seed_everything``'s (0
                without one); ``None`` disables it.
            eval_max_frames: longest sequence embedded in one pass during evaluation; longer
                videos are cut into equal windows.
            max_nonfinite_steps: a step whose loss is NaN or infinite is skipped (no update,
                counted in ``train/skipped_steps``); training stops when more than this many
                steps in a row are non-finite (0: stop at the first).
            feature_cache: where frozen-backbone features of evaluation videos are kept
                (``mode: off | memory | disk | both``); not a hyperparameter of the model.
        """
        super().__init__()
        self.backbone_config = _as(BackboneConfig, backbone, "backbone")
        self.embedder_config = _as(EmbedderConfig, embedder, "embedder")
        self.loss = build_loss(loss)
        self.optimizer_config = _as(OptimizerConfig, optimizer, "optimizer")
        self.scheduler_config = _as(SchedulerConfig, scheduler, "scheduler")
        if self.optimizer_config.name not in ("adam", "adamw"):
            raise ConfigError(
                f"model.optimizer.name={self.optimizer_config.name!r}: use adam|adamw"
            )
        if self.scheduler_config.name not in SCHEDULES:
            raise ConfigError(
                f"model.scheduler.name={self.scheduler_config.name!r}: use {'|'.join(SCHEDULES)}"
            )
        if eval_max_frames < 1:
            raise ConfigError(f"model.eval_max_frames must be >= 1, got {eval_max_frames}")
        if max_nonfinite_steps < 0:
            raise ConfigError(f"model.max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}")
        if not (step_seed is None or step_seed == "auto" or isinstance(step_seed, int)):
            raise ConfigError(f"model.step_seed must be an int, auto or null, got {step_seed!r}")
        self.save_hyperparameters(
            {
                "backbone": dataclasses.asdict(self.backbone_config),
                "embedder": dataclasses.asdict(self.embedder_config),
                "loss": self.loss.config(),
                "optimizer": {
                    **dataclasses.asdict(self.optimizer_config),
                    "betas": list(self.optimizer_config.betas),
                },
                "scheduler": dataclasses.asdict(self.scheduler_config),
                "init_from": init_from,
                "step_seed": step_seed,
                "eval_max_frames": eval_max_frames,
                "max_nonfinite_steps": max_nonfinite_steps,
            }
        )
        self.model = MVFormer(
            self.backbone_config, self.embedder_config,
            projection=self.loss.embedding == "projected",
        )
        self.loss_head = self.loss.head(self.embedder_config.embedding_dim)
        """A trainable module of the loss's own (Classification's classifier), or None."""
        self._step_seed = step_seed
        self.eval_max_frames = eval_max_frames
        self.init_from = init_from
        self.max_nonfinite_steps = max_nonfinite_steps
        self.skipped_steps = 0
        """Training steps skipped for a non-finite loss since this process started."""
        self._nonfinite_in_a_row = 0
        self._drop_gradients = False
        self.cached_backbone = CachedBackbone(
            self.model.backbone, _as(FeatureCacheConfig, feature_cache, "feature_cache")
        )
        """The backbone on the evaluation path, reusing features of videos seen before."""

    def setup(self, stage: str) -> None:
        # Applied at fit start unless resuming, so rebuilding from a checkpoint never re-reads it.
        if stage == "fit" and self.init_from and self.trainer.ckpt_path is None:
            self.load_trainable_weights(self.init_from)

    # ------------------------------------------------------------------ forward / steps
    def forward(self, frames: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``frames [B, T, 3, H, W]`` -> L2-normalised frame embeddings ``[B, T, E]``."""
        return MVFormer.normalize(self.model(frames, valid)["embeddings"])

    def training_batches(self) -> TrainingBatches:
        """What the loss needs its training batches to hold (the DataModule follows it)."""
        return self.loss.batches()

    def loss_input(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The embedding the loss is computed on: projected, L2-normalised or raw."""
        if self.loss.embedding == "projected":
            return self.model.project(embeddings)
        if self.loss.embedding == "normalized":
            return MVFormer.normalize(embeddings)
        return embeddings

    # ------------------------------------------------------------------ exact resume
    @property
    def step_seed(self) -> int | None:
        """The seed of :func:`seed_training_batch`: ``model.step_seed``, for ``auto``
        ``seed_everything``'s (Lightning keeps it in ``PL_GLOBAL_SEED``) or 0."""
        if self._step_seed == "auto":
            return int(os.environ.get("PL_GLOBAL_SEED", 0))
        return self._step_seed

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Before the DataModule augments the batch on the device: augmentation and dropout of
        # each training batch then depend only on its position, so a resumed fit repeats.
        trainer = attached_trainer(self)
        if self.step_seed is not None and trainer is not None and trainer.training:
            seed_training_batch(self.trainer, self.step_seed, self.global_rank)
            self._batch_seeded = True
        return batch

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if (
            self.step_seed is not None
            and attached_trainer(self) is not None
            and not getattr(self, "_batch_seeded", False)
        ):
            # A DataModule's own on_before_batch_transfer replaced ours: seed before the step.
            seed_training_batch(self.trainer, self.step_seed, self.global_rank)
        self._batch_seeded = False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, masks = batch["frames"], batch["masks"]
        if frames.dim() != 6:
            raise ValueError(
                f"training batch 'frames' must be [B, V, T, 3, H, W], got {tuple(frames.shape)}"
            )
        b, v, t = frames.shape[:3]
        out = self.model(frames.flatten(0, 1), masks.flatten(0, 1))
        z = self.loss_input(out["embeddings"]).view(b, v, t, -1)
        extras = {}
        if self.loss.batches().labels:
            extras["labels"] = batch.get("labels")
        if self.loss_head is not None:
            extras["head"] = self.loss_head
        loss = self.loss(z, batch["steps"], batch["seq_lens"], masks, **extras)
        if self._skip_nonfinite(loss):
            # Every rank still runs a backward pass (DDP needs it), of a loss whose gradients
            # are zero; on_before_optimizer_step then drops them so the optimiser skips the step.
            self._drop_gradients = True
            return sum(p.sum() for p in self.trainable_parameters()) * 0.0
        self.log("train/loss", loss, prog_bar=True, batch_size=b, sync_dist=False)
        return loss

    def _skip_nonfinite(self, loss: torch.Tensor) -> bool:
        """Whether any rank's loss is NaN or infinite (then every rank skips the step); counts
        and logs skipped steps, and stops training when they persist."""
        nonfinite = not bool(torch.isfinite(loss))
        if attached_trainer(self) is not None and self.trainer.world_size > 1:
            nonfinite = self.trainer.strategy.reduce_boolean_decision(nonfinite, all=False)
        if nonfinite:
            self.skipped_steps += 1
            self._nonfinite_in_a_row += 1
            if self._nonfinite_in_a_row > self.max_nonfinite_steps:
                raise FloatingPointError(
                    f"training loss is {loss.item()} at step {self.global_step}: "
                    f"{self._nonfinite_in_a_row} non-finite losses in a row, more than "
                    f"model.max_nonfinite_steps={self.max_nonfinite_steps} allows; lower the "
                    "learning rate, check the data, or raise model.max_nonfinite_steps"
                )
        else:
            self._nonfinite_in_a_row = 0
        self.log("train/skipped_steps", float(self.skipped_steps), reduce_fx="max",
                 batch_size=1, sync_dist=False)
        return nonfinite

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip the step of a non-finite loss: with no gradients the optimiser changes nothing
        (no update, no moment or step-count change; a gradient scaler has already unscaled)."""
        if self._drop_gradients:
            self._drop_gradients = False
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None

    def on_train_epoch_end(self) -> None:
        """Report training videos that failed to decode and were skipped (the DataModule
        keeps the list; training stops only past its ``max_broken_fraction``)."""
        data = training_data(self.trainer)
        broken = list(data.broken_videos) if data is not None else []
        count = torch.tensor(float(len(broken)), device=self.device)
        self.log("train/broken_videos", count, reduce_fx="sum", sync_dist=True)
        if broken:
            listing = "\n  ".join(broken[:20]) + ("\n  ..." if len(broken) > 20 else "")
            print(
                f"[rank {self.global_rank}] epoch {self.current_epoch}: {len(broken)} training "
                f"video(s) failed to decode and were skipped:\n  {listing}",
                flush=True,
            )

    @torch.no_grad()
    def embed_features(
        self, tokens: torch.Tensor, cls: torch.Tensor | None, return_attention: bool = False
    ) -> dict:
        """Backbone features of one whole video (``tokens [N, S, C]``, ``cls [N, C]``) ->
        normalised ``embeddings [N, E]``: whole if N <= ``eval_max_frames``, else in equal
        windows of at most that many frames, each with its own interpolated positions."""
        embs, attns = [], []
        for window in equal_windows(tokens.shape[0], self.eval_max_frames):
            out = self.model.embedder(
                tokens[window].unsqueeze(0),
                None if cls is None else cls[window].unsqueeze(0),
                return_attention=return_attention,
            )
            embs.append(MVFormer.normalize(out["embeddings"][0]))
            if out["attention"] is not None:
                attns.append(out["attention"][0])
        return {
            "embeddings": torch.cat(embs),
            "attention": torch.cat(attns) if attns else None,
        }

    @torch.no_grad()
    def embed_video(self, frames: torch.Tensor, return_attention: bool = False) -> dict:
        """Whole-video embedding: ``frames [N, 3, H, W]`` -> ``embeddings [N, E]`` (normalised)."""
        tokens, cls = self.model.backbone_features(frames.unsqueeze(0))
        return self.embed_features(tokens[0], None if cls is None else cls[0], return_attention)

    def input_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the frames the frozen backbone expects (timm's data config);
        the DataModule normalises with it unless told otherwise."""
        return tuple(self.model.backbone.mean), tuple(self.model.backbone.std)

    @torch.no_grad()
    def video_attention(self, frames: torch.Tensor) -> tuple[np.ndarray, tuple[int, int]] | None:
        """LSTP attention of every entity token over the backbone's feature grid for a whole
        video (``frames [N, 3, S, S]``, normalised), in evaluation mode and the trainer's
        precision: ``(attention [N, K, h * w], (h, w))``; None for an embedder without it."""
        trainer = attached_trainer(self)
        plugin = trainer.precision_plugin if trainer is not None else None
        x = frames.to(self.device)
        was_training = self.training
        self.eval()
        try:
            with plugin.forward_context() if plugin is not None else nullcontext():
                out = self.embed_video(plugin.convert_input(x) if plugin is not None else x,
                                       return_attention=True)
        finally:
            self.train(was_training)
        if out.get("attention") is None:
            return None
        grid = tuple(int(g) for g in self.model.backbone.feature_grid(*frames.shape[-2:]))
        return out["attention"].float().cpu().numpy(), grid

    def _eval_step(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch.get("broken") is True:  # failed to decode: passed on, never embedded
            return dict(batch)
        data = evaluation_data(attached_trainer(self))
        fingerprint = data.eval_fingerprint() if data is not None else None
        tokens, cls = self.cached_backbone(batch["frames"], batch, fingerprint)
        out = self.embed_features(tokens, cls)
        return {**{k: v for k, v in batch.items() if k != "frames"}, **out}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._eval_step(batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._eval_step(batch)

    # ------------------------------------------------------------------ optimisation
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict:
        cfg = self.optimizer_config
        opt_cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
        optimizer = opt_cls(
            self.trainable_parameters(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            betas=tuple(cfg.betas),
        )
        sched = self.scheduler_config
        if sched.name == "epoch_cosine":
            epochs = self.trainer.max_epochs
            if epochs is None or epochs < 1:
                raise ConfigError(
                    "model.scheduler.name=epoch_cosine steps once per epoch and needs "
                    f"trainer.max_epochs >= 1, got {epochs}"
                )
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, EpochCosine(epochs + 1, sched.min_lr_ratio)
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1},
            }
        total = int(self.trainer.estimated_stepping_batches)
        if sched.warmup_steps is not None:
            warmup = sched.warmup_steps
        else:
            epochs = self.trainer.max_epochs if self.trainer.max_epochs not in (None, -1) else 1
            warmup = round(sched.warmup_epochs * total / max(epochs, 1))
        schedule = WarmupCosine(warmup, total, sched.min_lr_ratio, sched.name == "cosine")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    # ------------------------------------------------------------------ checkpoints
    def _frozen_keys(self) -> set[str]:
        return set(self.model.backbone.frozen_state_keys(prefix="model.backbone."))

    def backbone_identity(self) -> dict:
        """The frozen backbone's name, weight source, blocks and unfrozen stages: what a
        checkpoint records in place of the backbone's weights."""
        cfg = self.backbone_config
        return {
            "name": cfg.name,
            "pretrained": self.model.backbone.weight_source,
            "blocks": list(self.model.backbone.blocks),
            "unfreeze_last": cfg.unfreeze_last,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        frozen = self._frozen_keys()
        state = checkpoint["state_dict"]
        for key in [k for k in state if k in frozen]:
            del state[key]
        checkpoint["mvf_lightning"] = {
            "format": CHECKPOINT_FORMAT,
            "backbone": self.backbone_identity(),
            "trainable_shapes": {k: list(v.shape) for k, v in state.items()},
        }

    def _check_compatible(
        self, state: dict[str, torch.Tensor], source: str, heads: bool = True
    ) -> None:
        """Raise unless ``state`` holds this model's trainable tensors with their shapes
        (``heads=False``: the training heads, :data:`TRAINING_HEADS`, are not compared)."""
        frozen = self._frozen_keys()

        def kept(key: str) -> bool:
            return key not in frozen and (heads or not key.startswith(TRAINING_HEADS))

        own = {k: v for k, v in self.state_dict().items() if kept(k)}
        theirs = {k: v for k, v in state.items() if kept(k)}
        missing = sorted(set(own) - set(theirs))
        unexpected = sorted(set(theirs) - set(own))
        wrong = sorted(k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape)
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
            if wrong:
                k = wrong[0]
                parts.append(
                    f"{len(wrong)} with other shapes (e.g. {k}: checkpoint "
                    f"{tuple(theirs[k].shape)}, model {tuple(own[k].shape)})"
                )
            raise CheckpointError(
                f"checkpoint {source} was made by a different architecture than the configured "
                f"model: tensors " + "; ".join(parts)
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("mvf_lightning")
        if meta is None:
            raise CheckpointError("not an mvf_lightning checkpoint (no 'mvf_lightning' entry)")
        theirs = meta.get("backbone", {})
        if theirs.get("name") != self.backbone_config.name:
            raise CheckpointError(
                f"checkpoint was trained on backbone {theirs.get('name')!r} but the model is "
                f"configured with {self.backbone_config.name!r}"
            )
        if theirs.get("pretrained") != self.model.backbone.weight_source:
            import warnings

            warnings.warn(
                f"checkpoint's backbone weights came from {theirs.get('pretrained')!r}; this "
                f"model loaded {self.model.backbone.weight_source!r}",
                stacklevel=2,
            )
        state = checkpoint["state_dict"]
        fitting = getattr(getattr(attached_trainer(self), "state", None), "fn", None) == "fit"
        # Resuming a fit needs every tensor; evaluating needs no training head, so a
        # checkpoint whose loss had other heads (e.g. from before TCC trained without the
        # projection head) still embeds and aligns.
        self._check_compatible(state, "being loaded", heads=fitting)
        own = self.state_dict()
        for key in [k for k in state if k.startswith(TRAINING_HEADS) and k not in own]:
            del state[key]
        for key in self._frozen_keys() | {k for k in own if k.startswith(TRAINING_HEADS)}:
            state.setdefault(key, own[key])

    @classmethod
    def from_settings(
        cls, settings: dict[str, Any], checkpoint: dict[str, Any] | None = None
    ) -> MVFormerModule:
        """The module built from its model settings (a checkpoint's ``hyper_parameters`` or a
        config's ``model`` section), with a checkpoint's weights if given (checked to fit)."""
        module = cls(**settings)
        if checkpoint is not None:
            module.on_load_checkpoint(checkpoint)
            module.load_state_dict(checkpoint["state_dict"])
        return module

    def load_trainable_weights(self, path: str | Path) -> None:
        """Start from another run's trainable weights (no optimiser, schedule or epoch); the
        training heads only where both runs' losses have the same ones."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise MissingFileError(f"model.init_from: checkpoint not found: {path}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as e:
            raise CheckpointError(
                f"model.init_from: {path} is not a readable checkpoint (truncated or not a torch "
                f"file: {str(e).splitlines()[0] if str(e) else type(e).__name__})"
            ) from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise CheckpointError(f"model.init_from: {path} is not a Lightning checkpoint")
        frozen = self._frozen_keys()
        own = self.state_dict()
        # Training heads come along where this loss has them too (K400 -> Penn Action with
        # SCL), and are left as built where it does not (e.g. SCL pretraining, then TCC).
        state = {
            k: v for k, v in ckpt["state_dict"].items()
            if k not in frozen
            and (not k.startswith(TRAINING_HEADS) or (k in own and own[k].shape == v.shape))
        }
        self._check_compatible(state, str(path), heads=False)
        self.load_state_dict(state, strict=False)
