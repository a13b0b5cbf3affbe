"""TF for reloc_ros: /tf and /tf_static broadcasters and a TF buffer, with two backends.

Conventions (REP-103/105, tf2): a ``TransformStamped`` with ``header.frame_id = parent`` and
``child_frame_id = child`` holds ``T_parent_child``, the pose of the child frame in the parent
frame, which maps points from child to parent coordinates: ``x_parent = T @ x_child``.
``buffer.lookup(target, source, t)`` returns ``T_target_source`` (maps points from ``source``
to ``target``; ``lookup("odom", "camera", t)`` is the pose of the camera in odom), exactly
what ``tf2_ros.Buffer.lookup_transform(target, source, t)`` returns. Messages are built and
read by :mod:`reloc_ros.ros.messages` (``transform_stamped_msg``, ``transform_to_matrix``).

**Backends**, two classes behind one interface (:class:`TfBackend`): :class:`Tf2RosBackend`
when ``import tf2_ros`` works (a full ROS 2 install) wraps ``TransformBroadcaster``,
``StaticTransformBroadcaster`` and ``Buffer`` + ``TransformListener``;
:class:`FallbackBackend` publishes and subscribes ``tf2_msgs/TFMessage`` on ``/tf`` and
``/tf_static`` with rclpy, with tf2_ros's QoS (``/tf``: reliable, keep last 100, volatile;
``/tf_static``: reliable, transient local, keep last 1 for the publisher and 100 for the
subscriber), and :class:`TransformStore` (pure Python) does what tf2's BufferCore does.
:func:`tf_backend` picks one (:data:`BACKEND` by default; the tests force ``"fallback"``).

**Lookup results**: :meth:`TfBuffer.lookup` returns ``None`` when the transform is not
available (frames unknown or not connected, stamp outside the cached interval, timeout);
:meth:`TfBuffer.lookup_or_raise` raises :class:`TfLookupError` (a ``LookupError``) with the
reason instead, for diagnostics. Time ``None`` or ``0`` means "latest available" (the
newest time at which every transform on the path is known, as tf2's ``Time(0)``).

**Extrapolation**: tf2 never extrapolates. Both backends allow a small tolerance
(``extrapolation_tolerance_s``, default 10 ms): a stamp at most that far outside a
transform's cached interval gets the nearest sample (a zero-order hold, not a linear
extrapolation, which would amplify noise). This covers the common case of an image whose
stamp is a few ms newer than the last odometry message. With tf2_ros only the "newer than
the latest data" side is handled (through ``get_latest_common_time``).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from abc import ABC, abstractmethod

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from reloc_ros.core import geometry as geo
from reloc_ros.ros.messages import check_frame_id, stamp_to_ns, transform_stamped_msg, transform_to_matrix

try:
    import tf2_ros as _tf2_ros

    BACKEND_NOTE = "tf2_ros imported"
except Exception as _e:  # ImportError, or a broken install
    _tf2_ros = None
    BACKEND_NOTE = f"tf2_ros unavailable ({type(_e).__name__}: {_e}); rclpy fallback in use"

#: ``"tf2_ros"`` or ``"fallback"``: the default backend.
BACKEND: str = "tf2_ros" if _tf2_ros is not None else "fallback"

__all__ = [
    "BACKEND", "BACKEND_NOTE", "TF_TOPIC", "TF_STATIC_TOPIC", "TfLookupError", "tf_qos",
    "tf_static_publisher_qos", "tf_static_subscriber_qos", "TfBackend", "Tf2RosBackend", "FallbackBackend",
    "tf_backend", "TfBroadcaster", "StaticTfBroadcaster", "TransformStore", "TfBuffer",
]

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
_NS = 1_000_000_000


class TfLookupError(LookupError):
    """A transform is not available; ``str(err)`` says why."""


# --------------------------------------------------------------------------- QoS (as tf2_ros)
def tf_qos() -> QoSProfile:
    """QoS of ``/tf`` publishers and subscribers: reliable, keep last 100, volatile."""
    return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def tf_static_publisher_qos() -> QoSProfile:
    """QoS of ``/tf_static`` publishers: reliable, keep last 1, transient local."""
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def tf_static_subscriber_qos() -> QoSProfile:
    """QoS of ``/tf_static`` subscribers: reliable, keep last 100, transient local."""
    return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _as_list(transforms) -> list:
    return [transforms] if hasattr(transforms, "child_frame_id") else list(transforms)


# --------------------------------------------------------------------------- fallback core
def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical linear interpolation of w-first unit quaternions (shortest arc)."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:  # nearly parallel: normalised lerp is exact to ~1e-7
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(d, 1.0))
    s = math.sin(theta)
    return (math.sin((1.0 - a) * theta) * q0 + math.sin(a * theta) * q1) / s


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

    def at(self, t_ns: int, tol_ns: int, child: str) -> np.ndarray:
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
        if i == 0:
            return geo.make_pose(self.trans[0], self.quats[0])
        if i == len(times):
            return geo.make_pose(self.trans[-1], self.quats[-1])
        t0, t1 = times[i - 1], times[i]
        a = (t_ns - t0) / (t1 - t0)
        trans = (1.0 - a) * self.trans[i - 1] + a * self.trans[i]
        return geo.make_pose(trans, _slerp(self.quats[i - 1], self.quats[i], a))


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
    """

    def __init__(self, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.01,
                 max_samples: int = 100_000):
        if not (cache_time_s > 0 and math.isfinite(cache_time_s)):
            raise ValueError(f"cache_time_s must be positive, got {cache_time_s!r}")
        if not (extrapolation_tolerance_s >= 0 and math.isfinite(extrapolation_tolerance_s)):
            raise ValueError(
                f"extrapolation_tolerance_s must be >= 0, got {extrapolation_tolerance_s!r}")
        self.cache_ns = int(round(cache_time_s * _NS))
        self.tol_ns = int(round(extrapolation_tolerance_s * _NS))
        self.max_samples = int(max_samples)
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
        return self._dynamic[child].at(t_ns, self.tol_ns, child)

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


# --------------------------------------------------------------------------- buffers
class TfBuffer(ABC):
    """Receives /tf and /tf_static and answers ``lookup(target, source, t) -> 4x4 | None``.

    Thread-safe: the node's executor fills it while a worker thread calls :meth:`lookup`.
    A lookup with ``timeout_s > 0`` blocks the calling thread, so never call it with a
    timeout from a callback of a single-threaded executor that also spins this node (it
    would wait for data that cannot arrive, as with tf2_ros). Made by
    :meth:`TfBackend.buffer`.
    """

    backend: str = ""

    @abstractmethod
    def set_transform(self, msg, static: bool = False) -> None:
        """Insert a transform directly (as if received on /tf, or /tf_static if ``static``)."""

    @abstractmethod
    def lookup_or_raise(self, target_frame: str, source_frame: str, stamp=None,
                        timeout_s: float = 0.0) -> np.ndarray:
        """As :meth:`lookup`, but raises :class:`TfLookupError` with the reason instead of
        returning ``None``."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the subscriptions from the node (the buffer's data stays)."""

    def lookup(self, target_frame: str, source_frame: str, stamp=None,
               timeout_s: float = 0.0) -> np.ndarray | None:
        """The 4x4 ``T_target_source`` at a time, or ``None`` when it is not available.

        Args:
            target_frame: frame to express the result in (e.g. ``"odom"``).
            source_frame: frame whose pose is wanted (e.g. ``"camera"``): the result maps
                points from ``source_frame`` to ``target_frame``.
            stamp: a time (see :func:`reloc_ros.ros.messages.stamp_to_ns`); ``None`` or 0
                for the latest available.
            timeout_s: how long to wait for the transform to become available (0: answer
                at once).
        """
        try:
            return self.lookup_or_raise(target_frame, source_frame, stamp, timeout_s)
        except TfLookupError:
            return None


class FallbackTfBuffer(TfBuffer):
    """:class:`TransformStore` fed by rclpy subscriptions to /tf and /tf_static.

    Args:
        node: the rclpy node that owns the subscriptions (``None``: no subscriptions, fed
            through :meth:`set_transform` only, e.g. in tests).
        cache_time_s, extrapolation_tolerance_s: see :class:`TransformStore`.
    """

    backend = "fallback"

    def __init__(self, node, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.01):
        self.node = node
        self.store = TransformStore(cache_time_s, extrapolation_tolerance_s)
        self._subs = []
        if node is not None:
            from rclpy.callback_groups import ReentrantCallbackGroup

            group = ReentrantCallbackGroup()
            self._subs = [
                node.create_subscription(TFMessage, TF_TOPIC, lambda m: self._on(m, False), tf_qos(),
                                         callback_group=group),
                node.create_subscription(TFMessage, TF_STATIC_TOPIC, lambda m: self._on(m, True),
                                         tf_static_subscriber_qos(), callback_group=group),
            ]

    def _on(self, msg: TFMessage, static: bool) -> None:
        for t in msg.transforms:
            self.store.set_transform(t, static=static)

    def set_transform(self, msg, static: bool = False) -> None:
        self.store.set_transform(msg, static)

    def lookup_or_raise(self, target_frame, source_frame, stamp=None, timeout_s=0.0) -> np.ndarray:
        return self.store.lookup(target_frame, source_frame, stamp, timeout_s)

    def destroy(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []


class Tf2RosTfBuffer(TfBuffer):
    """``tf2_ros.Buffer`` + ``TransformListener`` (a full ROS 2 install).

    Args:
        node: the rclpy node (required).
        cache_time_s: seconds of history.
        extrapolation_tolerance_s: see the module doc (only newer-than-latest is tolerated).
    """

    backend = "tf2_ros"

    def __init__(self, node, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.01):
        if node is None:
            raise ValueError("the tf2_ros backend needs a node")
        from rclpy.duration import Duration

        self.tol_ns = int(round(extrapolation_tolerance_s * _NS))
        self._buffer = _tf2_ros.Buffer(cache_time=Duration(nanoseconds=int(cache_time_s * _NS)), node=node)
        self._listener = _tf2_ros.TransformListener(self._buffer, node)

    def set_transform(self, msg, static: bool = False) -> None:
        if static:
            self._buffer.set_transform_static(msg, "reloc_ros")
        else:
            self._buffer.set_transform(msg, "reloc_ros")

    def lookup_or_raise(self, target_frame, source_frame, stamp=None, timeout_s=0.0) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            t_ns = stamp_to_ns(stamp)
        except ValueError as e:
            raise TfLookupError(f"bad stamp: {e}") from None
        timeout = Duration(nanoseconds=int(max(0.0, float(timeout_s)) * _NS))
        buf = self._buffer
        try:
            try:
                ts = buf.lookup_transform(target_frame, source_frame, Time(nanoseconds=t_ns), timeout)
            except _tf2_ros.ExtrapolationException:
                latest = stamp_to_ns(buf.get_latest_common_time(target_frame, source_frame))
                if not (t_ns > 0 and latest > 0 and 0 < t_ns - latest <= self.tol_ns):
                    raise
                ts = buf.lookup_transform(target_frame, source_frame, Time(nanoseconds=latest))
        except (_tf2_ros.TransformException, TypeError, ValueError) as e:
            raise TfLookupError(f"{type(e).__name__}: {e}") from None
        return transform_to_matrix(ts)

    def destroy(self) -> None:
        self._listener.unregister()


# --------------------------------------------------------------------------- backends
class TfBackend(ABC):
    """What a TF implementation provides: senders for /tf and /tf_static, and a buffer."""

    name: str = ""

    @abstractmethod
    def dynamic_sender(self, node):
        """``send(list of TransformStamped)`` publishing one message on /tf."""

    @abstractmethod
    def static_sender(self, node):
        """``send(all, new)`` publishing the whole static set (``all``; ``new`` were just added)."""

    @abstractmethod
    def buffer(self, node, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.01) -> TfBuffer:
        """A :class:`TfBuffer` listening on ``node``."""


class FallbackBackend(TfBackend):
    """Plain rclpy publishers and subscriptions, :class:`TransformStore` as the buffer."""

    name = "fallback"

    def dynamic_sender(self, node):
        pub = node.create_publisher(TFMessage, TF_TOPIC, tf_qos())
        return lambda lst: pub.publish(TFMessage(transforms=lst))

    def static_sender(self, node):
        pub = node.create_publisher(TFMessage, TF_STATIC_TOPIC, tf_static_publisher_qos())
        return lambda everything, new: pub.publish(TFMessage(transforms=everything))

    def buffer(self, node, cache_time_s=10.0, extrapolation_tolerance_s=0.01) -> TfBuffer:
        return FallbackTfBuffer(node, cache_time_s, extrapolation_tolerance_s)


class Tf2RosBackend(TfBackend):
    """tf2_ros's broadcasters and ``Buffer`` (a full ROS 2 install)."""

    name = "tf2_ros"

    def dynamic_sender(self, node):
        return _tf2_ros.TransformBroadcaster(node).sendTransform

    def static_sender(self, node):
        impl = _tf2_ros.StaticTransformBroadcaster(node)

        def send(everything, new):
            # rclpy's releases either publish only what they are given (then hand them the
            # whole set) or accumulate themselves but keep the *first* pose of a child frame
            # (then replace the entries of their accumulated message before sending).
            net = getattr(impl, "net_message", None)
            if net is None or not hasattr(net, "transforms"):
                impl.sendTransform(everything)
                return
            by_child = {t.child_frame_id: t for t in new}
            net.transforms = [by_child.get(old.child_frame_id, old) for old in net.transforms]
            impl.sendTransform(new)

        return send

    def buffer(self, node, cache_time_s=10.0, extrapolation_tolerance_s=0.01) -> TfBuffer:
        return Tf2RosTfBuffer(node, cache_time_s, extrapolation_tolerance_s)


_BACKENDS = {"tf2_ros": Tf2RosBackend, "fallback": FallbackBackend}


def tf_backend(name: str | None = None) -> TfBackend:
    """The backend ``name`` (``"tf2_ros"`` or ``"fallback"``), or :data:`BACKEND` for None."""
    name = BACKEND if name is None else name
    if name not in _BACKENDS:
        raise ValueError(f"backend must be 'tf2_ros' or 'fallback', got {name!r}")
    if name == "tf2_ros" and _tf2_ros is None:
        raise ImportError(f"backend 'tf2_ros' requested but {BACKEND_NOTE}")
    return _BACKENDS[name]()


# --------------------------------------------------------------------------- broadcasters
class TfBroadcaster:
    """Publishes dynamic transforms on ``/tf``.

    Args:
        node: the rclpy node that owns the publisher.
        backend: ``"tf2_ros"``, ``"fallback"`` or ``None`` for :data:`BACKEND`.
    """

    def __init__(self, node, *, backend: str | None = None):
        impl = tf_backend(backend)
        self.backend = impl.name
        self._send = impl.dynamic_sender(node)

    def send(self, transforms) -> None:
        """Publish ``transforms`` (a list of ``TransformStamped``, or a single one) in one
        ``TFMessage``; an empty list publishes nothing."""
        lst = _as_list(transforms)
        if lst:
            self._send(lst)


class StaticTfBroadcaster:
    """Publishes static transforms on ``/tf_static`` (transient local, keep last 1).

    Every publication carries *all* static transforms sent so far (one per child frame; a
    later transform for the same child frame replaces the earlier one, as tf2_ros's C++
    broadcaster does), so a late-joining listener receives the whole set.

    Args:
        node: the rclpy node that owns the publisher.
        backend: ``"tf2_ros"``, ``"fallback"`` or ``None`` for :data:`BACKEND`.
    """

    def __init__(self, node, *, backend: str | None = None):
        impl = tf_backend(backend)
        self.backend = impl.name
        self._lock = threading.Lock()
        self._sent: dict[str, object] = {}
        self._send = impl.static_sender(node)

    @property
    def transforms(self) -> list:
        """All static transforms sent so far (one per child frame)."""
        with self._lock:
            return list(self._sent.values())

    def send(self, transforms) -> None:
        """Add ``transforms`` (a list of ``TransformStamped``, or a single one) to the static
        set and publish the whole set."""
        lst = _as_list(transforms)
        if not lst:
            return
        with self._lock:
            for t in lst:
                self._sent[t.child_frame_id] = t
            self._send(list(self._sent.values()), lst)
