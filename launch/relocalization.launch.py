"""Launch the relocalization node with its YAML defaults.

    ros2 launch reloc_ros relocalization.launch.py model:=model.pt database:=db.pt \
        image_topic:=/camera/color/image_raw device:=cuda tf_mode:=map_to_odom
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = {
    "model": ("", "model file written by training"),
    "database": ("", "frame database built with that model"),
    "image_topic": ("/camera/color/image_raw", "camera image topic (sensor_msgs/Image)"),
    "device": ("auto", "auto | cuda | cpu"),
    "tf_mode": ("none", "none | map_to_odom | map_to_camera"),
    "mode": ("continuous", "continuous | on_demand"),
    "config": ("", "parameter file (default: the package's config/relocalization.yaml)"),
}


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("reloc_ros"), "config", "relocalization.yaml")
    args = [DeclareLaunchArgument(name, default_value=(default_config if name == "config" else value),
                                  description=desc) for name, (value, desc) in ARGUMENTS.items()]
    node = Node(
        package="reloc_ros",
        executable="relocalization_node",
        name="relocalization_node",
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "model_path": LaunchConfiguration("model"),
                "database_path": LaunchConfiguration("database"),
                "device": LaunchConfiguration("device"),
                "tf_mode": LaunchConfiguration("tf_mode"),
                "mode": LaunchConfiguration("mode"),
            },
        ],
        remappings=[("image", LaunchConfiguration("image_topic"))],
    )
    return LaunchDescription(args + [node])
