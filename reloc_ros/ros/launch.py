"""Building blocks of the launch files in ``launch/`` (imported only by them: they need the
``launch`` and ``launch_ros`` packages of a full ROS 2 install).

    ARGUMENTS = {**NODE_ARGUMENTS, "tf_mode": ("none", "none | map_to_odom | map_to_camera")}
    node = relocalization_node({"tf_mode": LaunchConfiguration("tf_mode")})
"""

from __future__ import annotations

import os

__all__ = ["NODE_ARGUMENTS", "declare_arguments", "relocalization_node"]

#: Launch arguments of the relocalization node: name -> (default, description).
NODE_ARGUMENTS = {
    "model": ("", "model file written by training"),
    "database": ("", "frame database built with that model"),
    "image_topic": ("/camera/color/image_raw", "camera image topic (sensor_msgs/Image)"),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "config": ("", "node parameter file (default: the package's config/relocalization.yaml)"),
}


def declare_arguments(arguments: dict[str, tuple[str, str]]) -> list:
    """``DeclareLaunchArgument`` of each entry; ``config`` defaults to the installed
    ``config/relocalization.yaml``."""
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument

    default_config = os.path.join(get_package_share_directory("reloc_ros"), "config", "relocalization.yaml")
    return [DeclareLaunchArgument(name, default_value=(default_config if name == "config" else value),
                                  description=desc) for name, (value, desc) in arguments.items()]


def relocalization_node(parameters: dict | None = None, managed=None):
    """The node action: the ``config`` file, then the model, database and device arguments,
    then ``parameters``; ``image`` remapped to ``image_topic``.

    Args:
        parameters: more node parameters (values or substitutions).
        managed: None for the plain ``relocalization_node``; else a substitution (e.g.
            ``LaunchConfiguration("managed")``): two actions, the plain node unless it is
            true, and the managed ``managed_relocalization_node`` (a ``LifecycleNode``
            action, for nav2_lifecycle_manager or ``ros2 lifecycle set``) if it is.
    """
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    kw = dict(
        package="reloc_ros",
        name="relocalization_node",
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {"model_path": LaunchConfiguration("model"), "database_path": LaunchConfiguration("database"),
             "device": LaunchConfiguration("device"), **(parameters or {})},
        ],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        # 2 malloc arenas: freed model memory returns to the OS (reloc_ros.ros.node.limit_malloc_arenas)
        additional_env={"MALLOC_ARENA_MAX": "2"},
    )
    if managed is None:
        return Node(executable="relocalization_node", **kw)
    from launch.conditions import IfCondition, UnlessCondition
    from launch_ros.actions import LifecycleNode

    return [Node(executable="relocalization_node", condition=UnlessCondition(managed), **kw),
            LifecycleNode(executable="managed_relocalization_node", namespace="", condition=IfCondition(managed), **kw)]
