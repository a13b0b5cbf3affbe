"""reloc_ros: learned camera relocalization for ROS 2.

The core (``geometry``, ``data``, and later ``model``, ``database``, ``localizer``) imports
without rclpy; only ``reloc_ros.ros`` and the node need a ROS 2 installation.
"""

__version__ = "0.1.0"
