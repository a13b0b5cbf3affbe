"""The runtime core of reloc_ros: everything the node needs, and nothing else (no rclpy).

    geometry    pose algebra (4x4 <-> t, q; ROS quaternion order; errors)
    camera      pinhole intrinsics
    device      'auto' | 'cpu' | 'cuda[:N]' -> torch.device
    files       atomic writes, tensor fingerprints, checked torch-file loading
    model/      encoders, the Siamese network, the model file
    database    the frame database (runtime container)
    retrieval   exact and HNSW descriptor search
    fusion      k hypotheses -> one pose with a covariance
    localizer   image -> pose, every stage timed
"""
