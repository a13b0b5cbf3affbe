"""rosbag2 tools without rclpy: the 7-Scenes converter and the shared topic/message helpers.

* :mod:`reloc_ros.rosbag.topics`: topic and frame names (:class:`~reloc_ros.rosbag.topics.BagTopics`),
  QoS profiles and builders / readers of the messages (rosbags type store).
* :mod:`reloc_ros.rosbag.convert`: ``python -m reloc_ros.rosbag.convert SCENE --out BAG``.
"""
