"""Video prediction on the moving-face test video: per-frame detection against tracking
(facemarks.inference.tracking), each with and without One Euro smoothing.

    python benchmarks/video_tracking.py --faces 5 --frames 150 [--via-file]

Each face (300W common, else synthetic) is moved along stability.FacePath (a figure of eight
with rotation and zoom, 30 fps) in frames of 256 px, and the frames are fed to a
`VideoTracker` with the Haar detector: "per-frame detection" runs the detector on every
frame (track off), "tracking" follows the face from its landmarks and re-detects every
--redetect-every frames. Video jitter (the frame-to-frame motion a similarity does not
explain), motion error (the frame-to-frame motion against the truth's, whole-face shake
included), NME and lag against the known true points (stability.video_jitter, % of the
inter-ocular distance), faces/s (wall time of the tracker's steps, --threads PyTorch
threads), detector runs and ids per video. Frames without exactly one face are counted and
left out of the figures (then "frames used" < frames). The smoothing grid is applied to
the raw tracks afterwards: the same numbers as online smoothing, since crops come from the
raw points either way (a video whose track broke into several ids is filtered per id).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

import facemarks
from facemarks import metrics
from facemarks.data import formats
from facemarks.data.sample import read_image
from facemarks.data.synthetic.renderer import generate_face
from facemarks.engine import stability
from facemarks.inference.files import predict_files
from facemarks.inference.tracking import TrackerOptions, VideoTracker

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEMARKS_SHARED_DATA", REPO.parent / "shared" / "data"))
GRID = [("shape", c, b) for c in (0.1, 0.3, 1.0) for b in (0.0, 0.05)] + \
    [(kind, c, b) for kind in ("face", "coordinate") for c in (0.5, 1.0) for b in (0.05, 0.2, 0.5)]


def video_faces(args) -> list[tuple[np.ndarray, np.ndarray]]:
    if not (Path(args.data) / "afw").is_dir():
        print(f"300W not found at {args.data}: synthetic faces")
        return [generate_face(0, index)[:2] for index in range(args.faces)]
    samples = list(formats.load(f"300w:{args.data}", "common"))[:args.faces]
    return [(read_image(s.image_path), s.landmarks) for s in samples]


def run_tracker(predictor, video, options: TrackerOptions) -> dict:
    """Raw points and ids per frame, wall time and detector runs of one pass over a video."""
    tracker = VideoTracker(predictor, lambda image: predictor.detect(image, "haar"), options, video.frame_rate)
    frames, started = [], time.perf_counter()
    for frame in video.frames:
        frames.append(tracker.step(frame))
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": seconds, "detector_runs": tracker.detector_runs, "ids": tracker.tracks}


def figures(run: dict, video, scheme, smoothing=None) -> dict:
    """Video jitter / NME / lag over the frames with one face (smoothed per id when asked)."""
    used = [t for t, faces in enumerate(run["frames"]) if len(faces) == 1]
    points = np.stack([run["frames"][t][0]["landmarks"] for t in used])
    ids = np.array([run["frames"][t][0]["id"] for t in used])
    if smoothing is not None:
        smoother, min_cutoff, beta = smoothing
        options = TrackerOptions(min_cutoff=min_cutoff, beta=beta, smoother=smoother)
        for track in np.unique(ids):
            smoother = options.make_filter(video.frame_rate)
            points[ids == track] = np.stack([smoother(p) for p in points[ids == track]])
    truth = video.points[used]
    found = stability.video_jitter(points, scheme, truth=truth)
    return {"jitter": found["jitter"], "nme": found["nme"], "lag": found["lag_frames"], "used": len(used),
            "motion_error": motion_error(points, truth, scheme)}


def motion_error(points, truth, scheme) -> float:
    """RMS per coordinate of (points(t+1) - points(t)) - (truth(t+1) - truth(t)), in % of the
    true inter-ocular distance, mean over frame pairs: the frame-to-frame shake of the points
    including a shake of the whole face, which video jitter (after a similarity) leaves out."""
    norms = metrics.normalizer(truth, "inter_ocular", scheme)[:-1]
    error = np.diff(points, axis=0) - np.diff(truth, axis=0)
    return float((100 * np.sqrt((error ** 2).mean(axis=(1, 2))) / norms).mean())


def table_row(label: str, rows: list[dict], runs: list[dict]) -> str:
    jitter, motion, nme, lag = (np.mean([r[key] for r in rows]) for key in ("jitter", "motion_error", "nme", "lag"))
    faces = sum(len(f) for run in runs for f in run["frames"])
    speed = faces / sum(run["seconds"] for run in runs)
    return (f"| {label} | {jitter:.3f} | {motion:.3f} | {nme:.2f} | {lag:.2f} | {speed:.1f} | "
            f"{np.mean([r['detector_runs'] for r in runs]):.1f} | {np.mean([r['ids'] for r in runs]):.1f} | "
            f"{sum(r['used'] for r in rows)} |")


def file_speed(predictor, videos, options: TrackerOptions | None) -> float:
    """Faces/s of `predict_files` (decoding, tracking, JSON record; no overlay) on each video
    written to a temporary Motion-JPEG .avi file."""
    faces, seconds = 0, 0.0
    with tempfile.TemporaryDirectory() as folder:
        for k, video in enumerate(videos):
            path = Path(folder) / f"face{k}.avi"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), video.frame_rate,
                                     video.frames.shape[2:0:-1])
            for frame in video.frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
            started = time.perf_counter()
            document = predict_files(predictor, [path], Path(folder) / "out", "haar", overlay=False,
                                     log=lambda line: None, tracking=options)
            seconds += time.perf_counter() - started
            faces += sum(len(frame["faces"]) for frame in document["images"][0]["frames"])
    return faces / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped 300W model")
    parser.add_argument("--data", default=str(SHARED_DATA / "300w"))
    parser.add_argument("--faces", type=int, default=5)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--redetect-every", type=int, default=TrackerOptions.redetect_every)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--via-file", action="store_true",
                        help="also time `facemarks predict`'s library part on the videos written to .avi files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = facemarks.load(args.checkpoint, threads=args.threads)
    path = stability.FacePath(frames=args.frames)
    videos = [stability.moving_face_video(image, points, path) for image, points in video_faces(args)]
    print(f"{predictor!r}; {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"{len(videos)} faces x {path.frames} frames of {path.frame_size} px at {path.frame_rate:g} fps")
    plain = TrackerOptions(smooth=False, redetect_every=args.redetect_every)
    modes = {"per-frame detection": replace(plain, track=False), "tracking": plain}
    runs = {label: [run_tracker(predictor, video, options) for video in videos] for label, options in modes.items()}
    online = replace(plain, smooth=True)  # the defaults of `facemarks predict VIDEO`, smoothing online
    runs[f"tracking + default smoothing online ({online.smoother}, min_cutoff {online.min_cutoff:g}, "
         f"beta {online.beta:g})"] = [run_tracker(predictor, video, online) for video in videos]
    print("| points | video jitter % IOD | motion error % IOD | NME % IOD | lag (frames) | faces/s | detector runs "
          "| ids | frames used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, mode_runs in runs.items():
        for smoothing in [None] + (GRID if label in modes else []):
            rows = [{**figures(run, video, predictor.scheme, smoothing)} for run, video in zip(mode_runs, videos)]
            name = label if smoothing is None else f"{label} + One Euro {smoothing[0]}, " \
                                                   f"min_cutoff {smoothing[1]:g} beta {smoothing[2]:g}"
            print(table_row(name, rows, mode_runs), flush=True)
    if args.via_file:
        print("\n| predict_files on .avi files (Haar) | faces/s |\n|---|---|")
        for label, options in (("per-frame detection (--no-track --no-smooth)", replace(plain, track=False)),
                               ("tracking + smoothing (the defaults)", online)):
            print(f"| {label} | {file_speed(predictor, videos, options):.1f} |", flush=True)


if __name__ == "__main__":
    main()
