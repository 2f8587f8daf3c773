"""Evaluate a landmark model on a dataset split: predictions mapped back to the source
images, NME under every normalisation, failure rate, AUC, per-subset and per-region figures.

Per-region NME (`region_errors`): for each face region of the scheme (schemes.face_regions:
jaw, brows, nose, eyes, mouth) the mean error of that region's points divided by the same
inter-ocular distance as the whole-face NME, so the regions' figures compare with it (the
whole-face NME is their point-count-weighted mean when the regions partition the points).

Crops follow the checkpoint's crop policy. An aligned-crop model (the second stage of a
cascade) needs points to align on: a first stage's predictions (`first_stage=CHECKPOINT`),
or, as an oracle stated in the result, the ground truth.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from facemarks import metrics, schemes
from facemarks.data import cache as crop_cache
from facemarks.data import formats
from facemarks.data.dataset import FaceCrops
from facemarks.data.convert import TARGETS, convert_samples
from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import CheckpointError, DataError
from facemarks.geometry.affine import compose
from facemarks.geometry.coords import mirror_normalized, to_source
from facemarks.pose import head_poses
from facemarks.registry import DECODERS
from facemarks.stats import pose_bins

# The order in which results list the normalisations (inter-ocular first: the headline).
NORMS = ("image", "inter_ocular", "inter_pupil", "box")


@torch.no_grad()
def predict_crops(model, crops: crop_cache.CropCache, input_size: int, batch_size: int = 64,
                  channels_last: bool = False, device="cpu", flip_permutation=None, decoder: str | None = None) -> dict:
    """Predict every face of a crop cache (plain crops, no augmentation).

    With `flip_permutation` (the scheme's), also predicts the mirrored crop and averages the
    two after mirroring back and relabelling ("flip test", a standard test-time augmentation).
    decoder: heatmap models' decoder for this call (None: the model's default).

    Returns {"input": (n, N, 2) predictions normalised to the input, "gt_input": the truth in
    the same coordinates, "source": predictions in source-image pixels}.
    """
    model.eval()
    loader = DataLoader(FaceCrops(crops, input_size), batch_size=batch_size, shuffle=False)
    pred_norm, gt_norm, source = [], [], []
    for batch in loader:
        images = batch["image"].to(device).float().div_(255)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        output = model.decode(model(images), decoder)
        if flip_permutation is not None:
            mirrored = model.decode(model(images.flip(-1)), decoder)[:, list(flip_permutation)]
            output = (output + mirror_normalized(mirrored)) / 2
        output = output.float().cpu().numpy().astype(np.float64)
        to_input = [compose(m, crops.to_cache[i]) for m, i in zip(batch["matrix"].numpy(), batch["index"].tolist())]
        source.append(to_source(output, np.stack(to_input), input_size))
        pred_norm.append(output)
        gt_norm.append(batch["points"].numpy().astype(np.float64))
    return {"input": np.concatenate(pred_norm), "gt_input": np.concatenate(gt_norm), "source": np.concatenate(source)}


def face_errors(predictions: dict, samples: list, scheme) -> dict:
    """Per-face NME under every normalisation (the image norm on the normalised input)."""
    truth = np.stack([s.landmarks for s in samples])
    errors = {"image": metrics.nme(predictions["input"], predictions["gt_input"], norm="image",
                                   scheme=scheme, image_size=1.0)}
    for norm in NORMS[1:]:
        errors[norm] = metrics.nme(predictions["source"], truth, norm=norm, scheme=scheme)
    return errors


def region_errors(predictions: dict, samples: list, scheme) -> dict[str, np.ndarray]:
    """{region: (faces,) inter-ocular NME of the region's points} (see the module docstring)."""
    truth = np.stack([s.landmarks for s in samples])
    out = {}
    for name, indices in schemes.face_regions(scheme).items():
        mask = np.zeros(truth.shape[:2], dtype=bool)
        mask[:, list(indices)] = True
        out[name] = metrics.nme(predictions["source"], truth, norm="inter_ocular", scheme=scheme, mask=mask)
    return out


def attribute_flags(samples: list) -> dict:
    """0/1 flags per face (e.g. WFLW's pose, expression, ...; synthetic faces' occluded), by name."""
    names = sorted({k for s in samples for k, v in s.attributes.items()
                    if isinstance(v, (bool, int, np.integer))})
    return {name: [int(bool(s.attributes.get(name, 0))) for s in samples] for name in names}


def summarize(errors: dict, samples: list, regions: dict | None = None) -> dict:
    """Aggregate figures per normalisation, plus per-subset inter-ocular NME where faces have
    flags, per head-pose bin where the scheme has a pose estimate (`face_poses`) and per
    face region when `regions` (`region_errors`) is given."""
    summary = {norm: metrics.summarize(values) for norm, values in errors.items()}
    if regions:
        summary["regions"] = {name: metrics.summarize(values) for name, values in regions.items()}
    subsets = {name: metrics.summarize(errors["inter_ocular"][np.array(flags, dtype=bool)])
               for name, flags in attribute_flags(samples).items() if any(flags)}
    if subsets:
        summary["subsets"] = subsets
    poses = face_poses(samples)
    if poses is not None:
        summary["pose"] = pose_summary(errors["inter_ocular"], poses)
    return summary


def face_poses(samples: list) -> np.ndarray | None:
    """(faces, 3) [yaw, pitch, roll] degrees from the ground-truth landmarks (facemarks.pose),
    or None for schemes it does not estimate (it takes 68 or 98 points)."""
    if not samples or any(schemes.get(s.scheme).num_points not in (68, 98) for s in samples):
        return None
    return head_poses(samples)


def pose_summary(nmes, poses) -> dict:
    """{"yaw": [bin], "roll": [bin]} over stats.pose_bins: each bin {"label", "low", "high",
    "n"} plus metrics.summarize of its NMEs when it has faces (an empty bin has no mean)."""
    nmes = np.asarray(nmes, dtype=np.float64)
    out = {}
    for axis, bins in pose_bins(poses).items():
        out[axis] = []
        for b in bins:
            figures = metrics.summarize(nmes[b["mask"]]) if b["mask"].any() else {"n": 0}
            out[axis].append({"label": b["label"], "low": b["low"], "high": b["high"], **figures})
    return out


def evaluate_checkpoint(path, data_spec: str, split: str, batch_size: int = 64, cache_dir=None,
                        flip_test: bool = False, decoder: str | None = None, device: str = "cpu",
                        first_stage=None) -> dict:
    """Evaluate checkpoint `path` on `data_spec` [split]; see the module docstring for the
    aligned-crop reference points (`first_stage`)."""
    checkpoint = Checkpoint.load(path)
    check_decoder(checkpoint, path, decoder)
    model = checkpoint.build_model(device)
    scheme = checkpoint.scheme
    samples, ground_truth = ground_truth_for(scheme, formats.load(data_spec, split), data_spec)
    reference, reference_name = reference_points(checkpoint, samples, first_stage, batch_size, cache_dir, device)
    crops = crop_cache.build(samples, checkpoint.input_size, checkpoint.crop, root=cache_dir,
                             reference_points=reference)
    predictions = predict_crops(model, crops, checkpoint.input_size, batch_size, device=device, decoder=decoder,
                                flip_permutation=scheme.flip_permutation if flip_test else None)
    errors = face_errors(predictions, samples, scheme)
    regions = region_errors(predictions, samples, scheme)
    return {"checkpoint": str(path), "data": data_spec, "split": split, "faces": len(samples), "flip_test": flip_test,
            "ground_truth": ground_truth,
            "decoder": decoder or checkpoint.decoder, "crop": checkpoint.crop.to_dict(), "crop_reference": reference_name,
            "summary": summarize(errors, samples, regions),
            "per_face": {"image_path": [s.image_path for s in samples], **{k: v.tolist() for k, v in errors.items()},
                         "regions": {k: v.tolist() for k, v in regions.items()}}}


def check_decoder(checkpoint: Checkpoint, path, decoder: str | None) -> None:
    """CheckpointError for a decoder given to a regression model; an unknown decoder name
    stops here (UnknownNameError), before any data is read."""
    if decoder and checkpoint.kind != "heatmap":
        raise CheckpointError(path, f"--decoder applies to heatmap models; this one is {checkpoint.kind}")
    if decoder:
        DECODERS.get(decoder)


def ground_truth_for(scheme, samples: list, data_spec: str) -> tuple[list, str]:
    """(samples, description): the faces with the points a `scheme` model predicts.

    A 68-point (300w) model on 98-point (wflw) faces is scored on the WFLW points mapped to
    68 (`schemes.to_68`), a five-point (5pt) model on 68- or 98-point faces on their five
    points (`schemes.to_5pt`), each face's box the extent of its 68 points
    (facemarks.data.convert); any other difference in point count is a DataError.
    """
    count = samples[0].landmarks.shape[0]
    if count == scheme.num_points:
        return list(samples), "as annotated"
    if scheme.name in TARGETS and schemes.BUILTIN.get(scheme.name) == scheme \
            and all(s.scheme in TARGETS[scheme.name] for s in samples):
        return convert_samples(samples, scheme.name, data_spec)
    raise DataError(data_spec, f"has {count} points per face; the checkpoint predicts {scheme.num_points}")


def reference_points(checkpoint: Checkpoint, samples: list, first_stage, batch_size: int, cache_dir, device):
    """(points or None, description) an aligned crop is computed from; box crops need none."""
    if checkpoint.crop.needs != "points":
        return None, "box"
    if first_stage is None:
        return None, "ground truth (oracle: no first stage given)"
    stage1 = Checkpoint.load(first_stage)
    if stage1.crop.needs != "box":
        raise CheckpointError(first_stage, "a first stage must crop from face boxes")
    crops = crop_cache.build(samples, stage1.input_size, stage1.crop, root=cache_dir)
    found = predict_crops(stage1.build_model(device), crops, stage1.input_size, batch_size, device=device)
    if stage1.scheme.num_points != 5:
        return schemes.to_5pt(found["source"], stage1.scheme), f"first stage {first_stage}"
    return found["source"], f"first stage {first_stage}"


def format_summary(result: dict) -> str:
    flip = ", flip test" if result["flip_test"] else ""
    flip += f", decoder {result['decoder']}" if result["decoder"] else ""
    flip += f", aligned on {result['crop_reference']}" if result["crop_reference"] != "box" else ""
    lines = [f"{result['data']} [{result['split']}]: {result['faces']} faces, checkpoint {result['checkpoint']}{flip}",
             "| NME norm | mean % | median % | FR@0.1 % | AUC@0.1 |", "|---|---|---|---|---|"]
    for norm in NORMS:
        s = result["summary"][norm]
        lines.append(f"| {norm} | {100 * s['mean']:.2f} | {100 * s['median']:.2f} | "
                     f"{100 * s['fr']:.2f} | {s['auc']:.4f} |")
    for name, s in result["summary"].get("subsets", {}).items():
        lines.append(f"| subset {name} (inter-ocular, {s['n']} faces) | {100 * s['mean']:.2f} | "
                     f"{100 * s['median']:.2f} | {100 * s['fr']:.2f} | {s['auc']:.4f} |")
    for name, s in result["summary"].get("regions", {}).items():
        lines.append(f"| region {name} (inter-ocular) | {100 * s['mean']:.2f} | {100 * s['median']:.2f} | "
                     f"{100 * s['fr']:.2f} | {s['auc']:.4f} |")
    for axis, bins in result["summary"].get("pose", {}).items():
        for s in bins:
            figures = (f"{100 * s['mean']:.2f} | {100 * s['median']:.2f} | {100 * s['fr']:.2f} | {s['auc']:.4f}"
                       if s["n"] else "— | — | — | —")
            lines.append(f"| {axis} {s['label']} (inter-ocular, {s['n']} faces) | {figures} |")
    if "regions" in result["summary"]:
        lines.append("Region rows: the mean error of the region's points over the same inter-ocular distance.")
    if "pose" in result["summary"]:
        lines.append("Pose bins: |yaw| and |roll| in degrees (lower edge included), estimated from the ground-truth landmarks.")
    return "\n".join(lines)
