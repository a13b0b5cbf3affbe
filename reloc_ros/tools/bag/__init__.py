"""rosbag2 commands, one module per command and its stages beside it, grouped by role.

Commands (``python -m reloc_ros.tools.bag.<name>``; each module holds the command line):

* ``convert``: a 7-Scenes scene to a bag; stages in ``convert_plan`` (options, frames,
  stamps), ``convert_frames`` (reading a frame, its messages) and ``convert_write`` (the bag);
* ``replay``: a bag to DDS with rclpy; ``replay_core`` (publishers, stages), ``replay_reader``
  (the reading thread) and ``replay_clock`` (due times, ``/clock``, the timeline file);
* ``evaluate``: the online evaluator listening to the node while a bag replays;
  ``evaluate_metrics`` (ground truth, matching, statistics), ``evaluate_report`` (table,
  plots) and ``evaluate_node`` (the rclpy listener);
* ``to_map``: a robot's bag to a scene in the 7-Scenes layout, or a database; ``map_config``
  (settings, errors), ``map_scan`` (scan, poses), ``map_select`` (frame selection, splits),
  ``map_write`` (the scene folder) and ``map_database`` (the database);
* ``robot``: a robot-like test bag from a scene.

Shared: ``topics`` names what a reloc_ros bag holds (topics, frames, types, QoS) and
``reading`` reads bag folders (folder checks, topic lists, message classes, header stamps).
"""
