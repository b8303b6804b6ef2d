"""A training pipeline with the reference implementation's STRUCTURE, for side-by-side timing.

Written from the description in mvformer.md (not copied): the worker decodes the WHOLE video
and then indexes the sampled steps, augments each view on the host in a Python loop
(torchvision transforms on ``[T, 3, H, W]``, one parameter draw per view), and ships float32
frames to the main process; the model runs the frozen ViT over chunks of 40 frames collecting
block outputs, then an embedder with explicit matmul/softmax attention (LSTP and the temporal
encoder), as the reference's modules do. Same sizes and parameter count as ours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mvf_lightning.data.decode import VideoFile


def reference_view_transform(crop_size: int, mean=None, std=None):
    """torchvision's per-view pipeline as the reference composes it (one draw per call)."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(crop_size, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3)),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            v2.RandomApply([v2.GaussianBlur((5, 9), (0.1, 2.0))], p=0.4),
            v2.RandomGrayscale(0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean or (0.485, 0.456, 0.406), std or (0.229, 0.224, 0.225)),
        ]
    )


class ReferenceStyleClips(Dataset):
    """Whole-video decode, then index; per-view host augmentation; float32 output."""

    def __init__(self, index, sampler, crop_size: int, seed: int = 0, mean=None, std=None):
        self.index, self.sampler, self.seed = index, sampler, seed
        self.view_transform = reference_view_transform(crop_size, mean, std)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        record = self.index[i]
        video = VideoFile(self.index.root / record.path)
        every = video.read(np.arange(len(video)))  # [L, H, W, 3]: the whole video
        length = min(len(video), record.num_frames)
        sample = self.sampler(length, np.random.default_rng([self.seed, 0, i]))
        views = []
        for v in range(sample.steps.shape[0]):  # per-view augmentation on the host
            clip = torch.from_numpy(every[sample.steps[v]]).permute(0, 3, 1, 2)
            views.append(self.view_transform(clip))
        return {
            "frames": torch.stack(views),
            "steps": torch.from_numpy(sample.steps.astype(np.int64)),
            "masks": torch.from_numpy(sample.masks),
            "seq_lens": torch.full((sample.steps.shape[0],), length, dtype=torch.int64),
        }


def reference_style_backbone(vit: nn.Module, frames: torch.Tensor, blocks: list[int],
                             chunk: int = 40) -> torch.Tensor:
    """Frozen ViT over chunks of ``chunk`` frames, block outputs collected in a Python loop
    and concatenated on channels, CLS dropped -> ``[N, S, C * len(blocks)]``."""
    outs = []
    with torch.no_grad():
        for part in frames.split(chunk):
            x = vit.patch_embed(part)
            x = vit._pos_embed(x)
            x = vit.norm_pre(x)
            kept = []
            for i, block in enumerate(vit.blocks):
                x = block(x)
                if i in blocks:
                    kept.append(x[:, vit.num_prefix_tokens:])
                if i >= max(blocks):
                    break
            outs.append(torch.cat(kept, dim=-1))
    return torch.cat(outs)


class _ExplicitAttentionLayer(nn.Module):
    """Pre-norm encoder layer with attention written as matmul + softmax (no SDPA)."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.ReLU(), nn.Linear(ff, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if key_valid is not None:
            scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
        attn = scores.softmax(-1)
        x = x + self.drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class ReferenceStyleEmbedder(nn.Module):
    """LSTP (explicit attention) -> one-hot identity -> MLP -> positions -> encoder -> first
    token -> embedding, plus the projection head; Penn Action sizes by default."""

    def __init__(self, in_dim: int, k: int = 3, pool: int = 384, hidden: int = 256,
                 capacity: int = 2, layers: int = 3, heads: int = 8, ff: int = 1024,
                 emb: int = 128, proj: int = 128, train_len: int = 80, dropout: float = 0.1):
        super().__init__()
        self.k, self.hidden, self.train_len = k, hidden, train_len
        self.query = nn.Parameter(torch.empty(1, k, pool).uniform_(-(k * pool) ** -0.5,
                                                                  (k * pool) ** -0.5))
        self.query_bias = nn.Parameter(torch.zeros(pool))  # K P + P, as the reference's count
        self.key, self.value = nn.Linear(in_dim, pool), nn.Linear(in_dim, pool)
        width = hidden * capacity

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Dropout(dropout), nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

        self.mlp = nn.Sequential(*block(pool + k, width), *block(width, width),
                                 nn.Linear(width, hidden))
        self.pos_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            _ExplicitAttentionLayer(hidden, heads, ff, dropout) for _ in range(layers)
        )
        self.embedding = nn.Linear(hidden, emb)
        self.projection = nn.Sequential(nn.Linear(emb, proj), nn.BatchNorm1d(proj), nn.ReLU(),
                                        nn.Linear(proj, emb))

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``tokens [B, T, S, C]``, ``valid [B, T]`` -> projected ``[B, T, E]``."""
        b, t, s, c = tokens.shape
        keys = self.key(tokens.reshape(b * t, s, c))
        values = self.value(tokens.reshape(b * t, s, c))
        query = self.query + self.query_bias
        attn = (query @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])).softmax(-1)
        x = attn @ values  # [BT, K, P]
        x = torch.cat([x, torch.eye(self.k).expand(b * t, -1, -1)], -1)
        x = self.mlp(x.reshape(b * t * self.k, -1)).view(b, t, self.k, -1)
        pos = torch.linspace(0, self.train_len - 1, t) if t != self.train_len else torch.arange(t)
        chan = torch.arange(self.hidden)
        angle = pos[:, None] / 10000 ** (chan[None, :] / self.hidden)
        pe = torch.where(chan % 2 == 0, angle.sin(), angle.cos())
        x = self.pos_drop(x + pe[None, :, None, :]).reshape(b, t * self.k, -1)
        key_valid = valid.bool()[:, :, None].expand(b, t, self.k).reshape(b, -1)
        for layer in self.layers:
            x = layer(x, key_valid)
        x = x.view(b, t, self.k, -1)[:, :, 0]
        z = self.projection(self.embedding(x).reshape(b * t, -1)).view(b, t, -1)
        return F.normalize(z, dim=-1)
