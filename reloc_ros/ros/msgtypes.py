"""Where message classes come from, and stamps: the base of :mod:`reloc_ros.ros.messages`.

Every builder takes ``types=``, the source of the message classes: :func:`rclpy_types` (the
default; ``sensor_msgs.msg.Image`` and so on, for publishing) or :func:`rosbags_types` (the
dataclasses of a rosbags type store, for writing bags). Stamps (:func:`stamp_to_ns`): a
``builtin_interfaces/Time`` (either kind), an ``rclpy.time.Time``, a float number of
**seconds**, or an int number of **nanoseconds**. Nothing here imports rclpy at module level.
"""

from __future__ import annotations

import importlib
import math
import numbers
from functools import lru_cache
from typing import Any, Callable

import numpy as np


__all__ = ["MessageTypes", "rclpy_types", "rosbags_types", "stamp_to_ns", "time_msg", "header_msg"]

_NS = 1_000_000_000


# --------------------------------------------------------------------------- message classes
class MessageTypes:
    """Where the builders get their message classes from.

    Args:
        name: ``"rclpy"`` or ``"rosbags:<distro>"`` (for messages and logs).
        lookup: ``lookup("sensor_msgs/msg/Image") -> class``.
        byte_array: what a ``uint8[]`` field takes, from a 1-D ``uint8`` numpy array.
        float_list: what an unbounded ``float64[]`` field takes, from a 1-D float64 array.
        store: the rosbags type store (serialisation, bag connections), or None for rclpy.

    Both kinds of class are built with keyword arguments for every field, so one builder
    serves both.
    """

    def __init__(self, name: str, lookup: Callable[[str], type], byte_array: Callable[[np.ndarray], Any],
                 float_list: Callable[[np.ndarray], Any], store: Any = None):
        self.name, self._lookup, self.store = name, lookup, store
        self.byte_array, self.float_list = byte_array, float_list
        self._cache: dict[str, type] = {}

    def __call__(self, msgtype: str) -> type:
        """The class of ``pkg/msg/Name``."""
        cls = self._cache.get(msgtype)
        if cls is None:
            cls = self._cache[msgtype] = self._lookup(msgtype)
        return cls

    def __repr__(self) -> str:
        return f"MessageTypes({self.name!r})"


def _rclpy_class(msgtype: str) -> type:
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


@lru_cache(maxsize=None)
def rclpy_types() -> MessageTypes:
    """The rclpy message classes (``sensor_msgs.msg.Image``, ...), for publishing."""
    return MessageTypes("rclpy", _rclpy_class, lambda a: a.tobytes(), lambda a: [float(v) for v in a])


@lru_cache(maxsize=None)
def rosbags_types(distro: str = "kilted") -> MessageTypes:
    """The dataclasses of the rosbags type store of a ROS 2 distribution ('kilted' or 'jazzy')."""
    from rosbags.typesys import Stores, get_typestore  # lazy: only the bag tools need rosbags; the node must not load it

    stores = {"kilted": Stores.ROS2_KILTED, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f"unknown ROS 2 distribution {distro!r}: use one of {', '.join(stores)}")
    store = get_typestore(stores[distro])
    return MessageTypes(f"rosbags:{distro}", lambda name: store.types[name], lambda a: a,
                        lambda a: np.asarray(a, dtype=np.float64), store)


def _types(types: MessageTypes | None) -> MessageTypes:
    return rclpy_types() if types is None else types


# --------------------------------------------------------------------------- stamps
def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds of a time.

    Args:
        stamp: ``None`` (0); a float number of seconds (>= 0, finite); an int number of
            nanoseconds (>= 0); a ``builtin_interfaces/Time`` (``sec``, ``nanosec``) of
            either kind; or an ``rclpy.time.Time`` (``nanoseconds``).

    Raises:
        ValueError: negative, non-finite or otherwise unusable time.
    """
    if stamp is None:
        return 0
    if hasattr(stamp, "nanoseconds") and not hasattr(stamp, "sec"):  # rclpy.time.Time
        ns = int(stamp.nanoseconds)
    elif hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):  # builtin_interfaces/Time
        ns = int(stamp.sec) * _NS + int(stamp.nanosec)
    elif isinstance(stamp, numbers.Integral) and not isinstance(stamp, bool):
        ns = int(stamp)
    elif isinstance(stamp, numbers.Real) and not isinstance(stamp, bool):
        s = float(stamp)
        if not math.isfinite(s):
            raise ValueError(f"time must be finite, got {stamp!r}")
        sec = math.floor(s)
        ns = int(sec) * _NS + int(round((s - sec) * _NS))
    else:
        raise ValueError(f"cannot interpret {stamp!r} as a time")
    if ns < 0:
        raise ValueError(f"time must not be negative, got {stamp!r}")
    return ns


def time_msg(stamp, types: MessageTypes | None = None):
    """``builtin_interfaces/msg/Time`` of any form :func:`stamp_to_ns` takes."""
    ns = stamp_to_ns(stamp)
    if ns // _NS > 2**31 - 1:
        raise ValueError(f"time {stamp!r} does not fit builtin_interfaces/Time (int32 seconds)")
    return _types(types)("builtin_interfaces/msg/Time")(sec=ns // _NS, nanosec=ns % _NS)


def header_msg(stamp, frame_id: str, types: MessageTypes | None = None):
    """``std_msgs/msg/Header``."""
    t = _types(types)
    return t("std_msgs/msg/Header")(stamp=time_msg(stamp, t), frame_id=str(frame_id))
