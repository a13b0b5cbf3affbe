"""ROS 2 adapters of reloc_ros: everything here needs rclpy and ROS message packages.

* :mod:`reloc_ros.ros.image_convert` -- ``sensor_msgs/Image`` / ``CompressedImage`` to an
  RGB ``uint8`` array (cv_bridge when installed, a numpy implementation otherwise), with
  strict validation so that a malformed frame raises ``ImageConversionError`` and nothing
  else.
* :mod:`reloc_ros.ros.tf_compat` -- 4x4 poses to and from ``geometry_msgs/TransformStamped``,
  /tf and /tf_static broadcasters and a TF buffer (tf2_ros when installed, a maintained
  pure-rclpy fallback otherwise).

The core of the project (``reloc_ros.geometry``, ``reloc_ros.data``) never imports this
package. The two time helpers below are shared by both modules; they import
``builtin_interfaces`` lazily so that importing this package costs nothing.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["stamp_to_msg", "stamp_to_ns"]

_NS = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds of a time given in any of the forms the adapters accept.

    Args:
        stamp: ``None`` (0), seconds as ``int``/``float`` (>= 0, finite), a
            ``builtin_interfaces/Time`` message (``sec``, ``nanosec``), or an
            ``rclpy.time.Time`` (``nanoseconds``).

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
        ns = int(stamp) * _NS
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


def stamp_to_msg(stamp):
    """A ``builtin_interfaces/Time`` message for ``stamp`` (any form :func:`stamp_to_ns` takes)."""
    from builtin_interfaces.msg import Time

    ns = stamp_to_ns(stamp)
    if ns // _NS > 2**31 - 1:
        raise ValueError(f"time {stamp!r} does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=ns // _NS, nanosec=ns % _NS)
