"""rosbag2 commands: 7-Scenes to bag (``convert``), replay with rclpy (``replay``) and the
online evaluator (``evaluate``); ``topics`` names what a reloc_ros bag holds."""
