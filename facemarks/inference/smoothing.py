"""Temporal smoothing of landmark tracks: the One Euro filter (Casiez, Roussel and Vogel,
"1 Euro filter: a simple speed-based low-pass filter for noisy input in interactive
systems", CHI 2012).

A first-order low-pass filter whose cutoff rises with the signal's speed: slow motion (a
face holding still) is smoothed hard, which removes jitter, and fast motion is followed
closely, which keeps the lag small. For each sample X_i, T_e seconds after the previous
one, with the previous filtered value X^_{i-1} and filtered speed dX^_{i-1}::

    alpha(f_c) = 1 / (1 + tau / T_e),   tau = 1 / (2 pi f_c)
    dX_i   = (X_i - X^_{i-1}) / T_e
    dX^_i  = alpha(d_cutoff) dX_i + (1 - alpha(d_cutoff)) dX^_{i-1}
    f_c    = min_cutoff + beta |dX^_i|
    X^_i   = alpha(f_c) X_i + (1 - alpha(f_c)) X^_{i-1}

The first sample passes unchanged (X^_0 = X_0, dX^_0 = 0). The speed is the difference to
the previous *filtered* value, as in the authors' reference implementation. Every
coordinate of every point is filtered on its own (its own speed and cutoff).

Units: min_cutoff and d_cutoff in Hz; beta in 1 / (coordinate unit), since beta |dX^|
is a frequency and the speed is in coordinate units per second (pixels of the frame for
points in frame pixels). On a constant-speed ramp v the steady lag L (coordinate units)
solves L = v / (2 pi (min_cutoff + beta (v + L / T_e))), so L <= v / (2 pi (min_cutoff
+ beta v)): raising beta cuts the lag, lowering min_cutoff cuts the jitter.
"""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff, period: float):
    """alpha = 1 / (1 + tau / T_e) with tau = 1 / (2 pi cutoff): the weight of the new sample
    in a first-order low-pass filter of cutoff `cutoff` (Hz) sampled every `period` seconds."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / period)


class OneEuroFilter:
    """One Euro filter of one landmark track: call it with each frame's points (any array
    shape, e.g. (N, 2)); it returns the filtered points (float64, same shape).

    min_cutoff: cutoff (Hz) at zero speed; lower = smoother, more lag.
    beta:       speed coefficient (1 / coordinate unit); higher = less lag on fast motion.
    d_cutoff:   cutoff (Hz) of the low-pass filter on the speed.
    frame_rate: frames per second, used when no timestamps are given.
    Call `reset()` when a new track starts (another face, or the face was lost).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0, frame_rate: float = 30.0):
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff), ("frame_rate", frame_rate)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a number >= 0, got {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.frame_rate = float(frame_rate)
        self.reset()

    def reset(self) -> None:
        """Forget the track: the next sample passes unchanged and starts a new one."""
        self.value = None   # X^_{i-1}
        self.speed = None   # dX^_{i-1}
        self.time = None    # timestamp of the previous sample, when one was given

    def __call__(self, points, timestamp: float | None = None) -> np.ndarray:
        """Filter one sample. timestamp: seconds; T_e is the difference to the previous
        sample's timestamp when both are known, else 1 / frame_rate."""
        points = np.asarray(points, dtype=np.float64)
        period = self._period(timestamp)
        if self.value is None:
            self.value, self.speed = points.copy(), np.zeros_like(points)
            return points.copy()
        if points.shape != self.value.shape:
            raise ValueError(f"points of shape {points.shape} on a track of shape {self.value.shape}; "
                             "reset() the filter for a new track")
        raw_speed = (points - self.value) / period
        alpha_d = smoothing_factor(self.d_cutoff, period)
        # a x + (1 - a) y written as y + a (x - y): a constant signal stays bit-identical
        self.speed = self.speed + alpha_d * (raw_speed - self.speed)
        alpha = smoothing_factor(self.min_cutoff + self.beta * self.speed_magnitude(), period)
        self.value = self.value + alpha * (points - self.value)
        return self.value.copy()

    def speed_magnitude(self) -> np.ndarray:
        """|dX^| in the cutoff: per coordinate here; a subclass may share one speed."""
        return np.abs(self.speed)

    def _period(self, timestamp) -> float:
        previous = self.time
        if timestamp is not None and previous is not None and not float(timestamp) > previous:
            raise ValueError(f"timestamps must increase: {float(timestamp)} after {previous}")
        self.time = None if timestamp is None else float(timestamp)
        if self.time is None or previous is None:
            return 1.0 / self.frame_rate
        return self.time - previous


def smooth_track(points, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 frame_rate: float = 30.0, timestamps=None) -> np.ndarray:
    """A whole track (T, ...) through a fresh OneEuroFilter, frame by frame (T, ...).
    timestamps: (T,) seconds, or None for frames 1 / frame_rate apart."""
    points = np.asarray(points, dtype=np.float64)
    if timestamps is not None and len(timestamps) != len(points):
        raise ValueError(f"{len(timestamps)} timestamps for {len(points)} frames")
    smoother = OneEuroFilter(min_cutoff, beta, d_cutoff, frame_rate)
    times = [None] * len(points) if timestamps is None else timestamps
    return np.stack([smoother(frame, time) for frame, time in zip(points, times)]) if len(points) else points.copy()
