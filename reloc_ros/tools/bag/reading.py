"""Reading a rosbag2 folder: check that a path is one, list its topics, resolve their types.

Shared by the replay (:mod:`reloc_ros.tools.bag.replay`), the online evaluator
(:mod:`reloc_ros.tools.bag.evaluate`) and the bag-to-map converter
(:mod:`reloc_ros.tools.bag.to_map`). The bags are read with ``rosbags`` (mcap or sqlite3); no
rclpy at module level: :func:`message_class` imports only the message package it is asked for.
"""

from __future__ import annotations

import importlib
import struct
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from reloc_ros.tools.bag import topics as tp

__all__ = ["BagFolderError", "BagReadError", "BagTopic", "IMAGE_TYPES", "bag_folder", "topics_of", "open_bag_topics",
           "default_image_topic", "message_class", "header_stamp_ns"]

#: The message types of an image topic.
IMAGE_TYPES = (tp.IMAGE, tp.COMPRESSED_IMAGE)
_NS = 1_000_000_000


class BagFolderError(ValueError):
    """A path that is not a rosbag2 folder; ``path`` and ``problem`` say which and why."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


class BagReadError(RuntimeError):
    """A bag that cannot be read as asked (damaged, a topic with two types, an unknown
    message type). ``str(err)`` names the bag or the type, and the problem."""


def bag_folder(bag: Path | str) -> Path:
    """The rosbag2 folder of ``bag``.

    Args:
        bag: the folder itself, or one of its files (metadata.yaml, *.mcap, *.db3).

    Raises:
        BagFolderError: no such folder, or no ``metadata.yaml`` in it.
    """
    p = Path(bag)
    if p.is_file() and (p.parent / "metadata.yaml").is_file():
        p = p.parent
    if not p.is_dir():
        raise BagFolderError(p, "bag folder does not exist")
    if not (p / "metadata.yaml").is_file():
        raise BagFolderError(p, "not a rosbag2 folder (no metadata.yaml)")
    return p


@dataclass(frozen=True)
class BagTopic:
    """A topic of a bag.

    Attributes:
        name: the topic name.
        msgtype: its type, ``pkg/msg/Name``.
        count: the number of messages on it.
        latched: recorded transient local (or the ``tf_static`` topic): a late subscriber
            must still get its messages.
    """

    name: str
    msgtype: str
    count: int
    latched: bool


def _is_latched(conn, tf_static: str) -> bool:
    if conn.topic == tf_static:
        return True
    profiles = getattr(conn.ext, "offered_qos_profiles", None) or []
    return any(getattr(q, "durability", None) == QosDurability.TRANSIENT_LOCAL for q in profiles)


def topics_of(reader, tf_static: str = tp.TOPIC_TF_STATIC) -> dict[str, BagTopic]:
    """The topics of an open ``rosbags`` reader (name -> :class:`BagTopic`), in the bag's order.

    Args:
        reader: an open :class:`rosbags.rosbag2.Reader`.
        tf_static: the name of the static TF topic (always latched).

    Raises:
        BagReadError: a topic has two types in the bag.
    """
    out: dict[str, BagTopic] = {}
    for c in reader.connections:
        prev = out.get(c.topic)
        if prev is not None and prev.msgtype != c.msgtype:
            raise BagReadError(f"topic {c.topic} has two types in the bag: {prev.msgtype} and {c.msgtype}")
        latched = _is_latched(c, tf_static) or (prev.latched if prev else False)
        out[c.topic] = BagTopic(c.topic, c.msgtype, (prev.count if prev else 0) + int(c.msgcount), latched)
    return out


def open_bag_topics(bag: Path | str, tf_static: str = tp.TOPIC_TF_STATIC) -> dict[str, BagTopic]:
    """The topics of a bag (name -> :class:`BagTopic`), in the bag's order.

    Args:
        bag: the rosbag2 folder (or one of its files).
        tf_static: the name of the static TF topic (always latched).

    Raises:
        BagFolderError: not a rosbag2 folder.
        BagReadError: the bag cannot be read, or a topic has two types.
    """
    path = bag_folder(bag)
    try:
        with Reader(path) as reader:
            return topics_of(reader, tf_static)
    except BagReadError:
        raise
    except Exception as e:  # rosbags raises its own errors for broken bags
        raise BagReadError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None


def default_image_topic(bag_topics: dict[str, BagTopic], names: tp.BagTopics | None = None) -> str | None:
    """The image topic to wait on and to time.

    Args:
        bag_topics: the bag's topics (from :func:`open_bag_topics`).
        names: the reloc_ros names to prefer (default :class:`~reloc_ros.tools.bag.topics.BagTopics`).

    Returns:
        The colour image (raw, then compressed) of ``names``, else the first Image /
        CompressedImage topic of the bag, else None.
    """
    names = names or tp.BagTopics()
    for t in (names.color_image, names.color_compressed):
        if t in bag_topics and bag_topics[t].msgtype in IMAGE_TYPES:
            return t
    for t in bag_topics.values():
        if t.msgtype in IMAGE_TYPES:
            return t.name
    return None


def message_class(msgtype: str):
    """The rclpy message class of a type name.

    Args:
        msgtype: ``pkg/msg/Name`` (``pkg/Name`` accepted).

    Raises:
        BagReadError: not a type name, or its package is not installed.
    """
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise BagReadError(f"not a ROS message type name: {msgtype!r}")
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as e:
        raise BagReadError(f"no Python message class for {msgtype} ({e})") from None


def header_stamp_ns(raw: bytes) -> int | None:
    """The ``header.stamp`` (ns) of a serialized message, without deserializing it.

    Args:
        raw: the CDR bytes of a message that starts with a ``std_msgs/Header`` (Image,
            CompressedImage, CameraInfo, PoseStamped, ...).

    Returns:
        The stamp, or None when the bytes are too short or not plain CDR.
    """
    if len(raw) < 12 or raw[0] != 0:
        return None
    if raw[1] not in (0, 1):  # CDR_BE, CDR_LE
        return None
    sec, nsec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * _NS + nsec
