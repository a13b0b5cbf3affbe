"""The image codec of the ROS message layer (re-exported by :mod:`reloc_ros.ros.messages`).

**Images.** :func:`image_to_rgb` takes a ``sensor_msgs/Image`` and :func:`compressed_to_rgb` a
``sensor_msgs/CompressedImage``; both return a fresh, C-contiguous ``(H, W, 3)`` ``uint8``
array in **RGB** order that does not share memory with the message. Any malformed message
raises :class:`ImageConversionError` (a ``ValueError``) with a short reason, and never any
other exception, so that the node can skip the frame with a throttled warning.
:func:`image_to_array` gives the raw pixels instead (depth: 16UC1 millimetres, 32FC1 metres).

Raw encodings (``sensor_msgs/image_encodings``):

================  ==========================================================================
``rgb8``          as is
``bgr8``          channels reversed
``rgba8``         alpha dropped
``bgra8``         channels reversed, alpha dropped
``mono8``         grey broadcast to three channels
``8UC1``          as ``mono8``
``8UC3``          as ``bgr8`` (OpenCV's channel order, as cv_bridge treats it)
``8UC4``          as ``bgra8``
``mono16``        16-bit grey, scaled to 8 bits (below), broadcast to three channels
``16UC1``         as ``mono16``
``rgb16`` ...     ``rgb16``, ``bgr16``, ``rgba16``, ``bgra16``: as their 8-bit twins, scaled
``32FC1``         float depth: :func:`image_to_array` only (not a colour image)
================  ==========================================================================

**16 to 8 bits**: ``v8 = round(v16 * 255 / 65535)`` (computed exactly as
``(v16 + 128) // 257``), a fixed full-range linear map. It is what cv_bridge does
(``convertTo`` with ``255/65535``), so both backends agree, and it is deterministic per pixel:
a per-image normalisation (by the frame's own maximum) would change the brightness of a scene
from frame to frame, which hurts a relocalizer that matches frames against a database. A
camera that puts 10 or 12 significant bits in the low bits of a 16-bit word will come out
dark; such a source should be rescaled by its driver (or a future parameter).
``is_bigendian`` is honoured for 16-bit data; rows may be padded (``step > width * bpp``);
trailing bytes after ``step * height`` are ignored.

Compressed images: JPEG and PNG payloads (recognised by their magic bytes; anything else is
rejected without being handed to a decoder), decoded with ``cv2.imdecode``
(``IMREAD_COLOR | IMREAD_ANYDEPTH | IMREAD_IGNORE_ORIENTATION``: grey is broadcast, alpha
dropped, 16-bit PNG scaled as above). OpenCV returns BGR; the format string follows
image_transport's convention ``"<orig encoding>; <jpeg|png> compressed <bgr8|rgb8|...>"``:
a payload declared ``compressed rgb8`` was encoded from an RGB buffer, so OpenCV's "BGR"
array is really RGB and is not reordered; everything else (``"jpeg"``, ``"png"``,
``"... compressed bgr8"``) is reordered BGR -> RGB. ``compressedDepth`` payloads (depth, not
colour) are rejected. The image size is read from the JPEG/PNG header *before* decoding so a
small file that declares a huge image (a decompression bomb) is refused cheaply.

Validation (both kinds): supported encoding, width and height > 0, at most
:data:`MAX_PIXELS` pixels, ``step >= width * bytes_per_pixel``, ``len(data) >= step *
height``, field types sane (rclpy does not check field types unless
``ROS_PYTHON_CHECK_FIELDS`` is set, so a message may hold anything).

**Backends** (:data:`BACKEND`):

* ``"cv_bridge"`` -- ROS 2's ``cv_bridge`` is importable and passed a smoke conversion at
  import. Raw images are validated here first, then normalised to the layout every cv_bridge
  release handles (compact rows, native byte order, generic ``8UC*``/``16UC1`` renamed to
  their named twins, since cv_bridge refuses to convert a generic encoding to ``rgb8``),
  and converted with ``imgmsg_to_cv2(..., desired_encoding="rgb8")``. The normalisation is
  needed because released cv_bridge versions differ: some ignore ``step`` (padded rows come
  out sheared) and some call ``ndarray.newbyteorder()``, which numpy 2 removed (big-endian
  data crashes). Compressed images are decoded with OpenCV directly, as described above:
  cv_bridge's ``compressed_imgmsg_to_cv2`` is the same ``cv2.imdecode`` followed by a
  ``bgr8 -> rgb8`` conversion that fails on grey or 4-channel PNGs and ignores the format
  string.
* ``"numpy"`` -- the fallback, a small numpy implementation in this module. rosbags-image
  (installed) was considered and rejected: its ``image_to_cvimage`` builds the array with
  ``np.ndarray(shape=(height, width, ...), buffer=data)`` and so ignores ``step`` (padded
  rows are misread), and its compressed path ``assert``s on undecodable data (an
  ``AssertionError``, or garbage under ``python -O``).
"""

from __future__ import annotations

import operator
import sys
from types import SimpleNamespace
from typing import NamedTuple

import cv2
import numpy as np


from reloc_ros.ros.msgtypes import MessageTypes, _types, header_msg

__all__ = ["ImageConversionError", "ENCODINGS", "SUPPORTED_ENCODINGS", "MAX_PIXELS", "MAX_COMPRESSED_BYTES",
           "BACKEND", "BACKEND_NOTE", "image_to_array", "image_to_rgb", "compressed_to_rgb", "msg_to_rgb",
           "rgb_to_pixels", "image_msg", "rgb_to_image_msg", "encode_compressed", "compressed_format",
           "compressed_image_msg", "rgb_to_compressed_msg"]

#: Largest accepted image, in pixels (width * height): 100 megapixels.
MAX_PIXELS = 100_000_000
#: Largest accepted compressed payload, in bytes.
MAX_COMPRESSED_BYTES = 128 * 1024 * 1024


class ImageConversionError(ValueError):
    """A message that cannot be turned into an RGB image; ``str(err)`` is a short reason."""


class _Enc(NamedTuple):
    dtype: str  # numpy dtype of a channel: "u1", "u2" or "f4"
    channels: int
    order: str  # "rgb", "bgr", "rgba", "bgra" or "mono"
    bridge_name: str  # the named encoding cv_bridge is given for this layout ("" for depth)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize


#: The one encoding table: ``sensor_msgs/Image`` encoding -> pixel layout.
ENCODINGS: dict[str, _Enc] = {
    "rgb8": _Enc("u1", 3, "rgb", "rgb8"),
    "bgr8": _Enc("u1", 3, "bgr", "bgr8"),
    "rgba8": _Enc("u1", 4, "rgba", "rgba8"),
    "bgra8": _Enc("u1", 4, "bgra", "bgra8"),
    "mono8": _Enc("u1", 1, "mono", "mono8"),
    "8UC1": _Enc("u1", 1, "mono", "mono8"),
    "8UC3": _Enc("u1", 3, "bgr", "bgr8"),
    "8UC4": _Enc("u1", 4, "bgra", "bgra8"),
    "mono16": _Enc("u2", 1, "mono", "mono16"),
    "16UC1": _Enc("u2", 1, "mono", "mono16"),
    "rgb16": _Enc("u2", 3, "rgb", "rgb16"),
    "bgr16": _Enc("u2", 3, "bgr", "bgr16"),
    "rgba16": _Enc("u2", 4, "rgba", "rgba16"),
    "bgra16": _Enc("u2", 4, "bgra", "bgra16"),
    "32FC1": _Enc("f4", 1, "mono", ""),
}
#: The encoding :func:`image_msg` picks for an array of a given (dtype, channels).
_NATURAL_ENCODINGS = ("rgb8", "mono8", "16UC1", "32FC1")

#: Raw ``sensor_msgs/Image`` encodings :func:`image_to_rgb` accepts.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(k for k, e in ENCODINGS.items() if e.dtype != "f4")

_NATIVE_BIG = sys.byteorder == "big"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
# Start-of-frame markers carry the image size: C0..CF except DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_HEADER_SCAN_BYTES = 1 << 20
_IMDECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION


# --------------------------------------------------------------------------- backend selection
def _load_bridge():
    """``(CvBridge instance, "")`` when ROS 2's cv_bridge works here, else ``(None, reason)``."""
    try:
        from cv_bridge import CvBridge  # lazy: optional (a full ROS 2 install); the numpy codec otherwise

        bridge = CvBridge()
        probe = SimpleNamespace(height=1, width=2, encoding="bgr8", is_bigendian=0, step=6,
                                data=np.arange(1, 7, dtype=np.uint8))
        out = bridge.imgmsg_to_cv2(probe, desired_encoding="rgb8")
        if np.asarray(out).tolist() != [[[3, 2, 1], [6, 5, 4]]]:
            return None, "cv_bridge failed its smoke conversion (bgr8 -> rgb8)"
        return bridge, "cv_bridge imported and passed a smoke conversion"
    except Exception as e:  # ImportError, or a broken install (missing boost module, numpy ABI)
        return None, f"cv_bridge unavailable ({type(e).__name__}: {e}); numpy fallback in use"


_BRIDGE, BACKEND_NOTE = _load_bridge()
#: ``"cv_bridge"`` or ``"numpy"``: which backend converts raw images (tests may monkeypatch
#: it to ``"numpy"`` to force the fallback).
BACKEND: str = "cv_bridge" if _BRIDGE is not None else "numpy"


# --------------------------------------------------------------------------- validation helpers
def _field(msg, name: str):
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageConversionError(f"message has no field {name!r}") from None


def _uint32(value, name: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise ImageConversionError(f"{name} is not an integer ({type(value).__name__})") from None
    if not 0 <= v < 2**32:
        raise ImageConversionError(f"{name} {v} is outside uint32")
    return v


def _as_bytes(data) -> np.ndarray:
    """The message's ``data`` as a 1-D ``uint8`` array, without copying when possible."""
    if isinstance(data, str):
        raise ImageConversionError("data is a str, not bytes")
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    try:  # a list of ints (what a hand-built message may hold)
        arr = np.asarray(data)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iub"):
            raise ImageConversionError("data is not a byte sequence")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ImageConversionError("data holds values outside 0..255")
        return arr.astype(np.uint8)
    except ImageConversionError:
        raise
    except (TypeError, ValueError, OverflowError):
        raise ImageConversionError("data is not a byte sequence") from None


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


class _Raw(NamedTuple):
    height: int
    width: int
    enc: _Enc
    step: int
    big: bool
    buf: np.ndarray  # uint8, at least step * height long


def _validate_image(msg) -> _Raw:
    encoding = _field(msg, "encoding")
    if not isinstance(encoding, str):
        raise ImageConversionError(f"encoding is not a string ({type(encoding).__name__})")
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageConversionError(f"unsupported encoding {_short(encoding)}")
    h = _uint32(_field(msg, "height"), "height")
    w = _uint32(_field(msg, "width"), "width")
    step = _uint32(_field(msg, "step"), "step")
    if h == 0 or w == 0:
        raise ImageConversionError(f"zero width or height ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageConversionError(f"image too large ({w}x{h} > {MAX_PIXELS} pixels)")
    row = w * enc.itemsize * enc.channels
    if step < row:
        raise ImageConversionError(f"step {step} < width*bytes_per_pixel {row}")
    try:
        big = bool(operator.index(_field(msg, "is_bigendian")))
    except TypeError:
        raise ImageConversionError("is_bigendian is not an integer") from None
    buf = _as_bytes(_field(msg, "data"))
    if buf.size < step * h:
        raise ImageConversionError(f"truncated data: {buf.size} bytes < step*height {step * h}")
    return _Raw(h, w, enc, step, big, buf)


def _rows(raw: _Raw) -> np.ndarray:
    """``(height, width * bpp)`` uint8 view of the pixel bytes, padding cut off."""
    row = raw.width * raw.enc.itemsize * raw.enc.channels
    return raw.buf[: raw.step * raw.height].reshape(raw.height, raw.step)[:, :row]


def _scale16(v: np.ndarray) -> np.ndarray:
    """16-bit to 8-bit, ``round(v * 255 / 65535)`` computed exactly in integers."""
    return ((v.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _to_rgb_order(px: np.ndarray, order: str) -> np.ndarray:
    """``(H, W, C)`` pixels in ``order`` to ``(H, W, 3)`` RGB (a view where possible)."""
    if order == "rgb":
        return px
    if order == "bgr":
        return px[..., ::-1]
    if order == "rgba":
        return px[..., :3]
    if order == "bgra":
        return px[..., 2::-1]
    return np.repeat(px[..., :1], 3, axis=2)  # mono


def _detach(out: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """C-contiguous uint8 array that owns its memory (never a view of the message)."""
    out = np.ascontiguousarray(out, dtype=np.uint8)
    if np.may_share_memory(out, buf):
        out = out.copy()
    return out


# --------------------------------------------------------------------------- raw images
def _pixels(raw: _Raw) -> np.ndarray:
    """(H, W, C) pixels in the message's channel order and native byte order (may be a view)."""
    rows = _rows(raw)
    enc = raw.enc
    if enc.itemsize == 1:
        return rows.reshape(raw.height, raw.width, enc.channels)
    dt = np.dtype(enc.dtype).newbyteorder(">" if raw.big else "<")
    px = np.ascontiguousarray(rows).view(dt).reshape(raw.height, raw.width, enc.channels)
    return px.astype(px.dtype.newbyteorder("="), copy=False)


def image_to_array(msg) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` of any encoding of :data:`ENCODINGS`.

    Returns a new array of shape (H, W) for one channel, else (H, W, C), in the message's
    own channel order and dtype (uint8, uint16 or float32), native byte order: a 16UC1
    depth image gives its raw millimetres. Honours ``step`` and ``is_bigendian``.

    Raises:
        ImageConversionError: as :func:`image_to_rgb`.
    """
    raw = _validate_image(msg)
    px = _pixels(raw)
    out = px[..., 0] if raw.enc.channels == 1 else px
    out = np.ascontiguousarray(out)
    return out.copy() if np.may_share_memory(out, raw.buf) else out


def _numpy_image(raw: _Raw) -> np.ndarray:
    px = _pixels(raw)
    if raw.enc.itemsize == 2:
        px = _scale16(px)
    return _detach(_to_rgb_order(px, raw.enc.order), raw.buf)


def _bridge_image(raw: _Raw, header=None) -> np.ndarray:
    rows = _rows(raw)
    enc = raw.enc
    if enc.itemsize == 2 and raw.big != _NATIVE_BIG:
        rows = np.ascontiguousarray(rows).view(">u2" if raw.big else "<u2").astype("=u2")
        rows = rows.view(np.uint8)
    data = np.ascontiguousarray(rows).reshape(-1)
    canon = SimpleNamespace(
        header=header, height=raw.height, width=raw.width, encoding=enc.bridge_name,
        is_bigendian=int(_NATIVE_BIG), step=raw.width * enc.itemsize * enc.channels, data=data,
    )
    try:
        out = _BRIDGE.imgmsg_to_cv2(canon, desired_encoding="rgb8")
    except Exception as e:  # CvBridgeError or whatever a given release raises
        raise ImageConversionError(f"cv_bridge failed: {type(e).__name__}: {e}") from None
    if (not isinstance(out, np.ndarray) or out.dtype != np.uint8
            or out.shape != (raw.height, raw.width, 3)):
        raise ImageConversionError(
            f"cv_bridge returned {type(out).__name__} {getattr(out, 'shape', '?')}, "
            f"expected ({raw.height}, {raw.width}, 3) uint8")
    return _detach(out, raw.buf)


def image_to_rgb(msg) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an ``(H, W, 3)`` ``uint8`` RGB array.

    Args:
        msg: the image message (an rclpy ``sensor_msgs.msg.Image`` or any object with its
            fields ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``).
            Supported encodings are :data:`SUPPORTED_ENCODINGS` (see the module doc).

    Returns:
        A new C-contiguous array that does not share memory with ``msg``.

    Raises:
        ImageConversionError: the message is malformed or its encoding unsupported; the
            reason is in the message. No other exception is raised for bad input.
    """
    enc = getattr(msg, "encoding", None)
    if isinstance(enc, str) and enc in ENCODINGS and enc not in SUPPORTED_ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {_short(enc)} for a colour image (depth)")
    raw = _validate_image(msg)
    if BACKEND == "cv_bridge" and _BRIDGE is not None:
        return _bridge_image(raw, getattr(msg, "header", None))
    return _numpy_image(raw)


# --------------------------------------------------------------------------- compressed images
def _png_size(b: bytes) -> tuple[int, int] | None:
    if len(b) >= 24 and b[12:16] == b"IHDR":
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    return None


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame marker, or None when not found."""
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            i += 2
            continue
        if m in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        seglen = (b[i + 2] << 8) | b[i + 3]
        if seglen < 2:
            return None
        if m in _JPEG_SOF:
            if i + 9 > n:
                return None
            return (b[i + 7] << 8) | b[i + 8], (b[i + 5] << 8) | b[i + 6]
        i += 2 + seglen
    return None


def compressed_to_rgb(msg) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to ``(H, W, 3)`` ``uint8`` RGB.

    Args:
        msg: the message (rclpy ``sensor_msgs.msg.CompressedImage`` or any object with
            ``format`` and ``data``). ``format`` is image_transport's string, e.g. ``"jpeg"``,
            ``"png"``, ``"rgb8; jpeg compressed bgr8"``; it only decides the channel order
            (see the module doc); the codec is recognised from the data's magic bytes.

    Raises:
        ImageConversionError: empty, oversized, unrecognised or undecodable data, a
            ``compressedDepth`` payload, or a declared size of zero or over
            :data:`MAX_PIXELS`. No other exception is raised for bad input.
    """
    fmt = _field(msg, "format")
    if not isinstance(fmt, str):
        raise ImageConversionError(f"format is not a string ({type(fmt).__name__})")
    buf = _as_bytes(_field(msg, "data"))
    if buf.size == 0:
        raise ImageConversionError("empty compressed data")
    if buf.size > MAX_COMPRESSED_BYTES:
        raise ImageConversionError(f"compressed data too large ({buf.size} bytes)")
    lf = fmt.lower()
    if "compresseddepth" in lf:
        raise ImageConversionError("compressedDepth (depth) images are not supported")
    head = buf[:_HEADER_SCAN_BYTES].tobytes()
    if head.startswith(_JPEG_SOI):
        size = _jpeg_size(head)
    elif head.startswith(_PNG_SIG):
        size = _png_size(head)
    else:
        raise ImageConversionError(
            f"compressed data is neither JPEG nor PNG (format {_short(fmt)})")
    if size is not None:
        w, h = size
        if w == 0 or h == 0:
            raise ImageConversionError(f"zero width or height in header ({w}x{h})")
        if w * h > MAX_PIXELS:
            raise ImageConversionError(f"image too large ({w}x{h} > {MAX_PIXELS} pixels)")
    try:
        img = cv2.imdecode(buf, _IMDECODE_FLAGS)
    except cv2.error as e:
        raise ImageConversionError(f"undecodable compressed data ({str(e).strip()[:80]})") from None
    if img is None or img.size == 0:
        raise ImageConversionError("undecodable compressed data")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageConversionError(f"decoder returned an unexpected shape {img.shape}")
    if img.dtype == np.uint16:
        img = _scale16(img)
    elif img.dtype != np.uint8:
        raise ImageConversionError(f"decoder returned unsupported depth {img.dtype}")
    if "compressed rgb" not in lf:
        img = img[..., ::-1]  # OpenCV's BGR to RGB
    return np.ascontiguousarray(img)


def msg_to_rgb(msg) -> np.ndarray:
    """:func:`compressed_to_rgb` for a message with a ``format`` field (and no
    ``encoding``), :func:`image_to_rgb` otherwise. Same errors."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


# --------------------------------------------------------------------------- building images
def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) uint8 RGB array, got {a.dtype} {a.shape}")
    return a


def rgb_to_pixels(rgb, encoding: str) -> np.ndarray:
    """An RGB image in the pixel layout of a colour ``encoding`` (the inverse of :func:`image_to_rgb`).

    Colour encodings reorder the channels (alpha = 255); ``mono*``/``8UC1``/``16UC1`` hold the
    ITU-R 601 luma (``cv2.COLOR_RGB2GRAY``); 16-bit encodings hold ``v * 257``, so that
    :func:`image_to_rgb` gives the 8-bit values back exactly.
    """
    a = _check_rgb(rgb)
    enc = ENCODINGS.get(encoding)
    if enc is None or encoding not in SUPPORTED_ENCODINGS:
        raise ValueError(f"unsupported colour encoding {encoding!r}; one of {SUPPORTED_ENCODINGS}")
    if enc.order == "mono":
        px = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)[..., None]
    else:
        px = a if enc.order.startswith("rgb") else a[..., ::-1]
        if enc.channels == 4:
            px = np.concatenate([px, np.full(px.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if enc.itemsize == 2:
        px = px.astype(np.uint16) * np.uint16(257)
    return np.ascontiguousarray(px)


def image_msg(pixels: np.ndarray, stamp, frame_id: str, encoding: str | None = None,
              types: MessageTypes | None = None):
    """``sensor_msgs/msg/Image`` holding ``pixels`` as they are.

    Args:
        pixels: (H, W) or (H, W, C) array already in the layout of ``encoding``.
        stamp: header time (see :func:`stamp_to_ns`).
        frame_id: header frame id (the camera's optical frame).
        encoding: one of :data:`ENCODINGS`; None picks rgb8, mono8, 16UC1 or 32FC1 from the
            array's dtype and channel count.
        types: message classes (default rclpy).

    Rows are packed (``step = W * pixel size``), in native byte order.
    """
    px = np.asarray(pixels)
    if px.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {px.shape}")
    channels = 1 if px.ndim == 2 else px.shape[2]
    if encoding is None:
        encoding = next((e for e in _NATURAL_ENCODINGS if np.dtype(ENCODINGS[e].dtype) == px.dtype
                         and ENCODINGS[e].channels == channels), None)
        if encoding is None:
            raise ValueError(f"no ROS encoding for {px.dtype} images with {channels} channel(s)")
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ValueError(f"unsupported encoding {encoding!r}; one of {tuple(ENCODINGS)}")
    if px.dtype != np.dtype(enc.dtype) or channels != enc.channels:
        raise ValueError(f"encoding {encoding} needs {np.dtype(enc.dtype).name} x {enc.channels}, "
                         f"got {px.dtype} x {channels}")
    h, w = px.shape[:2]
    t = _types(types)
    data = np.ascontiguousarray(px, dtype=px.dtype.newbyteorder("=")).reshape(-1).view(np.uint8)
    return t("sensor_msgs/msg/Image")(
        header=header_msg(stamp, frame_id, t), height=int(h), width=int(w), encoding=encoding,
        is_bigendian=int(_NATIVE_BIG and enc.itemsize > 1), step=int(w * channels * enc.itemsize),
        data=t.byte_array(data))


def rgb_to_image_msg(rgb, stamp=None, frame_id: str = "", encoding: str = "rgb8",
                     types: MessageTypes | None = None):
    """``sensor_msgs/Image`` of an RGB array in any colour encoding (tests, benchmarks)."""
    return image_msg(rgb_to_pixels(rgb, encoding), stamp, frame_id, encoding, types)


def compressed_format(fmt: str, encoding: str = "rgb8") -> str:
    """The ``format`` string compressed_image_transport writes for a colour image:
    ``"rgb8; jpeg compressed bgr8"`` / ``"rgb8; png compressed bgr8"``."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    return f"{encoding}; {fmt} compressed bgr8"


def encode_compressed(rgb, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """JPEG or PNG file bytes of an (H, W, 3) uint8 RGB image, encoded by OpenCV as
    compressed_image_transport does (a normal file: any decoder gives the right colours)."""
    a = _check_rgb(rgb)
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    if fmt == "jpeg" and not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(a[..., ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {fmt}")
    return buf.tobytes()


def compressed_image_msg(data: bytes, fmt: str, stamp, frame_id: str, types: MessageTypes | None = None):
    """``sensor_msgs/msg/CompressedImage`` holding the file bytes ``data`` of a colour image
    compressed as ``fmt`` ('jpeg' or 'png')."""
    t = _types(types)
    return t("sensor_msgs/msg/CompressedImage")(
        header=header_msg(stamp, frame_id, t), format=compressed_format(fmt),
        data=t.byte_array(np.frombuffer(bytes(data), dtype=np.uint8)))


def rgb_to_compressed_msg(rgb, stamp=None, frame_id: str = "", fmt: str = "jpeg", quality: int = 95,
                          types: MessageTypes | None = None):
    """``sensor_msgs/CompressedImage`` of an RGB array, as image_transport's compressed
    publisher makes it (format ``"rgb8; jpeg compressed bgr8"``)."""
    return compressed_image_msg(encode_compressed(rgb, fmt, quality), fmt, stamp, frame_id, types)
