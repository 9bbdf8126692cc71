"""Diagnostic: how much of the difference between two expressions survives each stage of EEMC.

For pairs of expressions of the same clip that refer to different objects (same frames, same
audio, different sentence and target), the two forward passes are compared stage by stage:
``||a - b|| / mean(||a||, ||b||)`` of the text projection, the text parts of the two bi-modal
blocks, the integration attention, the prompt, the prompted decoder queries, the decoder's
last query states and the mask logits. A stage near 0 means the model can no longer tell the
two sentences apart there, however it is trained: that is where the expression gets lost.

Run on a dataset with cached features (e.g. the main job's), a random-initialised model of a
config by default, or a trained checkpoint:

    .venv/bin/python benchmarks/expression_signal.py --data-dir runs/demo/data
    .venv/bin/python benchmarks/expression_signal.py --data-dir runs/demo/data fusion.residual=true
    .venv/bin/python benchmarks/expression_signal.py --data-dir runs/demo/data --checkpoint runs/demo/run/best

The last line printed is one JSON object: ``stages`` (stage -> median relative difference over
the pairs), ``pairs``, and the settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

STAGES = ("text_proj", "audio_text.text", "visual_text.text", "integration", "prompt", "prompted_queries",
          "decoder_queries", "mask_logits")
"""The stages compared, in the order of the forward pass."""


def relative_difference(a, b) -> float:
    """``||a - b|| / mean(||a||, ||b||)`` (0 when both are 0)."""
    scale = 0.5 * (float(a.norm()) + float(b.norm()))
    return float((a - b).norm()) / scale if scale else 0.0


def different_target_pairs(dataset, limit: int) -> list[tuple[int, int]]:
    """Up to ``limit`` index pairs of expressions of one clip whose targets differ (first in metadata order)."""
    by_clip = defaultdict(list)
    for index, e in enumerate(dataset.expressions):
        by_clip[e.vid].append((index, e))
    pairs = []
    for rows in by_clip.values():
        for (i, a), (j, b) in zip(rows, rows[1:]):
            if a.fid != b.fid and a.exp != b.exp:
                pairs.append((i, j))
        if len(pairs) >= limit:
            break
    return pairs[:limit]


def stage_outputs(model, batch) -> dict:
    """One forward pass with hooks: stage -> ``[2, ...]`` tensor (clip first) for the two expressions."""
    import torch

    seen: dict = {}
    fusion = model.fusion
    hooks = [
        fusion.text_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("text_proj", o)),
        fusion.audio_text.register_forward_hook(lambda m, i, o: seen.__setitem__("audio_text.text", o[1])),
        fusion.visual_text.register_forward_hook(lambda m, i, o: seen.__setitem__("visual_text.text", o[1])),
        fusion.integration.register_forward_hook(lambda m, i, o: seen.__setitem__("integration", o)),
        fusion.prompt_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("prompt", o)),
        # decoder tensors are [Q, B*T, C]: regroup to clip first
        model.query_prompt.register_forward_hook(
            lambda m, i, o: seen.__setitem__("prompted_queries", o.unflatten(1, (2, -1)).transpose(0, 1))),
        model.segmenter.model.transformer_module.register_forward_hook(
            lambda m, i, o: seen.__setitem__("decoder_queries", o.intermediate_hidden_states[-1].unflatten(
                1, (2, -1)).transpose(0, 1))),
    ]
    try:
        with torch.no_grad():
            seen["mask_logits"] = model(batch).mask_logits
    finally:
        for h in hooks:
            h.remove()
    return seen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a dataset whose features are cached (or can be)")
    parser.add_argument("--split", default="train", help="split to take the pairs from (default train)")
    parser.add_argument("--pairs", type=int, default=16, help="expression pairs compared (default 16)")
    parser.add_argument("--config", default="tiny", help="model config of a random-initialised model (default tiny)")
    parser.add_argument("--checkpoint", help="a trained model instead (RUN/best or a checkpoint folder)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="model config overrides")
    args = parser.parse_args(argv)

    import torch

    from refavs.data.dataset import RefAVSDataset, collate
    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config
    from refavs.training.trainer import prepare_features

    torch.manual_seed(args.seed)
    if args.checkpoint:
        if args.overrides:
            parser.error("overrides apply to --config, not to a --checkpoint")
        model = EEMC.from_pretrained(args.checkpoint)
    else:
        model = EEMC(get_model_config(args.config, args.overrides))
    model.eval()
    features, store = prepare_features(args.data_dir, model.config, (args.split,))
    dataset = RefAVSDataset(args.data_dir, args.split, store, image=features.image, with_masks=False)
    pairs = different_target_pairs(dataset, args.pairs)
    if not pairs:
        parser.error(f"{args.data_dir} split {args.split}: no clip has two expressions with different targets")

    values = defaultdict(list)
    for i, j in pairs:
        seen = stage_outputs(model, collate([dataset[i], dataset[j]]))
        for stage in STAGES:
            values[stage].append(relative_difference(seen[stage][0], seen[stage][1]))
    stages = {stage: round(statistics.median(values[stage]), 5) for stage in STAGES}
    for stage, value in stages.items():
        print(f"{stage:18s} {value:8.4f}")
    print(json.dumps({"stages": stages, "pairs": len(pairs), "config": model.config.name,
                      "checkpoint": args.checkpoint, "overrides": args.overrides, "split": args.split}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
