"""Offline training of the Siamese relative-pose network (installed as ``reloc_train``).

Nothing here imports rclpy or node code.
"""
