"""The ROS layer of reloc_ros: everything here speaks ROS types.

* :mod:`reloc_ros.ros.messages`: the one message module to import (message <-> matrix,
  builders of pose / TF / camera-info messages), re-exporting :mod:`reloc_ros.ros.images`
  (encodings, the image codec, image builders) and :mod:`reloc_ros.ros.msgtypes` (message
  classes from rclpy or a rosbags type store, stamps);
* :mod:`reloc_ros.ros.tf`: /tf and /tf_static broadcasters and a TF buffer (tf2_ros when
  installed, a pure-rclpy fallback otherwise);
* :mod:`reloc_ros.ros.node`: the relocalization node (imports only the runtime core): its
  lifecycle and worker; :mod:`reloc_ros.ros.parameters` (its parameters, declared once),
  :mod:`reloc_ros.ros.startup` (configure: parameters, plugins, files),
  :mod:`reloc_ros.ros.outputs` (pose, TF, /initialpose) and :mod:`reloc_ros.ros.diagnostics`.
"""
