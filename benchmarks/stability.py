"""Landmark stability of a checkpoint (default: the shipped 300W model): perturbation jitter
on 300W common, and, on the moving-face test video, jitter against lag for per-frame
prediction (true box per frame) and One Euro smoothing.

    python benchmarks/stability.py --faces 100 --video-faces 5

Perturbation jitter: each face's crop in K perturbed versions (facemarks.engine.stability),
all perturbations together and each alone ("none": the plain crop twice, so the clean NME
and a jitter of 0). Video: FacePath's figure of eight with rotation and zoom at 30 fps, one
cycle in --frames frames; "video jitter" is the frame-to-frame motion a similarity does not
explain (% of the inter-ocular distance), "lag" the least-squares delay behind the truth
(frames); means over the video faces. Without 300W (FACEMARKS_SHARED_DATA or ../shared/data)
the 300W part is skipped and the video uses synthetic faces.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from facemarks.data import formats
from facemarks.data.sample import read_image
from facemarks.data.synthetic.renderer import generate_face
from facemarks.engine import stability
from facemarks.engine.checkpoint import Checkpoint
from facemarks.geometry.affine import warp_antialiased
from facemarks.geometry.coords import to_source
from facemarks.inference.smoothing import smooth_track

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEMARKS_SHARED_DATA", REPO.parent / "shared" / "data"))
MIN_CUTOFFS = (0.5, 1.0, 2.0, 4.0)   # Hz
BETAS = (0.0, 0.01, 0.05)            # 1 / frame pixel


def perturbation_table(args, data_spec: str) -> None:
    runs = [("none (the plain crop twice)", ()), ("all together", stability.DEFAULT_PERTURBATIONS)]
    runs += [(name, (name,)) for name in stability.DEFAULT_PERTURBATIONS]
    print(f"\nPerturbation jitter, {data_spec} [{args.split}], K={args.k}, seed {args.seed}")
    print("| perturbations | faces | jitter mean % IOD | median | p90 | NME under perturbation % |")
    print("|---|---|---|---|---|---|")
    for label, names in runs:
        found = stability.jitter_checkpoint(args.checkpoint, data_spec, args.split, args.k if names else 2, args.seed,
                                            cache_dir=args.cache_dir, faces=args.faces, perturbations=names)
        per_face = found["per_face"]
        print(f"| {label} | {len(per_face)} | {found['jitter']:.3f} | {np.median(per_face):.3f} | "
              f"{np.percentile(per_face, 90):.3f} | {found['nme'].mean():.2f} |", flush=True)


def video_faces(args, data_spec: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, landmarks) of the faces moved through the test video."""
    if data_spec is None:
        return [generate_face(0, index)[:2] for index in range(args.video_faces)]
    samples = list(formats.load(data_spec, args.split))[:args.video_faces]
    return [(read_image(s.image_path), s.landmarks) for s in samples]


def predict_video(model, checkpoint: Checkpoint, video: stability.MovingFaceVideo) -> np.ndarray:
    """Per-frame points (T, N, 2) in frame pixels, each frame cropped from its true box."""
    size = checkpoint.input_size
    matrices = np.stack([checkpoint.crop.matrix(size, box=box) for box in video.boxes])
    crops = np.stack([warp_antialiased(frame, matrix, size) for frame, matrix in zip(video.frames, matrices)])
    return to_source(stability.predict_images(model, crops), matrices, size)


def video_table(args, checkpoint: Checkpoint, faces) -> None:
    model = checkpoint.build_model()
    path = stability.FacePath(frames=args.frames)
    tracks = []
    for image, landmarks in faces:
        video = stability.moving_face_video(image, landmarks, path)
        tracks.append((predict_video(model, checkpoint, video), video.points))
    print(f"\nMoving-face video: {len(faces)} faces x {path.frames} frames of {path.frame_size} px at "
          f"{path.frame_rate:g} fps (shift {path.shift}, rotation {path.rotation} deg, zoom {path.zoom})")
    print("| points | video jitter % IOD | NME % IOD | lag (frames) |")
    print("|---|---|---|---|")
    settings = [("truth", None), ("per frame", None)]
    settings += [(f"One Euro min_cutoff {c:g} beta {b:g}", (c, b)) for c in MIN_CUTOFFS for b in BETAS]
    for label, params in settings:
        rows = []
        for predicted, truth in tracks:
            points = truth if label == "truth" else predicted
            if params is not None:
                points = smooth_track(predicted, min_cutoff=params[0], beta=params[1], frame_rate=path.frame_rate)
            found = stability.video_jitter(points, checkpoint.scheme, truth=truth)
            rows.append((found["jitter"], found["nme"], found["lag_frames"]))
        jitter, nme, lag = np.mean(rows, axis=0)
        print(f"| {label} | {jitter:.3f} | {nme:.2f} | {lag:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO / "facemarks" / "weights" / "dsnet_heatmap_300w.pt"))
    parser.add_argument("--data", default=str(SHARED_DATA / "300w"), help="300W folder")
    parser.add_argument("--split", default="common")
    parser.add_argument("--faces", type=int, default=None, help="first N faces for perturbation jitter (default all)")
    parser.add_argument("--k", type=int, default=8, help="perturbed versions per face")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video-faces", type=int, default=5)
    parser.add_argument("--frames", type=int, default=150, help="frames of one cycle of the path (30 fps)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    checkpoint = Checkpoint.load(args.checkpoint)
    data_spec = f"300w:{args.data}" if Path(args.data).is_dir() else None
    print(f"checkpoint {args.checkpoint} ({checkpoint.model.name}, {checkpoint.input_size} px, {checkpoint.crop!r}); "
          f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)")
    if data_spec is None:
        print(f"300W not found at {args.data}: perturbation jitter skipped, the video uses synthetic faces")
    else:
        perturbation_table(args, data_spec)
    video_table(args, checkpoint, video_faces(args, data_spec))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
