"""Landmarks of the faces in image files, folders of images, or videos: the JSON document
and the overlays that `facemarks predict` writes.

    facemarks predict photo.jpg holiday/ clip.mp4 --out results/
    facemarks predict photo.jpg --checkpoint stage2.pt --first-stage stage1.pt   # a cascade

writes `results/predictions.json` and, unless --no-overlay, one overlay per input with the
points drawn (`NAME_landmarks.jpg`, or `NAME_landmarks.mp4` for videos; with --draw-pose
also each face's head axes from its nose tip: x red towards the face's left, which is
image-right when frontal, y green down, z blue out of the face). Every file is
written atomically: a video overlay is written under a hidden temporary name in the same
folder and renamed when complete. Coordinates in the
JSON are source-image pixels, 0-based pixel-centre (the centre of the top-left pixel is
(0, 0)). An image without a face gives an empty list of faces and a note; an unreadable
file gives an error entry naming it, the other inputs are still processed, and the
command exits with status 1 at the end. A video that ends before the frame count of its
header (a cut file) is processed to its end and flagged `"truncated": true`, with
`frames_expected` (the container's frame count: exact for the common formats, estimated
from the duration for a few) and `frames_read`. With --boxes, no detector runs: an image the file does
not list gets the note "not in the boxes file"; a box that is not finite, is degenerate
or lies mostly outside its image stops the command (exit 2) before any prediction.
The command checks the output folder for writing before anything is computed.

predictions.json: {"checkpoint", ["first_stage"], "backend", "scheme", "detector",
"coordinates", "images": [...], "skipped": [paths], "failed": count, "truncated": count}.
An image entry: {"file", "width", "height", "faces": [face, ...], ["note"], ["overlay"]};
a video entry: {"file", "video": true, "fps", "width", "height", "frames_expected",
"frames_read", "truncated", ["tracking"], "frames": [{"frame": k, ["detector"], "faces": [...],
["note"]}], ["overlay"]}; a failed input: {"file", "error"}. A face:
    {["id"], "box": [x_min, y_min, x_max, y_max], "landmarks": [[x, y], ...], "scheme": name,
     "pose": {"yaw": deg, "pitch": deg, "roll": deg} or null, ["shape_distance"]}
shape_distance (schemes with a shape reference, facemarks.inference.shape_check): the
points' Procrustes distance from the mean face, rounded to 1e-4; detected faces above the
reference's threshold are not listed (unless --no-shape-check).
pose is the head pose of the predicted points (facemarks.pose: yaw > 0 turned towards
image-right, pitch > 0 tilted up, roll > 0 counter-clockwise on screen; one PnP fit with
the focal length max(width, height)), rounded to 0.1 degree; null for a scheme other than
the 68-point 300w and 98-point wflw ones.

Videos are tracked (facemarks.inference.tracking) unless tracking is off or a boxes file
gives the boxes: each face keeps an "id" (0, 1, ... per video) across frames, its next crop
comes from its landmarks, the detector runs only when a track is lost, no face is followed
or every `redetect_every` frames (each frame's "detector": whether it ran), and its points
are smoothed per track (a followed face's "box" is the landmark box of its previous
points, the box its crop came from). The video's "tracking": {"track", "redetect_every",
"min_iou", "max_shape_change", "match_iou", "smooth": {"min_cutoff", "beta", "d_cutoff",
"smoother"} or null, "detector_runs", "tracks"}.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facemarks import fileio, schemes
from facemarks.data.sample import read_image
from facemarks.errors import DataError, FacemarksError
from facemarks.inference.tracking import TrackerOptions, VideoTracker
from facemarks.pose import HeadPose, axis_endpoints

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
NO_FACE_NOTE = "no face found"
NOT_LISTED_NOTE = "not in the boxes file"  # with --boxes no detector runs
NO_BOX_NOTE = "no box in the boxes file"


def collect_inputs(inputs, exclude=None) -> tuple[list[Path], list[Path]]:
    """Expand folders (recursively, sorted) into their image and video files, leaving out
    hidden files and anything under `exclude` (the output folder).
    Returns (files to process, files skipped because a folder held them but they are
    neither images nor videos by extension). Files named explicitly are always processed."""
    exclude = Path(exclude).resolve() if exclude is not None else None
    files, skipped = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            children = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            for child in children:
                if exclude is not None and exclude in child.resolve().parents:
                    continue
                suffix = child.suffix.lower()
                (files if suffix in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS else skipped).append(child)
        else:
            files.append(path)
    return files, skipped


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def face_record(face: dict) -> dict:
    """A predicted face as JSON-ready lists (coordinates rounded to 1/1000 px); a tracked
    video face starts with its track's "id"."""
    record = {"id": int(face["id"])} if "id" in face else {}
    return {**record, "box": [round(float(v), 3) for v in face["box"]],
            "landmarks": np.round(np.asarray(face["landmarks"], dtype=np.float64), 3).tolist(),
            "scheme": face["scheme"], "pose": face.get("pose"),
            **({"shape_distance": round(float(face["shape_distance"]), 4)} if "shape_distance" in face else {})}


SHIFT = 4  # fixed-point bits of the drawing coordinates: pixels * 16
AXIS_COLOURS_BGR = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # head x, y, z: red, green, blue


def _fixed(x, y) -> tuple[int, int]:
    """OpenCV's fixed-point pixel position (integer pixel centres are our 0-based centres)."""
    return int(round(x * (1 << SHIFT))), int(round(y * (1 << SHIFT)))


def draw_faces(image_rgb: np.ndarray, faces: list[dict], draw_pose: bool = False) -> np.ndarray:
    """A BGR copy of the image with each face's box and points drawn (anti-aliased, with
    sub-pixel positions), and with `draw_pose` its head axes (`draw_axes`)."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    radius = max(1.0, min(image_rgb.shape[:2]) / 250)
    thickness = max(1, int(round(radius / 2)))
    for face in faces:
        x0, y0, x1, y1 = face["box"]
        cv2.rectangle(canvas, _fixed(x0, y0), _fixed(x1, y1), (255, 160, 0), thickness, cv2.LINE_AA, SHIFT)
        for x, y in np.asarray(face["landmarks"]):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, _fixed(x, y), int(round(radius * (1 << SHIFT))), (0, 255, 0), -1, cv2.LINE_AA, SHIFT)
        if draw_pose and face.get("pose") is not None:
            draw_axes(canvas, face, 2 * thickness)
    return canvas


def draw_axes(canvas: np.ndarray, face: dict, thickness: int) -> None:
    """The head's x, y, z axes (red, green, blue), half the box's longer side long, from the
    nose tip, projected with the face's pose (`facemarks.pose.axis_endpoints`)."""
    x0, y0, x1, y1 = face["box"]
    nose = schemes.to_68(face["landmarks"], face["scheme"])[30]
    ends = axis_endpoints(HeadPose(**face["pose"]), nose, 0.5 * max(x1 - x0, y1 - y0))
    for end, colour in zip(ends, AXIS_COLOURS_BGR):
        cv2.arrowedLine(canvas, _fixed(*nose), _fixed(*end), colour, thickness, cv2.LINE_AA, SHIFT, 0.15)


class OutputNames:
    """Overlay file names in the output folder, unique even when inputs share a name."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.used: set[str] = set()

    def __call__(self, source: Path, suffix: str) -> Path:
        stem, k = f"{source.stem}_landmarks", 1
        name = stem + suffix
        while name in self.used:
            k += 1
            name = f"{stem}_{k}{suffix}"
        self.used.add(name)
        return self.out_dir / name


def find_faces(predictor, image: np.ndarray, path: Path, detector: str, boxes_file,
               frame: int | None = None) -> tuple[list[dict], str | None]:
    """(faces, note): the faces of an image (or video frame) in the boxes listed for it in
    the boxes file, else found by the detector; the note says why there is none."""
    if boxes_file is None:
        faces = predictor.predict(image, detector=detector)
        return faces, None if faces else NO_FACE_NOTE
    boxes = boxes_file.find(path, frame)
    if boxes is None:
        return [], NOT_LISTED_NOTE
    return (predictor.predict(image, boxes=boxes), None) if len(boxes) else ([], NO_BOX_NOTE)


def media_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image or video as it will be decoded, read cheaply (an image's
    header, a video's first frame); None when unreadable (reported when it is processed)."""
    if is_video(path):
        capture = cv2.VideoCapture(str(path))
        try:
            ok, frame = capture.read() if capture.isOpened() else (False, None)
        finally:
            capture.release()
        return (frame.shape[1], frame.shape[0]) if ok else None
    try:
        from PIL import Image  # reads the header only

        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)  # OpenCV applies EXIF rotations
        return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    except Exception:  # no Pillow, or a file it cannot parse: decode it as prediction will
        try:
            return tuple(read_image(path).shape[1::-1])
        except DataError:
            return None


def check_boxes_fit(boxes_file, files) -> None:
    """Before any prediction: DataError (naming the boxes file and entry) for a box that lies
    mostly outside the image or video it is listed for (see BoxesFile.check_fit)."""
    for path in files:
        if boxes_file.entries_for(path, is_video(path)):
            size = media_size(path)
            if size is not None:
                boxes_file.check_fit(path, *size, video=is_video(path))


def predict_image(predictor, path: Path, detector: str, boxes_file, overlay_path: Path | None,
                  draw_pose: bool = False) -> dict:
    image = read_image(path)
    faces, note = find_faces(predictor, image, path, detector, boxes_file)
    record = {"file": str(path), "width": image.shape[1], "height": image.shape[0],
              "faces": [face_record(f) for f in faces]}
    if note:
        record["note"] = note
    if overlay_path is not None:
        ok, encoded = cv2.imencode(overlay_path.suffix, draw_faces(image, faces, draw_pose))
        if not ok:
            raise DataError(overlay_path, "OpenCV could not encode the overlay image")
        fileio.write_bytes(overlay_path, encoded.tobytes())
        record["overlay"] = str(overlay_path)
    return record


class VideoOverlay:
    """An overlay video written frame by frame under a hidden temporary name in the output
    folder, and renamed to its final name only when complete (`finish`): an interrupted run
    never leaves a truncated video under the final name.

    Encoding: MPEG-4 Part 2 ('mp4v') in .mp4, else Motion-JPEG in .avi (both encoders ship
    with opencv-python-headless's FFmpeg); the writer opens on the first frame."""

    CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps
        self.writer = self.partial = self.target = None

    def write(self, frame_bgr: np.ndarray) -> None:
        if self.writer is None:
            self._open((frame_bgr.shape[1], frame_bgr.shape[0]))
        self.writer.write(frame_bgr)

    def _open(self, size: tuple[int, int]) -> None:
        for fourcc, suffix in self.CODECS:
            target = self.path.with_suffix(suffix)
            # OpenCV picks the container from the extension, so the temporary name keeps it.
            fd, partial = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{suffix}", dir=target.parent)
            os.close(fd)
            writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                self.writer, self.partial, self.target = writer, partial, target
                return
            writer.release()
            os.unlink(partial)
        raise DataError(self.path, "OpenCV cannot write a video here (neither mp4v nor MJPG works)")

    def finish(self) -> Path | None:
        """Close the video and move it to its final name; returns that name (None: no frame)."""
        if self.writer is None:
            return None
        self.writer.release()
        with fileio.atomic_path(self.target) as tmp:
            os.replace(self.partial, tmp)
        return self.target

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
            if os.path.exists(self.partial):
                os.unlink(self.partial)


class FrameFaces:
    """The faces of each frame of one video: followed by a VideoTracker (with ids), or, with
    a boxes file or without tracking options, found on every frame by `find_faces`."""

    def __init__(self, predictor, path: Path, detector: str, boxes_file, tracking: TrackerOptions | None,
                 fps: float):
        self.predictor, self.path, self.detector, self.boxes_file = predictor, path, detector, boxes_file
        self.tracker = None
        if boxes_file is None and tracking is not None:
            self.tracker = VideoTracker(predictor, lambda image: predictor.detect(image, detector), tracking, fps)

    def __call__(self, image: np.ndarray, index: int) -> dict:
        """(the frame's JSON entry, its faces) of frame `index`."""
        entry = {"frame": index}
        if self.tracker is None:
            faces, note = find_faces(self.predictor, image, self.path, self.detector, self.boxes_file, index)
        else:
            faces = self.tracker.step(image)
            note = None if faces else NO_FACE_NOTE
            entry["detector"] = self.tracker.detected
        entry["faces"] = [face_record(f) for f in faces]
        if note:
            entry["note"] = note
        return entry, faces

    def summary(self) -> dict | None:
        """The video's "tracking" entry (None without a tracker)."""
        if self.tracker is None:
            return None
        return {**self.tracker.options.to_dict(), "detector_runs": self.tracker.detector_runs,
                "tracks": self.tracker.tracks}


def predict_video(predictor, path: Path, detector: str, boxes_file, overlay_path: Path | None,
                  draw_pose: bool = False, tracking: TrackerOptions | None = None) -> dict:
    if not path.is_file():
        raise DataError(path, "video file not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(path, "not a readable video (corrupt or unsupported format)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # from the header; <= 0: unknown
    frames, written = [], None
    video_out = VideoOverlay(overlay_path, fps) if overlay_path is not None else None
    frame_faces = FrameFaces(predictor, path, detector, boxes_file, tracking, fps)
    try:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            image = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            entry, faces = frame_faces(image, len(frames))
            frames.append(entry)
            if video_out is not None:
                video_out.write(draw_faces(image, faces, draw_pose))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        written = video_out.finish() if video_out is not None else None
    except BaseException:
        if video_out is not None:
            video_out.abort()
        raise
    finally:
        capture.release()
    if not frames:
        announced = f"; its header announces {expected} frames" if expected > 0 else ""
        raise DataError(path, f"not a readable video (no frame could be decoded{announced})")
    record = {"file": str(path), "video": True, "fps": fps, "width": width, "height": height,
              "frames_expected": expected if expected > 0 else None, "frames_read": len(frames),
              "truncated": len(frames) < expected}
    if frame_faces.summary() is not None:
        record["tracking"] = frame_faces.summary()
    record["frames"] = frames
    if written is not None:
        record["overlay"] = str(written)
    return record


def _compact_number_lists(text: str) -> str:
    """Put every list of plain numbers (a point, a box) on one line of indented JSON."""
    # Only lists spanning lines: JSON strings cannot hold a raw newline, so no string is touched.
    return re.sub(r"\[\n[-+\d.eE,\s]*\]", lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text)


def write_json(data: dict, path: Path) -> None:
    """Write indented JSON atomically (fileio.write_text: temp file in the same folder, then rename)."""
    fileio.write_text(path, _compact_number_lists(json.dumps(data, indent=1)) + "\n")


def summary(path: Path, record: dict) -> str:
    """The line printed for a processed input."""
    if not record.get("video"):
        return f"{path}: {len(record['faces'])} face(s)" + (f" ({record['note']})" if "note" in record else "")
    frames = record["frames"]
    expected = record["frames_expected"]
    line = f"{path}: {len(frames)} of {expected} frames read" if expected else f"{path}: {len(frames)} frames read"
    if record["truncated"]:
        line += " (TRUNCATED: the file ends early or a frame could not be decoded)"
    line += f", faces found in {sum(1 for f in frames if f['faces'])}"
    if "tracking" in record:
        line += f" ({record['tracking']['tracks']} track(s), detector on {record['tracking']['detector_runs']} frames)"
    not_listed = sum(1 for f in frames if f.get("note") == NOT_LISTED_NOTE)
    return line + (f"; {not_listed} frame(s) {NOT_LISTED_NOTE}" if not_listed else "")


def predict_files(predictor, inputs, out_dir, detector: str = "haar", boxes_file=None, overlay: bool = True,
                  log=print, draw_pose: bool = False, tracking: TrackerOptions | None = TrackerOptions()) -> dict:
    """Predict on every input (images, folders, videos); returns the JSON document.
    `draw_pose` adds each face's head axes to the overlays. `tracking`: how videos are
    followed and smoothed (None: the detector on every frame, no ids; ignored with a boxes
    file, whose boxes are used on every frame).
    Failures are recorded per file ({"file", "error"}) and do not stop the others; a box of
    the boxes file that does not fit its image stops everything before any prediction."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = OutputNames(out_dir)
    files, skipped = collect_inputs(inputs, exclude=out_dir)
    if boxes_file is not None:
        check_boxes_fit(boxes_file, files)
    results, failed = [], 0
    for path in files:
        video = is_video(path)
        overlay_path = names(path, ".mp4" if video else ".jpg") if overlay else None
        try:
            if video:
                record = predict_video(predictor, path, detector, boxes_file, overlay_path, draw_pose, tracking)
            else:
                record = predict_image(predictor, path, detector, boxes_file, overlay_path, draw_pose)
        except (FacemarksError, OSError, cv2.error) as exc:
            message = str(exc) if isinstance(exc, DataError) else f"{path}: {exc}"
            results.append({"file": str(path), "error": message})
            failed += 1
            log(f"error: {message}")
            continue
        results.append(record)
        log(summary(path, record))
    for path in skipped:
        log(f"skipped {path}: not an image or video file (by extension)")
    document = {"checkpoint": predictor.source}
    if getattr(predictor, "first_stage", None):
        document["first_stage"] = predictor.first_stage
    return {**document, "backend": predictor.backend, "scheme": predictor.scheme.name,
            "detector": "boxes file" if boxes_file is not None else detector,
            "coordinates": "source image pixels, x then y, 0-based pixel-centre (top-left pixel centre = (0, 0))",
            "images": results, "skipped": [str(p) for p in skipped], "failed": failed,
            "truncated": sum(1 for r in results if r.get("truncated"))}
