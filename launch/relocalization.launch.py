"""Launch the relocalization node with its YAML defaults.

    ros2 launch reloc_ros relocalization.launch.py model:=model.pt database:=db.pt \
        image_topic:=/camera/color/image_raw device:=cuda tf_mode:=map_to_odom [managed:=true]

With ``managed:=true`` the node is the lifecycle node: it starts unconfigured and waits for
``nav2_lifecycle_manager`` (or ``ros2 lifecycle set /relocalization_node configure``).
"""

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration

from reloc_ros.ros.launch import NODE_ARGUMENTS, declare_arguments, relocalization_node

ARGUMENTS = {
    **NODE_ARGUMENTS,  # model, database, device, mode, tf_mode, image_topic, config
    "managed": ("false", "true: the managed (lifecycle) node, driven by nav2_lifecycle_manager or ros2 lifecycle"),
}


def generate_launch_description():
    nodes = relocalization_node(managed=LaunchConfiguration("managed"))
    return LaunchDescription(declare_arguments(ARGUMENTS) + nodes)
