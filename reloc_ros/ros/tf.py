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

import threading
from abc import ABC, abstractmethod

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from reloc_ros.ros.messages import stamp_to_ns, transform_to_matrix
from reloc_ros.ros.tf_store import TfLookupError, TransformStore

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
        self.tol_ns = int(round(extrapolation_tolerance_s * _NS))
        self._buffer = _tf2_ros.Buffer(cache_time=Duration(nanoseconds=int(cache_time_s * _NS)), node=node)
        self._listener = _tf2_ros.TransformListener(self._buffer, node)

    def set_transform(self, msg, static: bool = False) -> None:
        if static:
            self._buffer.set_transform_static(msg, "reloc_ros")
        else:
            self._buffer.set_transform(msg, "reloc_ros")

    def lookup_or_raise(self, target_frame, source_frame, stamp=None, timeout_s=0.0) -> np.ndarray:
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
        before = list(getattr(node, "publishers", ()))
        self._send = impl.dynamic_sender(node)
        self._node = node
        # the publisher the backend created, whichever it is, so that destroy() can remove it
        self._pubs = [p for p in getattr(node, "publishers", ()) if all(p is not q for q in before)]

    def destroy(self) -> None:
        """Remove the /tf publisher from the node (a managed node's cleanup)."""
        for p in self._pubs:
            self._node.destroy_publisher(p)
        self._pubs = []

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
