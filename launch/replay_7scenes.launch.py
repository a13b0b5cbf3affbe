"""Replay a 7-Scenes rosbag through the relocalization node and evaluate it online.

    ros2 launch reloc_ros replay_7scenes.launch.py bag:=chess_test model:=model.pt \
        database:=chess.db.pt report:=reports/chess rate:=1.0

Starts ``ros2 bag play`` on the bag (made by ``reloc_bag_convert``), the relocalization node
on the bag's colour images, and the online evaluator, which reads the ground truth from the
same bag and writes its report when no pose has come for ``idle`` seconds. The launch ends
when the evaluator exits. (Without ros2cli, ``scripts/demo`` does the same with the
project's own replay tool.)
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = {
    "bag": ("", "rosbag2 folder written by reloc_bag_convert"),
    "model": ("", "model file written by training"),
    "database": ("", "frame database built with that model"),
    "report": ("reloc_report", "folder for the evaluator's report"),
    "rate": ("1.0", "playback rate of ros2 bag play"),
    "image_topic": ("/camera/color/image_raw", "colour image topic in the bag"),
    "device": ("auto", "auto | cuda | cpu"),
    "idle": ("5.0", "the evaluator stops this many seconds after the last pose"),
    "config": ("", "node parameter file (default: the package's config/relocalization.yaml)"),
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
                "image_reliable": True,
                "max_rate_hz": 0.0,
            },
        ],
        remappings=[("image", LaunchConfiguration("image_topic"))],
    )
    evaluator = Node(
        package="reloc_ros",
        executable="reloc_bag_evaluator",
        name="reloc_evaluator",
        output="screen",
        arguments=["--bag", LaunchConfiguration("bag"), "--out", LaunchConfiguration("report"),
                   "--pose-topic", "/relocalization_node/pose", "--until-idle", LaunchConfiguration("idle")],
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate")],
        output="screen",
    )
    stop_when_evaluated = RegisterEventHandler(OnProcessExit(target_action=evaluator, on_exit=[Shutdown()]))
    return LaunchDescription(args + [node, evaluator, play, stop_when_evaluated])
