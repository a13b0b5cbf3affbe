"""reloc_ros: learned camera relocalization for ROS 2.

Packages, in pipeline order (the offline stages live beside it: ``reloc_sim`` renders
synthetic scenes, ``reloc_train`` trains models and builds databases):

* :mod:`reloc_ros.data`: the 7-Scenes format (reader and byte-exact writers);
* :mod:`reloc_ros.core`: the runtime core, no rclpy (model, database, retrieval, fusion, localizer);
* :mod:`reloc_ros.ros`: the ROS layer (the node, one message module, TF);
* :mod:`reloc_ros.tools`: offline evaluation, benchmarks, the demo, rosbag convert / replay / evaluate.
"""

__version__ = "0.1.0"
