"""Evaluate a landmark model on a dataset split: predictions mapped back to the source
images, NME under every normalisation, failure rate, AUC and per-subset figures.

`facemarks evaluate CHECKPOINT --data FORMAT:PATH --split NAME [--out DIR]`
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from facemarks.data import cache as crop_cache
from facemarks.engine import checkpoint as ckpt
from facemarks import metrics, schemes
from facemarks.data import formats as datasets
from facemarks import geometry as transforms
from facemarks.data.dataset import FaceCrops

NORMS = ("image", "inter_ocular", "inter_pupil", "box")


@torch.no_grad()
def predict_crops(model, crops: crop_cache.CropCache, input_size: int, crop_margin: float,
                  batch_size: int = 64, channels_last: bool = False, device="cpu",
                  flip_permutation=None) -> dict:
    """Predict every face of a crop cache (plain crops, no augmentation).

    With `flip_permutation` (the scheme's), also predicts the mirrored crop and averages the
    two after mirroring back and relabelling ("flip test", a standard test-time augmentation).

    Returns {"input": (n, N, 2) predictions normalised to the input, "gt_input": the truth in
    the same coordinates, "source": predictions in source-image pixels}.
    """
    model.eval()
    faces = FaceCrops(crops, input_size, crop_margin, augment=None, flip_permutation=None)
    loader = DataLoader(faces, batch_size=batch_size, shuffle=False)
    pred_norm, gt_norm, source = [], [], []
    for batch in loader:
        images = batch["image"].to(device).float().div_(255)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        output = model.decode(model(images))
        if flip_permutation is not None:
            mirrored = model.decode(model(images.flip(-1)))[:, list(flip_permutation)]
            mirrored[..., 0] = 1 - mirrored[..., 0]  # u -> S - 1 - u in pixels is x -> 1 - x normalised
            output = (output + mirrored) / 2
        output = output.float().cpu().numpy().astype(np.float64)
        for pred, index, cache_to_input in zip(output, batch["index"].tolist(), batch["matrix"].numpy()):
            source_to_input = transforms.compose(cache_to_input, crops.to_cache[index])
            pred_px = transforms.from_normalized(pred, input_size)
            source.append(transforms.apply_to_points(transforms.invert(source_to_input), pred_px))
        pred_norm.append(output)
        gt_norm.append(batch["points"].numpy().astype(np.float64))
    return {"input": np.concatenate(pred_norm), "gt_input": np.concatenate(gt_norm), "source": np.stack(source)}


def face_errors(predictions: dict, samples: list, scheme) -> dict:
    """Per-face NME under every normalisation (the image norm on the normalised input)."""
    truth = np.stack([s.landmarks for s in samples])
    errors = {"image": metrics.nme(predictions["input"], predictions["gt_input"], norm="image",
                                   scheme=scheme, image_size=1.0)}
    for norm in NORMS[1:]:
        errors[norm] = metrics.nme(predictions["source"], truth, norm=norm, scheme=scheme)
    return errors


def attribute_flags(samples: list) -> dict:
    """0/1 flags per face (e.g. WFLW's pose, expression, ...; synthetic faces' occluded), by name."""
    names = sorted({k for s in samples for k, v in s.attributes.items()
                    if isinstance(v, (bool, int, np.integer))})
    return {name: [int(bool(s.attributes.get(name, 0))) for s in samples] for name in names}


def summarize(errors: dict, samples: list) -> dict:
    """Aggregate figures per normalisation, plus per-subset inter-ocular NME where faces have flags."""
    summary = {norm: metrics.summarize(values) for norm, values in errors.items()}
    subsets = {name: metrics.summarize(errors["inter_ocular"][np.array(flags, dtype=bool)])
               for name, flags in attribute_flags(samples).items() if any(flags)}
    if subsets:
        summary["subsets"] = subsets
    return summary


def load_model(path, device="cpu"):
    """Rebuild the model of a checkpoint. Returns (model, checkpoint dict)."""
    from facemarks.inference.predictor import build_model

    checkpoint = ckpt.load(path)
    return build_model(checkpoint, path).to(device), checkpoint


def evaluate_checkpoint(path, data_spec: str, split: str, batch_size: int = 64, cache_dir=None,
                        flip_test: bool = False, decoder: str | None = None) -> dict:
    model, checkpoint = load_model(path)
    if decoder:
        if getattr(model, "kind", "") != "heatmap":
            raise ckpt.CheckpointError(path, f"--decoder applies to heatmap models; this one is {model.kind}")
        model.decoder = decoder
    samples = list(datasets.load(data_spec, split))
    scheme = schemes.get(checkpoint["scheme"])
    if samples[0].landmarks.shape[0] != scheme.num_points:
        raise datasets.DataError(data_spec, f"has {samples[0].landmarks.shape[0]} points per face; "
                                            f"the checkpoint predicts {scheme.num_points}")
    crops = crop_cache.build(samples, checkpoint["input_size"], checkpoint["crop_margin"], root=cache_dir)
    predictions = predict_crops(model, crops, checkpoint["input_size"], checkpoint["crop_margin"], batch_size,
                                flip_permutation=scheme.flip_permutation if flip_test else None)
    errors = face_errors(predictions, samples, scheme)
    return {"checkpoint": str(path), "data": data_spec, "split": split, "faces": len(samples), "flip_test": flip_test,
            "decoder": getattr(model, "decoder", None),
            "summary": summarize(errors, samples),
            "per_face": {"image_path": [s.image_path for s in samples],
                         **{k: v.tolist() for k, v in errors.items()}}}


def format_summary(result: dict) -> str:
    flip = ", flip test" if result["flip_test"] else ""
    flip += f", decoder {result['decoder']}" if result["decoder"] else ""
    lines = [f"{result['data']} [{result['split']}]: {result['faces']} faces, checkpoint {result['checkpoint']}{flip}",
             "| NME norm | mean % | median % | FR@0.1 % | AUC@0.1 |", "|---|---|---|---|---|"]
    for norm in NORMS:
        s = result["summary"][norm]
        lines.append(f"| {norm} | {100 * s['mean']:.2f} | {100 * s['median']:.2f} | "
                     f"{100 * s['fr']:.2f} | {s['auc']:.4f} |")
    for name, s in result["summary"].get("subsets", {}).items():
        lines.append(f"| subset {name} (inter-ocular, {s['n']} faces) | {100 * s['mean']:.2f} | "
                     f"{100 * s['median']:.2f} | {100 * s['fr']:.2f} | {s['auc']:.4f} |")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="a facemarks checkpoint (.pt)")
    parser.add_argument("--data", required=True, help="FORMAT:PATH, e.g. 300w:../shared/data/300w")
    parser.add_argument("--split", default="test", help="split to evaluate (e.g. common, test)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--flip-test", action="store_true",
                        help="average the predictions of each crop and its mirror image")
    parser.add_argument("--decoder", choices=["argmax", "dark", "soft_argmax"],
                        help="heatmap models: how points are read off the heatmaps (default: the model's)")
    parser.add_argument("--out", help="write evaluation.json (with per-face errors) into this folder")


def run(args) -> int:
    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.batch_size, flip_test=args.flip_test,
                                 decoder=args.decoder)
    print(format_summary(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result, indent=1))
        print(f"wrote {out / 'evaluation.json'}")
    return 0
