"""Full evaluation pass with a cold vs a warm frozen-backbone feature cache, one process.

Uses the demo dataset and the packaged ImageNet EfficientNet-Lite0 backbone (real weights, no
download). The cold pass decodes, transforms and runs the backbone on every evaluation frame;
the warm pass finds the backbone features in the model's CachedBackbone and runs only the
trainable part.

    uv run python benchmarks/bench_feature_cache.py [--crop 224] [--passes 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning.pytorch as pl
import torch

from mvf_lightning.data import DemoDataModule
from mvf_lightning.evaluation.callback import AlignmentEvaluation
from mvf_lightning.models.backbone import BackboneConfig
from mvf_lightning.models.cached_backbone import FeatureCacheConfig
from mvf_lightning.models.mvformer import EmbedderConfig
from mvf_lightning.training.module import MVFormerModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--passes", type=int, default=3, help="warm passes after the cold one")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        dm = DemoDataModule(root=f"{tmp}/demo", num_workers=0, crop_size=args.crop,
                            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        dm.prepare_data()
        module = MVFormerModule(
            backbone=BackboneConfig(name="tf_efficientnet_lite0",
                                    pretrained="package:efficientnet_lite0", chunk_size=128),
            embedder=EmbedderConfig(num_frames=24),
            feature_cache=FeatureCacheConfig(mode="memory"),
        )
        evaluation = AlignmentEvaluation(stride=1, print_table=False, save_json=False)
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[evaluation])
        times, taus = [], []
        for _ in range(1 + args.passes):
            start = time.perf_counter()
            result = trainer.validate(module, datamodule=dm, verbose=False)[0]
            times.append(time.perf_counter() - start)
            taus.append(result["val/demo/mean/kendalls_tau"])
        cold, warm = times[0], min(times[1:])
        frames = sum(v.num_frames for idx in dm.eval_indexes().values() for v in idx)
        print(f"videos: {sum(len(i) for i in dm.eval_indexes().values())}, frames: {frames}, "
              f"crop {args.crop}, threads {args.threads}")
        print(f"cold pass: {cold:.2f} s; warm passes: {', '.join(f'{t:.2f}' for t in times[1:])} s")
        print(f"speed-up warm vs cold: {cold / warm:.1f}x; cache {module.cached_backbone.stats()}")
        print(f"identical metrics cold/warm: {all(t == taus[0] for t in taus)} ({taus[0]:.6f})")


if __name__ == "__main__":
    main()
