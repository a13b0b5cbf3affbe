#!/usr/bin/env python3
"""Build the standard ROS 2 ``tf2_msgs`` messages into a pip-wheel ROS 2 environment.

PyPI ships rclpy and most message packages for ROS 2 Kilted, but not ``tf2_msgs``. This
script builds ``tf2_msgs/msg/TFMessage`` and ``tf2_msgs/msg/TF2Error`` with the rosidl
toolchain that the wheels provide, installs them into the virtual environment (which is an
ament prefix: ``lib/``, ``share/``, ``include/``), and checks that the generated type hash
equals the one of the official package, so that the /tf it carries is the /tf that rviz,
nav2 and ``ros2 bag`` understand.

The .msg texts and the official hashes come from the rosbags type store for Kilted.

Run with the venv's Python: ``.venv/bin/python scripts/build_tf2_msgs.py``. A second run
returns at once (a stamp file records the hash it verified). ``--force`` rebuilds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

MESSAGES = ("TFMessage", "TF2Error")
PACKAGE = "tf2_msgs"
#: The official type hash of tf2_msgs/msg/TFMessage (ROS 2 Jazzy and Kilted).
OFFICIAL_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>tf2_msgs messages (TFMessage, TF2Error), built by reloc_ros from the official definitions.</description>
  <maintainer email="maintainers@reloc-ros.invalid">reloc_ros</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

CMAKELISTS = """cmake_minimum_required(VERSION 3.16)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${{PROJECT_NAME}} {files} DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""


def log(msg: str) -> None:
    print(f"[tf2_msgs] {msg}", flush=True)


def prefix() -> Path:
    """The venv (or any prefix where the ROS wheels live)."""
    return Path(sys.prefix)


def stamp_path(pfx: Path) -> Path:
    return pfx / "share" / PACKAGE / "reloc_ros_build.json"


def official_definitions() -> tuple[dict[str, str], dict[str, str]]:
    """(.msg text, official RIHS01 hash) per message, from rosbags' Kilted type store."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    texts, hashes = {}, {}
    for m in MESSAGES:
        name = f"{PACKAGE}/msg/{m}"
        full, _ = store.generate_msgdef(name)
        texts[m] = full.split("\n" + "=" * 80 + "\n")[0].strip() + "\n"
        hashes[m] = store.hash_rihs01(name)
    if hashes["TFMessage"] != OFFICIAL_TFMESSAGE_HASH:
        raise SystemExit(f"rosbags gives {hashes['TFMessage']} for TFMessage, expected {OFFICIAL_TFMESSAGE_HASH}")
    return texts, hashes


def installed_hashes(pfx: Path) -> dict[str, str]:
    """Type hashes recorded in the installed type-description JSON files."""
    out = {}
    for m in MESSAGES:
        p = pfx / "share" / PACKAGE / "msg" / f"{m}.json"
        if not p.is_file():
            continue
        for entry in json.loads(p.read_text()).get("type_hashes", []):
            if entry["type_name"] == f"{PACKAGE}/msg/{m}":
                out[m] = entry["hash_string"]
    return out


def importable() -> bool:
    """Whether a fresh interpreter imports the built Python messages."""
    code = "from tf2_msgs.msg import TFMessage, TF2Error; TFMessage(); print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return r.returncode == 0 and "ok" in r.stdout


def is_built(pfx: Path, hashes: dict[str, str]) -> bool:
    sp = stamp_path(pfx)
    if not sp.is_file():
        return False
    try:
        recorded = json.loads(sp.read_text()).get("hashes")
    except json.JSONDecodeError:
        return False
    return recorded == hashes and installed_hashes(pfx) == hashes and importable()


def fix_exported_python_paths(pfx: Path) -> int:
    """Point the wheels' exported include paths at this interpreter's.

    Several ``*_rosidl_generator_pyExport.cmake`` files in the wheels hard-code the wheel
    builder's Python and numpy include folders (``/opt/python/cp311-cp311/...``).
    """
    import numpy

    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    pat = re.compile(r'INTERFACE_INCLUDE_DIRECTORIES "[^"]*/opt/python/[^"]*"')
    repl = f'INTERFACE_INCLUDE_DIRECTORIES "{py_inc};{np_inc}"'
    changed = 0
    for f in (pfx / "share").glob("*/cmake/*_rosidl_generator_pyExport.cmake"):
        text = f.read_text()
        new = pat.sub(repl, text)
        if new != text:
            f.write_text(new)
            changed += 1
    return changed


def tool(name: str) -> str:
    """cmake / ninja: the venv's (pip) copy first, then the system's."""
    for cand in (Path(sys.executable).parent / name, shutil.which(name)):
        if cand and Path(cand).exists():
            return str(cand)
    raise SystemExit(f"{name} not found: install it (pip install {name}, or apt-get install {name})")


def build(pfx: Path, texts: dict[str, str], jobs: int) -> None:
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [str(pfx), env.get("AMENT_PREFIX_PATH")]))
    env["CMAKE_PREFIX_PATH"] = os.pathsep.join(filter(None, [str(pfx), env.get("CMAKE_PREFIX_PATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    lib = str(pfx / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    with tempfile.TemporaryDirectory(prefix="reloc_tf2_msgs_") as tmp:
        src = Path(tmp) / "src"
        (src / "msg").mkdir(parents=True)
        for m, text in texts.items():
            (src / "msg" / f"{m}.msg").write_text(text)
        (src / "package.xml").write_text(PACKAGE_XML)
        files = " ".join(f'"msg/{m}.msg"' for m in texts)
        (src / "CMakeLists.txt").write_text(CMAKELISTS.format(files=files))
        bld = Path(tmp) / "build"
        cfg = [
            tool("cmake"), "-S", str(src), "-B", str(bld), "-G", "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}",
            f"-DCMAKE_INSTALL_PREFIX={pfx}",
            f"-DCMAKE_PREFIX_PATH={pfx}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DPython3_FIND_STRATEGY=LOCATION",
            "-DBUILD_TESTING=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        for step in (cfg, [tool("cmake"), "--build", str(bld), "-j", str(jobs)],
                     [tool("cmake"), "--install", str(bld)]):
            r = subprocess.run(step, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                sys.stderr.write(r.stdout[-6000:] + r.stderr[-6000:])
                raise SystemExit(f"tf2_msgs build step failed: {' '.join(step[:3])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when a verified build exists")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)

    pfx = prefix()
    texts, hashes = official_definitions()
    if not args.force and is_built(pfx, hashes):
        log(f"already built and verified in {pfx} (TFMessage {hashes['TFMessage'][:20]}...)")
        return 0
    t0 = time.time()
    n = fix_exported_python_paths(pfx)
    if n:
        log(f"rewrote the Python include paths in {n} exported cmake files")
    log(f"building {', '.join(MESSAGES)} into {pfx} ...")
    build(pfx, texts, args.jobs)
    got = installed_hashes(pfx)
    if got != hashes:
        raise SystemExit(f"type hash mismatch after build: built {got}, official {hashes}")
    if not importable():
        raise SystemExit("tf2_msgs was built but does not import")
    stamp_path(pfx).write_text(json.dumps({"hashes": hashes, "built_at": time.time()}, indent=2))
    log(f"built in {time.time() - t0:.1f} s; TFMessage type hash {got['TFMessage']} (official)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
