"""tf2's BufferCore in pure Python: a time-indexed transform tree, no rclpy needed.

:class:`TransformStore` is the buffer behind the node's fallback TF backend
(:mod:`reloc_ros.ros.tf`) and the TF reader of the bag-to-map converter
(:mod:`reloc_ros.tools.bag.to_map`), which plays a whole recording through it.

Conventions (REP-103/105, tf2): an edge ``parent -> child`` holds ``T_parent_child``;
``lookup(target, source, t)`` returns ``T_target_source``, as
``tf2_ros.Buffer.lookup_transform(target, source, t)``. Between two samples an edge is
interpolated (lerp of the translation, slerp of the rotation); tf2 never extrapolates, and
here a stamp at most ``extrapolation_tolerance_s`` outside an edge's samples gets the nearest
one (a zero-order hold). With ``sample_tolerance_s`` a stamp inside the samples also needs a
sample that near (tf2 interpolates across any gap; a converter must not).
"""

from __future__ import annotations

import bisect
import math
import threading
import time

import numpy as np

from reloc_ros.core import geometry as geo
from reloc_ros.ros.messages import check_frame_id, stamp_to_ns, transform_stamped_msg

__all__ = ["TfLookupError", "TransformStore", "slerp", "interpolate_pose"]

_NS = 1_000_000_000


class TfLookupError(LookupError):
    """A transform is not available; ``str(err)`` says why."""



def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical linear interpolation of w-first unit quaternions (shortest arc)."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 1.0 - 1e-10:  # within 3e-5 rad: normalised lerp is exact to 1e-15 (at 3.6°, 1e-6 rad off)
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(d, 1.0))
    s = math.sin(theta)
    return (math.sin((1.0 - a) * theta) * q0 + math.sin(a * theta) * q1) / s


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, a: float) -> np.ndarray:
    """The pose a fraction ``a`` of the way from ``T0`` to ``T1`` (4x4), as tf2 interpolates
    an edge between two samples: lerp of the translation, slerp of the rotation."""
    q = slerp(geo.matrix_to_quat(T0[:3, :3]), geo.matrix_to_quat(T1[:3, :3]), a)
    return geo.make_pose((1.0 - a) * T0[:3, 3] + a * T1[:3, 3], q)


class _History:
    """Time-sorted samples ``(t_ns, translation, w-first quaternion)`` of one edge."""

    __slots__ = ("parent", "times", "trans", "quats")

    def __init__(self, parent: str):
        self.parent = parent
        self.times: list[int] = []
        self.trans: list[np.ndarray] = []
        self.quats: list[np.ndarray] = []

    def insert(self, t_ns: int, trans: np.ndarray, quat: np.ndarray, cache_ns: int, max_n: int):
        if self.times and t_ns < self.times[-1] - cache_ns:
            # Older than the whole cache window: time went backwards (a bag loop, a
            # restarted simulation). Restart the history rather than ignore it forever.
            self.times, self.trans, self.quats = [], [], []
        i = bisect.bisect_left(self.times, t_ns)
        if i < len(self.times) and self.times[i] == t_ns:
            self.trans[i], self.quats[i] = trans, quat
        else:
            self.times.insert(i, t_ns)
            self.trans.insert(i, trans)
            self.quats.insert(i, quat)
        cut = bisect.bisect_left(self.times, self.times[-1] - cache_ns)
        cut = max(cut, len(self.times) - max_n)
        if cut > 0:
            del self.times[:cut], self.trans[:cut], self.quats[:cut]

    def at(self, t_ns: int, tol_ns: int, child: str, near_ns: int | None = None) -> np.ndarray:
        times = self.times
        if not times:
            raise TfLookupError(f"no data for {self.parent!r} -> {child!r}")
        if t_ns < times[0] - tol_ns or t_ns > times[-1] + tol_ns:
            raise TfLookupError(
                f"extrapolation: {self.parent!r} -> {child!r} is known from "
                f"{times[0] / _NS:.6f} to {times[-1] / _NS:.6f} s, requested {t_ns / _NS:.6f} s")
        i = bisect.bisect_left(times, t_ns)
        if i < len(times) and times[i] == t_ns:
            return geo.make_pose(self.trans[i], self.quats[i])
        if near_ns is not None and 0 < i < len(times) and min(t_ns - times[i - 1], times[i] - t_ns) > near_ns:
            raise TfLookupError(
                f"gap: {self.parent!r} -> {child!r} has no sample within {near_ns / _NS:.3f} s of "
                f"{t_ns / _NS:.6f} s (samples at {times[i - 1] / _NS:.6f} and {times[i] / _NS:.6f} s)")
        if i == 0:
            return geo.make_pose(self.trans[0], self.quats[0])
        if i == len(times):
            return geo.make_pose(self.trans[-1], self.quats[-1])
        t0, t1 = times[i - 1], times[i]
        a = (t_ns - t0) / (t1 - t0)
        trans = (1.0 - a) * self.trans[i - 1] + a * self.trans[i]
        return geo.make_pose(trans, slerp(self.quats[i - 1], self.quats[i], a))


class TransformStore:
    """The fallback's buffer: tf2's BufferCore in pure Python, thread-safe, no ROS needed.

    Each child frame has one parent (the frames form a forest, as in tf2); a transform for a
    child with a different parent than before replaces that edge (and its history). Dynamic
    edges keep a time-sorted history of ``cache_time_s`` seconds before their newest sample
    (and at most ``max_samples`` samples); static edges are valid at all times. A lookup
    walks from both frames up to their common ancestor (chains of any length, in either
    direction), evaluating every dynamic edge at the requested time: linear interpolation of
    the translation and slerp of the rotation between the two samples that bracket it.

    Args:
        cache_time_s: seconds of history kept per dynamic edge (tf2's default is 10).
        extrapolation_tolerance_s: how far outside an edge's cached interval a stamp may be
            and still get the nearest sample (zero-order hold); 0 for tf2's strictness.
        max_samples: hard cap on samples per edge (memory bound for very high rates).
        sample_tolerance_s: None (tf2: interpolate across any gap), or how near a stamp
            inside an edge's samples the nearer of its two bracketing samples must be.
    """

    def __init__(self, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.01,
                 max_samples: int = 100_000, sample_tolerance_s: float | None = None):
        if not (cache_time_s > 0 and math.isfinite(cache_time_s)):
            raise ValueError(f"cache_time_s must be positive, got {cache_time_s!r}")
        if not (extrapolation_tolerance_s >= 0 and math.isfinite(extrapolation_tolerance_s)):
            raise ValueError(
                f"extrapolation_tolerance_s must be >= 0, got {extrapolation_tolerance_s!r}")
        self.cache_ns = int(round(cache_time_s * _NS))
        self.tol_ns = int(round(extrapolation_tolerance_s * _NS))
        self.max_samples = int(max_samples)
        if sample_tolerance_s is not None and not (sample_tolerance_s >= 0 and math.isfinite(sample_tolerance_s)):
            raise ValueError(f"sample_tolerance_s must be >= 0 or None, got {sample_tolerance_s!r}")
        self.near_ns = None if sample_tolerance_s is None else int(round(sample_tolerance_s * _NS))
        self._cond = threading.Condition(threading.Lock())
        self._dynamic: dict[str, _History] = {}
        self._static: dict[str, tuple[str, np.ndarray]] = {}
        #: Number of transforms ignored because they were malformed.
        self.rejected = 0

    # ---- input
    def set_transform(self, msg, static: bool = False) -> bool:
        """Insert a ``TransformStamped``. Returns False (and counts it in :attr:`rejected`)
        when it is malformed: empty, equal or '/'-prefixed frame ids, non-finite values, a
        zero quaternion, a bad stamp.

        Args:
            msg: the transform (``header.frame_id`` = parent, ``child_frame_id`` = child).
            static: True for ``/tf_static`` transforms (valid at all times).
        """
        try:
            parent = check_frame_id(msg.header.frame_id, "parent")
            child = check_frame_id(msg.child_frame_id, "child")
            if parent == child:
                raise ValueError("self transform")
            t_ns = stamp_to_ns(msg.header.stamp)
            tr = msg.transform
            trans = np.array([tr.translation.x, tr.translation.y, tr.translation.z], np.float64)
            q = geo.quat_from_ros(tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w)
            if not (np.all(np.isfinite(trans)) and np.all(np.isfinite(q))):
                raise ValueError("non-finite transform")
            q = geo.normalize_quat(q)
        except (ValueError, TypeError, AttributeError, OverflowError):
            with self._cond:
                self.rejected += 1
            return False
        self._insert(parent, child, t_ns, trans, q, static)
        return True

    def set_matrix(self, parent: str, child: str, stamp, T, static: bool = False) -> None:
        """Insert ``T_parent_child`` (4x4) at ``stamp`` (any form of :func:`stamp_to_ns`).

        Raises:
            ValueError: as :func:`reloc_ros.ros.messages.transform_stamped_msg`.
        """
        if not self.set_transform(transform_stamped_msg(T, stamp, parent, child), static):
            raise ValueError("transform rejected")

    def _insert(self, parent, child, t_ns, trans, q, static):
        with self._cond:
            if static:
                self._dynamic.pop(child, None)
                self._static[child] = (parent, geo.make_pose(trans, q))
            else:
                self._static.pop(child, None)
                hist = self._dynamic.get(child)
                if hist is None or hist.parent != parent:
                    hist = self._dynamic[child] = _History(parent)
                hist.insert(t_ns, trans, q, self.cache_ns, self.max_samples)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget every transform (static ones included)."""
        with self._cond:
            self._dynamic.clear()
            self._static.clear()

    def frames(self) -> set[str]:
        """All frame ids known (parents and children)."""
        with self._cond:
            out = set(self._dynamic) | set(self._static)
            out |= {h.parent for h in self._dynamic.values()}
            out |= {p for p, _ in self._static.values()}
            return out

    def edges(self) -> list[tuple[str, str, str]]:
        """Every edge as ``(parent, child, 'static' | 'N samples')``, sorted."""
        with self._cond:
            out = [(p, c, "static") for c, (p, _) in self._static.items()]
            out += [(h.parent, c, f"{len(h.times)} samples") for c, h in self._dynamic.items()]
        return sorted(out)

    def path_problem(self, target_frame: str, source_frame: str) -> str | None:
        """None when the tree links the two frames (at some time), else why not: an
        unknown frame, a loop, or two trees that are not connected."""
        with self._cond:
            try:
                for f in (target_frame, source_frame):
                    if not self._is_known(f):
                        return f"frame {f!r} does not exist"
                up_src, up_tgt = self._chain(source_frame), self._chain(target_frame)
            except TfLookupError as e:
                return str(e)
        if set(up_src) & set(up_tgt):
            return None
        return f"{target_frame!r} and {source_frame!r} are not connected (roots {up_tgt[-1]!r} and {up_src[-1]!r})"

    # ---- queries
    def _parent_of(self, frame: str) -> str | None:
        if frame in self._static:
            return self._static[frame][0]
        hist = self._dynamic.get(frame)
        return hist.parent if hist is not None else None

    def _chain(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        chain, seen = [frame], {frame}
        while True:
            p = self._parent_of(chain[-1])
            if p is None:
                return chain
            if p in seen:
                raise TfLookupError(f"the tf tree has a loop through {p!r}")
            chain.append(p)
            seen.add(p)

    def _is_known(self, frame: str) -> bool:
        if frame in self._static or frame in self._dynamic:
            return True
        return any(h.parent == frame for h in self._dynamic.values()) or any(
            p == frame for p, _ in self._static.values())

    def _edge(self, child: str, t_ns: int) -> np.ndarray:
        if child in self._static:
            return self._static[child][1]
        return self._dynamic[child].at(t_ns, self.tol_ns, child, self.near_ns)

    def _lookup_locked(self, target: str, source: str, t_ns: int) -> np.ndarray:
        for f in (target, source):
            if not self._is_known(f):
                raise TfLookupError(f"frame {f!r} does not exist")
        if target == source:
            return np.eye(4)
        up_src = self._chain(source)
        up_tgt = self._chain(target)
        index_src = {f: i for i, f in enumerate(up_src)}
        k_tgt = next((i for i, f in enumerate(up_tgt) if f in index_src), None)
        if k_tgt is None:
            raise TfLookupError(f"{target!r} and {source!r} are not connected "
                                f"(roots {up_tgt[-1]!r} and {up_src[-1]!r})")
        k_src = index_src[up_tgt[k_tgt]]
        children = up_src[:k_src] + up_tgt[:k_tgt]  # every edge below the common ancestor
        if t_ns == 0:
            newest = [self._dynamic[c].times[-1] for c in children if c in self._dynamic]
            t_ns = min(newest) if newest else 0
        T_anc_src = np.eye(4)
        for c in up_src[:k_src]:
            T_anc_src = self._edge(c, t_ns) @ T_anc_src
        T_anc_tgt = np.eye(4)
        for c in up_tgt[:k_tgt]:
            T_anc_tgt = self._edge(c, t_ns) @ T_anc_tgt
        return geo.invert(T_anc_tgt) @ T_anc_src

    def lookup(self, target_frame: str, source_frame: str, stamp=None,
               timeout_s: float = 0.0) -> np.ndarray:
        """``T_target_source`` at ``stamp``: maps points from ``source_frame`` to
        ``target_frame`` coordinates (the pose of ``source_frame`` in ``target_frame``).

        Args:
            target_frame: frame to express the result in (e.g. ``"odom"``).
            source_frame: frame whose pose is wanted (e.g. ``"camera"``).
            stamp: time (seconds, ``builtin_interfaces/Time``, ``rclpy.time.Time``);
                ``None`` or 0 for the latest time at which the whole path is known.
            timeout_s: wait up to this long for the transform to become available (other
                threads inserting data wake the wait up); 0 answers at once.

        Raises:
            TfLookupError: unknown or unconnected frames, a stamp outside the cached
                interval (beyond the tolerance), or a loop in the tree.
        """
        try:
            t_ns = stamp_to_ns(stamp)
        except ValueError as e:
            raise TfLookupError(f"bad stamp: {e}") from None
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        with self._cond:
            while True:
                try:
                    return self._lookup_locked(target_frame, source_frame, t_ns)
                except TfLookupError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._cond.wait(remaining)
