"""Packaging: package.xml declares the real dependencies; colcon builds and installs the package."""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN_DEPS = {
    "rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "std_srvs", "nav_msgs",
    "diagnostic_msgs", "tf2_ros", "tf2_msgs", "cv_bridge",
    "python3-torch", "python3-numpy", "python3-transforms3d",
}


def test_package_xml_format3_with_run_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "reloc_ros"
    deps = {e.text for e in root if e.tag in ("exec_depend", "depend")}
    assert RUN_DEPS <= deps, RUN_DEPS - deps
    assert root.find("export/build_type").text == "ament_python"
    assert (ROOT / "resource" / "reloc_ros").is_file()


def test_layout_reads_as_the_pipeline():
    for d in ("reloc_ros", "launch", "config", "test", "train"):
        assert (ROOT / d).is_dir(), d


def test_ruff_finds_no_pyflakes_errors():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed (requirements/test.txt)"
    r = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_quick_start_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme and "scripts/test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


@pytest.mark.timeout(180)
def test_colcon_build_installs_package_and_data_files(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.fail("colcon is not installed (requirements/test.txt lists colcon-common-extensions)")
    (tmp_path / "src").mkdir()
    os.symlink(ROOT, tmp_path / "src" / "reloc_ros")
    r = subprocess.run([colcon, "build", "--base-paths", "src"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    inst = tmp_path / "install" / "reloc_ros"
    share = inst / "share" / "reloc_ros"
    assert (share / "package.xml").is_file()
    assert (inst / "share" / "ament_index" / "resource_index" / "packages" / "reloc_ros").is_file()
    for sub, pattern in (("config", "*.yaml"), ("launch", "*.launch.py")):
        for f in (ROOT / sub).glob(pattern):
            assert (share / sub / f.name).is_file(), f"{sub}/{f.name} not installed"
    assert list((ROOT / "config").glob("*.yaml")), "config/ holds no YAML file"
    site = next((inst / "lib").glob("python3*/site-packages"))
    for module in ("reloc_ros/core/geometry.py", "reloc_ros/ros/node.py", "reloc_ros/tools/demo.py",
                   "reloc_train/__init__.py", "reloc_sim/synthetic.py"):
        assert (site / module).is_file(), module
    for exe in ("reloc_demo", "reloc_synth"):
        assert (inst / "lib" / "reloc_ros" / exe).is_file(), exe


def _requirement_lines(path: Path) -> list[str]:
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines()
            if ln.split("#")[0].strip() and not ln.strip().startswith("-")]


@pytest.mark.timeout(120)
def test_installed_requirements_are_the_pinned_ones(tmp_path):
    """``pip install .`` gets exactly the pins of requirements/*.txt: the metadata that
    setup.py builds is compared with the files."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr[-2000:]
    sections, current = {"": []}, ""
    for line in next(tmp_path.glob("*.egg-info")).joinpath("requires.txt").read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        elif line.strip():
            sections[current].append(line.strip())
    req = ROOT / "requirements"
    assert sections[""] == ["setuptools"] + _requirement_lines(req / "runtime.txt") + _requirement_lines(
        req / "tools.txt")
    for extra in ("train", "sim", "test"):
        assert sections[extra] == _requirement_lines(req / f"{extra}.txt"), extra
    pins = [ln for s in sections.values() for ln in s if ln != "setuptools"]
    assert pins and all("==" in ln or ">=" in ln for ln in pins), [ln for ln in pins if "==" not in ln]
    assert "torchjd==0.18.0" in sections["train"]
