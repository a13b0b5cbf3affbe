"""The ROS layer of reloc_ros: everything here speaks ROS types.

* :mod:`reloc_ros.ros.messages`: the one message module (encodings, image codec,
  message <-> matrix, builders of pose / TF / image / camera-info messages);
* :mod:`reloc_ros.ros.tf`: /tf and /tf_static broadcasters and a TF buffer (tf2_ros when
  installed, a pure-rclpy fallback otherwise);
* :mod:`reloc_ros.ros.node`: the relocalization node (imports only the runtime core).
"""
