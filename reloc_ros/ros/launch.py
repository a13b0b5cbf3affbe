"""Building blocks of the launch files in ``launch/`` (imported only by them: they need the
``launch`` and ``launch_ros`` packages of a full ROS 2 install).

    ARGUMENTS = {**NODE_ARGUMENTS, "managed": ("false", "true: the lifecycle node")}
    nodes = relocalization_node({"image_reliable": True}, managed=LaunchConfiguration("managed"))

The node's launch arguments come from its parameter declaration
(:func:`reloc_ros.ros.parameters.launch_arguments`: ``model`` sets ``model_path``, ...), plus
``image_topic`` (a remapping) and ``config`` (the parameter file).
"""

from __future__ import annotations

import os

from reloc_ros.ros.parameters import launch_arguments, launch_parameters

__all__ = ["NODE_ARGUMENTS", "declare_arguments", "relocalization_node"]

#: Launch arguments of the relocalization node: name -> (default, description).
NODE_ARGUMENTS = {
    **launch_arguments(),
    "image_topic": ("/camera/color/image_raw", "camera image topic (sensor_msgs/Image), remapped to the node's image"),
    "config": ("", "node parameter file (default: the package's config/relocalization.yaml)"),
}


def declare_arguments(arguments: dict[str, tuple[str, str]]) -> list:
    """``DeclareLaunchArgument`` of each entry; ``config`` defaults to the installed
    ``config/relocalization.yaml``."""
    from ament_index_python.packages import get_package_share_directory  # lazy: only in a ROS 2 install
    from launch.actions import DeclareLaunchArgument  # lazy: launch is not on PyPI (only in a ROS 2 install)

    default_config = os.path.join(get_package_share_directory("reloc_ros"), "config", "relocalization.yaml")
    return [DeclareLaunchArgument(name, default_value=(default_config if name == "config" else value),
                                  description=desc) for name, (value, desc) in arguments.items()]


def relocalization_node(parameters: dict | None = None, managed=None):
    """The node action: the ``config`` file, then the parameters set by launch arguments
    (:data:`NODE_ARGUMENTS`), then ``parameters``; ``image`` remapped to ``image_topic``.

    Args:
        parameters: more node parameters (values or substitutions).
        managed: None for the plain ``relocalization_node``; else a substitution (e.g.
            ``LaunchConfiguration("managed")``): two actions, the plain node unless it is
            true, and the managed ``managed_relocalization_node`` (a ``LifecycleNode``
            action, for nav2_lifecycle_manager or ``ros2 lifecycle set``) if it is.
    """
    from launch.substitutions import LaunchConfiguration  # lazy: only in a ROS 2 install
    from launch_ros.actions import Node  # lazy: only in a ROS 2 install

    kw = dict(
        package="reloc_ros",
        name="relocalization_node",
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {**{name: LaunchConfiguration(arg) for arg, name in launch_parameters().items()}, **(parameters or {})},
        ],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        # 2 malloc arenas: freed model memory returns to the OS (reloc_ros.ros.node.limit_malloc_arenas)
        additional_env={"MALLOC_ARENA_MAX": "2"},
    )
    if managed is None:
        return Node(executable="relocalization_node", **kw)
    from launch.conditions import IfCondition, UnlessCondition  # lazy: only in a ROS 2 install
    from launch_ros.actions import LifecycleNode  # lazy: only in a ROS 2 install

    return [Node(executable="relocalization_node", condition=UnlessCondition(managed), **kw),
            LifecycleNode(executable="managed_relocalization_node", namespace="", condition=IfCondition(managed), **kw)]
