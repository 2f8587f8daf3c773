"""Photometric augmentation speed: every op at once (occlusion, colour, blur, noise) on one
crop, as `facemarks.data.augment.photometric` applies them per training sample.

    python benchmarks/augment_speed.py --input-size 112 --repeats 5

Target: under 10 ms per 112 px image (0.66 ms measured on 1 thread; a per-pixel Python loop would be
hundreds of times slower). Moved here from tests/test_transforms.py: wall-clock limits on a
shared CPU are not tests.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import cv2
import numpy as np

from facemarks.data.augment import AugmentParams, photometric

TARGET_S = 0.010  # per image at 112 px


def every_op(seed: int = 1) -> AugmentParams:
    return AugmentParams(brightness=1.1, contrast=0.9, saturation=1.2, blur_sigma=1.0, noise_std=4.0,
                         occlusion=(0.2, 0.2, 0.3, 0.3), seed=seed)


def seconds_per_image(image: np.ndarray, images: int) -> float:
    started = time.perf_counter()
    for k in range(images):
        photometric(image, every_op(k))
    return (time.perf_counter() - started) / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--images", type=int, default=200, help="images per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="measurements; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    args = parser.parse_args()

    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(10)
    image = cv2.GaussianBlur(rng.integers(30, 220, (args.input_size, args.input_size, 3)).astype(np.uint8), (0, 0), 1.0)
    seconds_per_image(image, 10)  # warm-up
    runs = [seconds_per_image(image, args.images) for _ in range(args.repeats)]
    median = statistics.median(runs)
    print(f"machine: {platform.processor() or platform.machine()}, OpenCV {cv2.__version__}, {args.threads} thread(s)")
    print(f"photometric, every op, {args.input_size} px: {1000 * median:.3f} ms per image "
          f"(median of {args.repeats} x {args.images}; runs {', '.join(f'{1000 * r:.3f}' for r in runs)} ms)")
    if args.input_size == 112:
        print(f"target < {1000 * TARGET_S:.0f} ms: {'met' if median < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
