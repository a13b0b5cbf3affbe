"""reloc_ros.ros.messages: every encoding against numpy ground truth, compressed images,
strict validation, a fuzz test (ImageConversionError or a valid image, nothing else), and
both backends (the numpy fallback is always tested, cv_bridge when it is installed)."""

from __future__ import annotations

import sys
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from reloc_ros.ros import images as ic
from reloc_ros.ros.images import ImageConversionError

try:  # ROS 2's cv_bridge, present on robots, absent from the venv
    from cv_bridge import CvBridge  # noqa: F401

    HAVE_CV_BRIDGE = ic._BRIDGE is not None
except Exception:
    HAVE_CV_BRIDGE = False

BACKENDS = ["numpy"] + (["cv_bridge"] if HAVE_CV_BRIDGE else [])

# Independent ground truth: (bytes per channel, channels, how the channels map to RGB).
LAYOUT = {
    "rgb8": (1, 3, [0, 1, 2]), "bgr8": (1, 3, [2, 1, 0]), "rgba8": (1, 4, [0, 1, 2]),
    "bgra8": (1, 4, [2, 1, 0]), "mono8": (1, 1, [0, 0, 0]), "8UC1": (1, 1, [0, 0, 0]),
    "8UC3": (1, 3, [2, 1, 0]), "8UC4": (1, 4, [2, 1, 0]),
    "mono16": (2, 1, [0, 0, 0]), "16UC1": (2, 1, [0, 0, 0]), "rgb16": (2, 3, [0, 1, 2]),
    "bgr16": (2, 3, [2, 1, 0]), "rgba16": (2, 4, [0, 1, 2]), "bgra16": (2, 4, [2, 1, 0]),
}


def test_layout_table_covers_the_module():
    assert set(LAYOUT) == set(ic.SUPPORTED_ENCODINGS)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Run a test once per available backend; 'numpy' is forced even where cv_bridge exists."""
    monkeypatch.setattr(ic, "BACKEND", request.param)
    return request.param


def raw_msg(px: np.ndarray, encoding: str, big: bool = False, pad: int = 0, extra: int = 0,
            pad_byte: int = 0xEE) -> Image:
    """A sensor_msgs/Image holding ``px`` (H, W, C) exactly as a camera driver would."""
    h, w, c = px.shape
    if px.dtype == np.uint16:
        px = px.astype(">u2" if big else "<u2")
    row = np.ascontiguousarray(px).reshape(h, -1).view(np.uint8)
    rows = np.full((h, row.shape[1] + pad), pad_byte, np.uint8)
    rows[:, : row.shape[1]] = row
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big), step=rows.shape[1])
    msg.data = rows.tobytes() + bytes([0x5A]) * extra
    return msg


def expected_rgb(px: np.ndarray, encoding: str) -> np.ndarray:
    _, _, idx = LAYOUT[encoding]
    v = px.astype(np.float64)
    if px.dtype == np.uint16:
        v = np.round(v * 255.0 / 65535.0)
    return v[..., idx].astype(np.uint8)


def random_pixels(rng, encoding: str, h: int = 7, w: int = 11) -> np.ndarray:
    nbytes, c, _ = LAYOUT[encoding]
    if nbytes == 1:
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    return rng.integers(0, 65536, (h, w, c), dtype=np.uint16)


# --------------------------------------------------------------------------- raw encodings
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("encoding", list(LAYOUT))
def test_every_encoding_matches_numpy_ground_truth(backend, encoding, big, pad):
    rng = np.random.default_rng(zlib.crc32(f"{encoding}/{big}/{pad}".encode()))
    px = random_pixels(rng, encoding)
    msg = raw_msg(px, encoding, big=big, pad=pad, extra=3)
    out = ic.image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == (7, 11, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected_rgb(px, encoding))


def test_bgr_order_swap_and_alpha_drop(backend):
    px = np.array([[[10, 20, 30]]], np.uint8)
    assert ic.image_to_rgb(raw_msg(px, "bgr8")).tolist() == [[[30, 20, 10]]]
    assert ic.image_to_rgb(raw_msg(px, "8UC3")).tolist() == [[[30, 20, 10]]]
    assert ic.image_to_rgb(raw_msg(px, "rgb8")).tolist() == [[[10, 20, 30]]]
    px4 = np.array([[[10, 20, 30, 40]]], np.uint8)
    assert ic.image_to_rgb(raw_msg(px4, "bgra8")).tolist() == [[[30, 20, 10]]]
    assert ic.image_to_rgb(raw_msg(px4, "rgba8")).tolist() == [[[10, 20, 30]]]


def test_mono_is_broadcast_to_three_channels(backend):
    px = np.arange(12, dtype=np.uint8).reshape(3, 4, 1) * 20
    out = ic.image_to_rgb(raw_msg(px, "mono8"))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], px[..., 0])


def test_16bit_scaling_is_round_of_v_times_255_over_65535(backend):
    v = np.array([0, 1, 128, 129, 256, 257, 32767, 32768, 65279, 65534, 65535], np.uint16)
    want = [0, 0, 0, 1, 1, 1, 127, 128, 254, 255, 255]
    for enc in ("mono16", "16UC1"):
        for big in (False, True):
            out = ic.image_to_rgb(raw_msg(v.reshape(1, -1, 1), enc, big=big))
            assert out[0, :, 0].tolist() == want, (enc, big)


def test_big_endian_flag_is_honoured(backend):
    v = np.array([[[0x0100], [0xFF00]]], np.uint16)  # 256 and 65280
    good = ic.image_to_rgb(raw_msg(v, "mono16", big=True))
    assert good[0, :, 0].tolist() == [1, 254]
    wrong = raw_msg(v, "mono16", big=True)
    wrong.is_bigendian = 0  # the same bytes read little-endian: 0x0001 and 0x00FF
    assert ic.image_to_rgb(wrong)[0, :, 0].tolist() == [0, 1]


def test_padded_rows_are_skipped(backend):
    px = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = raw_msg(px, "rgb8", pad=7, pad_byte=0xFF)
    assert msg.step == 16
    np.testing.assert_array_equal(ic.image_to_rgb(msg), px)


def test_output_owns_its_memory(backend):
    px = np.full((2, 2, 3), 7, np.uint8)
    msg = raw_msg(px, "rgb8")
    out = ic.image_to_rgb(msg)
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    out[:] = 99
    assert set(bytes(msg.data)) == {7}


@pytest.mark.parametrize("encoding", list(LAYOUT))
def test_rgb_to_image_msg_round_trip(backend, encoding):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    msg = ic.rgb_to_image_msg(rgb, stamp=12.25, frame_id="cam", encoding=encoding)
    assert isinstance(msg, Image)
    stamp = msg.header.stamp
    assert (stamp.sec, stamp.nanosec, msg.header.frame_id) == (12, 250_000_000, "cam")
    assert msg.step * msg.height == len(msg.data)
    out = ic.image_to_rgb(msg)
    if LAYOUT[encoding][1] == 1:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    else:
        np.testing.assert_array_equal(out, rgb)


def test_msg_to_rgb_dispatches():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    assert ic.msg_to_rgb(ic.rgb_to_image_msg(rgb)).tolist() == rgb.tolist()
    assert ic.msg_to_rgb(ic.rgb_to_compressed_msg(rgb, fmt="png")).tolist() == rgb.tolist()


# --------------------------------------------------------------------------- validation
def _good(**kw) -> Image:
    msg = raw_msg(np.zeros((4, 5, 3), np.uint8), "rgb8")
    for k, v in kw.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize("fields, reason", [
    ({"encoding": "yuv422"}, "unsupported encoding"),
    ({"encoding": "32FC1"}, "unsupported encoding"),
    ({"encoding": ""}, "unsupported encoding"),
    ({"encoding": "RGB8"}, "unsupported encoding"),
    ({"width": 0}, "zero width or height"),
    ({"height": 0}, "zero width or height"),
    ({"step": 14}, r"step 14 < width\*bytes_per_pixel 15"),
    ({"data": bytes(4 * 15 - 1)}, "truncated data"),
    ({"data": b""}, "truncated data"),
    ({"width": 20000, "height": 20000, "step": 60000}, "image too large"),
])
def test_malformed_images_raise_with_a_reason(backend, fields, reason):
    with pytest.raises(ImageConversionError, match=reason):
        ic.image_to_rgb(_good(**fields))


def test_bad_field_types_raise_image_conversion_error(backend):
    good = dict(height=2, width=2, encoding="mono8", is_bigendian=0, step=2, data=bytes(4))
    assert ic.image_to_rgb(SimpleNamespace(**good)).shape == (2, 2, 3)
    for field, value in [("height", 2.0), ("height", -1), ("width", None), ("step", "2"),
                         ("encoding", 7), ("encoding", None), ("is_bigendian", None),
                         ("data", "abcd"), ("data", None), ("data", [1, 2, 3, 300]),
                         ("data", [[1, 2], [3, 4]]), ("data", [0.5] * 4), ("height", 2**32)]:
        with pytest.raises(ImageConversionError):
            ic.image_to_rgb(SimpleNamespace(**{**good, field: value}))
    missing = dict(good)
    del missing["step"]
    with pytest.raises(ImageConversionError, match="no field 'step'"):
        ic.image_to_rgb(SimpleNamespace(**missing))
    as_list = ic.image_to_rgb(SimpleNamespace(**{**good, "data": [1, 2, 3, 4]}))
    assert as_list[..., 0].tolist() == [[1, 2], [3, 4]]


def test_image_conversion_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


# --------------------------------------------------------------------------- compressed
def smooth_rgb(h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1).astype(np.uint8)


def compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def test_png_is_exact_and_jpeg_close():
    rgb = smooth_rgb()
    png = ic.rgb_to_compressed_msg(rgb, fmt="png")
    np.testing.assert_array_equal(ic.compressed_to_rgb(png), rgb)
    out = ic.compressed_to_rgb(ic.rgb_to_compressed_msg(rgb, fmt="jpeg", quality=95))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - rgb.astype(int))
    assert err.mean() < 2.0 and err.max() < 24


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8",
                                 "bgr8; png compressed bgr8", "mono8; jpeg compressed mono8"])
def test_colour_order_of_bgr_payloads(fmt):
    """OpenCV-encoded payloads hold BGR; the decoded image must be RGB (red stays red)."""
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 220  # red
    rgb[8:, :, 2] = 180  # bottom half purple
    ext = ".jpg" if "jpeg" in fmt else ".png"
    ok, enc = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = ic.compressed_to_rgb(compressed(enc.tobytes(), fmt))
    for rows in (slice(0, 5), slice(11, 16)):  # away from the edge that JPEG's chroma blurs
        np.testing.assert_allclose(out[rows].astype(int), rgb[rows].astype(int), atol=8)


def test_compressed_rgb_payload_is_not_reordered():
    """image_transport: 'compressed rgb8' means the encoder was fed RGB, so OpenCV's
    decoded 'BGR' array is really RGB."""
    rgb = smooth_rgb(8, 8)
    ok, enc = cv2.imencode(".png", rgb)  # RGB buffer handed straight to the encoder
    out = ic.compressed_to_rgb(compressed(enc.tobytes(), "rgb8; png compressed rgb8"))
    np.testing.assert_array_equal(out, rgb)


def test_grey_rgba_and_16bit_png():
    grey = (np.arange(30, dtype=np.uint8) * 8).reshape(5, 6)
    out = ic.compressed_to_rgb(compressed(cv2.imencode(".png", grey)[1].tobytes(), "png"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    rgb = smooth_rgb(6, 7)
    bgra = np.concatenate([rgb[..., ::-1], np.full((6, 7, 1), 17, np.uint8)], axis=2)
    out = ic.compressed_to_rgb(compressed(cv2.imencode(".png", bgra)[1].tobytes(), "png"))
    np.testing.assert_array_equal(out, rgb)

    v = np.array([[0, 128, 129, 32768, 65535]], np.uint16)
    png16 = cv2.imencode(".png", v)[1].tobytes()
    out = ic.compressed_to_rgb(compressed(png16, "mono16; png compressed mono16"))
    assert out[0, :, 0].tolist() == [0, 0, 1, 128, 255]


def _png_claiming(w: int, h: int) -> bytes:
    b = bytearray(cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes())
    b[16:20], b[20:24] = w.to_bytes(4, "big"), h.to_bytes(4, "big")
    return bytes(b)


def _jpeg_claiming(w: int, h: int) -> bytes:
    b = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    i = 2
    while b[i + 1] not in ic._JPEG_SOF:
        i += 2 + ((b[i + 2] << 8) | b[i + 3])
    b[i + 5:i + 7], b[i + 7:i + 9] = h.to_bytes(2, "big"), w.to_bytes(2, "big")
    return bytes(b)


def test_header_sizes_are_parsed():
    assert ic._png_size(_png_claiming(123, 45)) == (123, 45)
    assert ic._jpeg_size(_jpeg_claiming(321, 54)) == (321, 54)


@pytest.mark.parametrize("data, fmt, reason", [
    (b"", "jpeg", "empty compressed data"),
    (b"GIF89a" + bytes(40), "gif", "neither JPEG nor PNG"),
    (bytes(range(256)) * 4, "jpeg", "neither JPEG nor PNG"),
    (b"\xff\xd8\xff" + bytes(100), "jpeg", "undecodable"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "png", "undecodable|zero width"),
    (_png_claiming(20000, 20000), "png", "image too large"),
    (_jpeg_claiming(65000, 65000), "jpeg", "image too large"),
    (_png_claiming(0, 5), "png", "zero width or height"),
    (cv2.imencode(".png", np.zeros((2, 2), np.uint16))[1].tobytes(), "16UC1; compressedDepth png",
     "compressedDepth"),
])
def test_malformed_compressed_raise_with_a_reason(data, fmt, reason):
    with pytest.raises(ImageConversionError, match=reason):
        ic.compressed_to_rgb(compressed(data, fmt))


def test_compressed_bad_field_types():
    good = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes()
    assert ic.compressed_to_rgb(SimpleNamespace(format="png", data=good)).shape == (2, 2, 3)
    for fields in [dict(format=None, data=good), dict(format="png", data=None),
                   dict(format="png", data="text"), dict(format="png")]:
        with pytest.raises(ImageConversionError):
            ic.compressed_to_rgb(SimpleNamespace(**fields))


# --------------------------------------------------------------------------- fuzz
GARBAGE_ENCODINGS = ["", "rgb", "RGB8", "bgr8 ", " mono8", "16UC3", "32FC1", "8UC2", "yuv422",
                     "bayer_rggb8", "nv12", "\x00", "rgb8\x00", "mono16; junk", "ünïcode"]
SIZES = [0, 1, 2, 3, 5, 17, 64, 2**16, 2**31, 2**32 - 1, -1, 2**32, 2**40, 3.5, "7", None]


def _set_fields(fields: dict):
    """A real rclpy Image when it accepts the values, else a duck-typed stand-in."""
    msg = Image()
    try:
        for k, v in fields.items():
            setattr(msg, k, v)
        return msg
    except Exception:
        return SimpleNamespace(**fields)


def _fuzz_image(rng) -> object:
    enc = str(rng.choice(list(LAYOUT))) if rng.random() < 0.85 else (
        str(rng.choice(GARBAGE_ENCODINGS)) if rng.random() < 0.8 else
        rng.choice([None, 5, b"rgb8"]))
    h = int(rng.integers(1, 24)) if rng.random() < 0.85 else SIZES[rng.integers(len(SIZES))]
    w = int(rng.integers(1, 24)) if rng.random() < 0.85 else SIZES[rng.integers(len(SIZES))]
    if isinstance(enc, str) and enc in LAYOUT:
        bpp = LAYOUT[enc][0] * LAYOUT[enc][1]
    else:
        bpp = int(rng.integers(1, 5))
    iw = w if isinstance(w, int) and 0 <= w < 4096 else 4
    ih = h if isinstance(h, int) and 0 <= h < 4096 else 4
    step_choice = 0 if rng.random() < 0.5 else 1 if rng.random() < 0.4 else rng.integers(2, 8)
    step = [iw * bpp, iw * bpp + int(rng.integers(1, 9)), max(iw * bpp - 1, 0), 0,
            int(rng.integers(0, 200)), 2**32 - 1, -3, None][step_choice]
    n = (step if isinstance(step, int) and 0 <= step < 10**5 else iw * bpp) * ih
    data_choice = 0 if rng.random() < 0.5 else rng.integers(10)
    if data_choice < 5:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif data_choice == 5:
        short = max(n - int(rng.integers(1, n + 2)), 0)
        data = rng.integers(0, 256, short, dtype=np.uint8).tobytes()
    elif data_choice == 6:
        data = rng.integers(0, 256, n + int(rng.integers(1, 50)), dtype=np.uint8).tobytes()
    elif data_choice == 7:
        data = b""
    elif data_choice == 8:
        data = [int(x) for x in rng.integers(-5, 300, min(n, 64))]
    else:
        data = rng.choice([None, "text", 3.0])
    big = rng.choice([0, 1, 0, 2, None, "x"]) if rng.random() < 0.1 else int(rng.integers(0, 2))
    return _set_fields(dict(encoding=enc, height=h, width=w, step=step, data=data,
                            is_bigendian=big))


def _fuzz_compressed(rng, seeds: list[bytes]) -> object:
    kind = rng.integers(6)
    if kind == 0:
        data = rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes()
    elif kind == 1:
        prefix = [ic._JPEG_SOI, ic._PNG_SIG][rng.integers(2)]
        data = prefix + rng.integers(0, 256, int(rng.integers(0, 500)), dtype=np.uint8).tobytes()
    elif kind == 2:
        s = seeds[rng.integers(len(seeds))]
        data = s[: int(rng.integers(0, len(s)))]
    else:
        b = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(int(rng.integers(1, 6))):
            b[rng.integers(len(b))] = int(rng.integers(0, 256))
        data = bytes(b)
    fmt = str(rng.choice(["jpeg", "png", "rgb8; jpeg compressed bgr8", "rgb8; png compressed rgb8",
                          "", "garbage", "16UC1; compressedDepth png"]))
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def _check_outcome(call, msg):
    try:
        out = call(msg)
    except ImageConversionError as e:
        assert str(e), "an ImageConversionError must carry a reason"
        return False
    except Exception as e:  # pragma: no cover - this is the failure the test exists for
        what = vars(msg) if hasattr(msg, "__dict__") else msg
        pytest.fail(f"{type(e).__name__}: {e} for {what!r}")
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[0] > 0 and out.shape[1] > 0
    if hasattr(msg, "height"):
        assert out.shape[:2] == (msg.height, msg.width)
    return True


def test_fuzz_raw_images(backend):
    rng = np.random.default_rng(20240611)
    ok = sum(_check_outcome(ic.image_to_rgb, _fuzz_image(rng)) for _ in range(600))
    assert 90 <= ok <= 510, f"{ok}/600 converted: the fuzz mix should hit both outcomes"


def test_fuzz_compressed_images(monkeypatch):
    monkeypatch.setattr(ic, "MAX_PIXELS", 4_000_000)  # keep corrupted headers cheap to decode
    rng = np.random.default_rng(7)
    rgb = smooth_rgb(24, 32)
    seeds = [cv2.imencode(".jpg", rgb)[1].tobytes(), cv2.imencode(".png", rgb)[1].tobytes(),
             cv2.imencode(".png", rgb[..., 0])[1].tobytes()]
    ok = sum(_check_outcome(ic.compressed_to_rgb, _fuzz_compressed(rng, seeds)) for _ in range(300))
    assert 10 <= ok <= 290, f"{ok}/300 decoded"


# --------------------------------------------------------------------------- backends
def test_backend_is_reported():
    assert ic.BACKEND in ("cv_bridge", "numpy")
    assert (ic.BACKEND == "cv_bridge") == (ic._BRIDGE is not None)
    assert ic.BACKEND_NOTE


class FakeBridge:
    """Stands in for cv_bridge to test the plumbing around it (the layout it is handed and
    the checks on what it returns). It converts named encodings to rgb8 independently of the
    module, and insists on the canonical layout the module promises to hand over."""

    def __init__(self, result=None, exc=None):
        self.calls = []
        self.result, self.exc = result, exc

    def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
        self.calls.append((msg.encoding, msg.step, msg.is_bigendian))
        if self.exc is not None:
            raise self.exc
        if self.result is not None:
            return self.result
        assert desired_encoding == "rgb8"
        nbytes, c, idx = LAYOUT[msg.encoding]
        assert msg.encoding[0].isalpha(), "generic encodings must be renamed for cv_bridge"
        assert msg.step == msg.width * nbytes * c, "rows must be compact"
        assert msg.is_bigendian == (sys.byteorder == "big")
        dt = np.uint8 if nbytes == 1 else np.dtype("=u2")
        im = np.ndarray((msg.height, msg.width, c), dtype=dt, buffer=msg.data)
        if nbytes == 2:  # what cv_bridge does: convertTo with 255/65535
            im = cv2.convertScaleAbs(im, alpha=255.0 / 65535.0).reshape(msg.height, msg.width, c)
        return np.ascontiguousarray(im[..., idx])


@pytest.mark.parametrize("encoding", list(LAYOUT))
def test_cv_bridge_plumbing_with_a_stand_in(monkeypatch, encoding):
    fake = FakeBridge()
    monkeypatch.setattr(ic, "_BRIDGE", fake)
    monkeypatch.setattr(ic, "BACKEND", "cv_bridge")
    rng = np.random.default_rng(11)
    px = random_pixels(rng, encoding)
    for big, pad in [(False, 0), (True, 3)]:
        out = ic.image_to_rgb(raw_msg(px, encoding, big=big, pad=pad))
        np.testing.assert_array_equal(out, expected_rgb(px, encoding))
    assert len(fake.calls) == 2


def test_cv_bridge_failures_become_image_conversion_errors(monkeypatch):
    monkeypatch.setattr(ic, "BACKEND", "cv_bridge")
    msg = raw_msg(np.zeros((2, 3, 3), np.uint8), "rgb8")
    for fake, reason in [(FakeBridge(exc=TypeError("boom")), "cv_bridge failed: TypeError"),
                         (FakeBridge(result=np.zeros((2, 3), np.uint8)), "cv_bridge returned"),
                         (FakeBridge(result="nope"), "cv_bridge returned")]:
        monkeypatch.setattr(ic, "_BRIDGE", fake)
        with pytest.raises(ImageConversionError, match=reason):
            ic.image_to_rgb(msg)
    monkeypatch.setattr(ic, "_BRIDGE", FakeBridge(exc=AssertionError("never called")))
    with pytest.raises(ImageConversionError, match="unsupported encoding"):
        ic.image_to_rgb(raw_msg(np.zeros((2, 3, 3), np.uint8), "yuv422"))  # validated first


@pytest.mark.skipif(not HAVE_CV_BRIDGE, reason="ROS 2 cv_bridge is not installed")
@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("encoding", list(LAYOUT))
def test_real_cv_bridge_agrees_with_numpy(monkeypatch, encoding, big, pad):
    rng = np.random.default_rng(5)
    msg = raw_msg(random_pixels(rng, encoding), encoding, big=big, pad=pad)
    monkeypatch.setattr(ic, "BACKEND", "numpy")
    ref = ic.image_to_rgb(msg)
    monkeypatch.setattr(ic, "BACKEND", "cv_bridge")
    np.testing.assert_array_equal(ic.image_to_rgb(msg), ref)
