"""ament_python package reloc_ros: `colcon build` and `pip install -e .` both accept it.

The folder ``train/`` (offline training) installs as the Python package ``reloc_train``.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "reloc_ros"
here = Path(__file__).parent


def requirement_names(path: str) -> list[str]:
    """Unpinned names from a requirements file (pins belong to the project's venv)."""
    out = []
    for line in (here / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            out.append(line.split("==")[0].split(">=")[0].split("<")[0].split("[")[0])
    return out


train_packages = ["reloc_train"] + [
    "reloc_train." + p for p in find_packages(where="train")
]

setup(
    name=package_name,
    version="0.1.0",
    description="Learned camera relocalization for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["reloc_ros", "reloc_ros.*"]) + train_packages,
    package_dir={"reloc_train": "train"},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*.launch.py"))),
        ("share/" + package_name + "/config", sorted(glob("config/*.yaml"))),
    ],
    # torch and torchvision are left to the user's environment (a CUDA build, the system's,
    # or scripts/setup_env.sh): pip must never replace a working torch.
    install_requires=["setuptools"] + requirement_names("requirements/core.txt"),
    extras_require={"test": requirement_names("requirements/test.txt")},
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "reloc_synth = reloc_ros.data.synthetic:main",
            "reloc_train = reloc_train.train:main",
            "reloc_train_eval = reloc_train.evaluate:main",
            "reloc_database = reloc_ros.database:main",
            "reloc_evaluate = reloc_ros.evaluate:main",
            "reloc_bag_convert = reloc_ros.rosbag.convert:main",
            "reloc_bag_replay = reloc_ros.rosbag.replay:main",
            "reloc_bag_evaluator = reloc_ros.rosbag.evaluator:main",
            "relocalization_node = reloc_ros.node:main",
            "reloc_demo = reloc_ros.demo:main",
        ],
    },
)
