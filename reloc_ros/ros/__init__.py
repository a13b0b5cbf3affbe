"""The ROS layer of reloc_ros: everything here speaks ROS types.

* :mod:`reloc_ros.ros.messages`: the one message module (encodings, image codec,
  message <-> matrix, builders of pose / TF / image / camera-info messages);
* :mod:`reloc_ros.ros.tf`: /tf and /tf_static broadcasters and a TF buffer (tf2_ros when
  installed, a pure-rclpy fallback otherwise);
* :mod:`reloc_ros.ros.node`: the relocalization node (imports only the runtime core): its
  lifecycle and worker; :mod:`reloc_ros.ros.parameters` (its parameters, declared once),
  :mod:`reloc_ros.ros.startup` (configure: parameters, plugins, files),
  :mod:`reloc_ros.ros.outputs` (pose, TF, /initialpose) and :mod:`reloc_ros.ros.diagnostics`.
"""
