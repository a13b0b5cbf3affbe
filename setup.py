"""ament_python package reloc_ros: `colcon build` and `pip install -e .` both accept it.

Three Python packages: ``reloc_ros`` (runtime core, ROS layer, 7-Scenes reader, tools),
``reloc_train`` (the folder ``train/``: training and database building) and ``reloc_sim``
(the synthetic scene generator). Each has its requirements file in ``requirements/``.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "reloc_ros"
here = Path(__file__).parent


def requirements(path: str) -> list[str]:
    """The requirement lines of a requirements file, pins included: ``pip install .`` gets
    exactly the versions the project is tested with (test/test_package.py checks it)."""
    out = []
    for line in (here / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


train_packages = ["reloc_train"] + [
    "reloc_train." + p for p in find_packages(where="train")
]
sim_packages = find_packages(include=["reloc_sim", "reloc_sim.*"])

setup(
    name=package_name,
    version="0.1.0",
    description="Learned camera relocalization for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["reloc_ros", "reloc_ros.*"]) + train_packages + sim_packages,
    package_dir={"reloc_train": "train"},
    package_data={"reloc_ros.core": ["uncalibrated.json"]},  # the default covariance per refiner
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*.launch.py"))),
        ("share/" + package_name + "/config", sorted(glob("config/*.yaml"))),
        ("share/" + package_name + "/models/generic", sorted(glob("models/generic/*"))),
    ],
    # torch and torchvision are left to the user's environment (a CUDA build, the system's,
    # or scripts/setup_env.sh): pip must never replace a working torch.
    install_requires=["setuptools"] + requirements("requirements/runtime.txt") + requirements("requirements/tools.txt"),
    extras_require={extra: requirements(f"requirements/{extra}.txt") for extra in ("train", "sim", "test")},
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "reloc_synth = reloc_sim.synthetic:main",
            "reloc_train = reloc_train.train:main",
            "reloc_train_eval = reloc_train.evaluate:main",
            "reloc_database = reloc_ros.mapping.database:main",
            "reloc_evaluate = reloc_ros.eval.evaluate:main",
            "reloc_bag_convert = reloc_ros.tools.bag.convert:main",
            "reloc_bag_replay = reloc_ros.tools.bag.replay:main",
            "reloc_bag_evaluator = reloc_ros.tools.bag.evaluate:main",
            "reloc_bag_to_map = reloc_ros.tools.bag.to_map:cli",
            "reloc_robot_bag = reloc_ros.tools.bag.robot:main",
            "relocalization_node = reloc_ros.ros.node:main",
            "managed_relocalization_node = reloc_ros.ros.node:main_managed",
            "reloc_demo = reloc_ros.tools.demo:main",
        ],
    },
)
