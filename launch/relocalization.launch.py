"""Launch the relocalization node with its YAML defaults.

    ros2 launch reloc_ros relocalization.launch.py model:=model.pt database:=db.pt \
        image_topic:=/camera/color/image_raw device:=cuda tf_mode:=map_to_odom
"""

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration

from reloc_ros.ros.launch import NODE_ARGUMENTS, declare_arguments, relocalization_node

ARGUMENTS = {
    **NODE_ARGUMENTS,
    "tf_mode": ("none", "none | map_to_odom | map_to_camera"),
    "mode": ("continuous", "continuous | on_demand"),
}


def generate_launch_description():
    node = relocalization_node({"tf_mode": LaunchConfiguration("tf_mode"), "mode": LaunchConfiguration("mode")})
    return LaunchDescription(declare_arguments(ARGUMENTS) + [node])
