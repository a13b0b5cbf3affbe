"""Replay a 7-Scenes rosbag through the relocalization node and evaluate it online.

    ros2 launch reloc_ros replay_7scenes.launch.py bag:=chess_test model:=model.pt \
        database:=chess.db.pt report:=reports/chess rate:=1.0

Starts ``ros2 bag play`` on the bag (made by ``reloc_bag_convert``), the relocalization node
on the bag's colour images, and the online evaluator, which reads the ground truth from the
same bag and writes its report when no pose has come for ``idle`` seconds. The launch ends
when the evaluator exits. (Without ros2cli, ``scripts/demo`` does the same with the
project's own replay tool.)
"""

from launch import LaunchDescription
from launch.actions import ExecuteProcess, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from reloc_ros.ros.launch import NODE_ARGUMENTS, declare_arguments, relocalization_node

ARGUMENTS = {
    "bag": ("", "rosbag2 folder written by reloc_bag_convert"),
    **NODE_ARGUMENTS,
    "image_topic": ("/camera/color/image_raw", "colour image topic in the bag"),
    "report": ("reloc_report", "folder for the evaluator's report"),
    "rate": ("1.0", "playback rate of ros2 bag play"),
    "idle": ("5.0", "the evaluator stops this many seconds after the last pose"),
}


def generate_launch_description():
    node = relocalization_node({"image_reliable": True, "max_rate_hz": 0.0})
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
    return LaunchDescription(declare_arguments(ARGUMENTS) + [node, evaluator, play, stop_when_evaluated])
