"""The relative-pose model: encoders (``backbones``), the Siamese network (``network``) and
its self-describing file (``file``). The names below are the package's public API."""

from reloc_ros.core.model.backbones import BACKBONES, build_encoder
from reloc_ros.core.model.file import (ModelFileError, ModelInfo, code_version, generic_model_path, load_model,
                                       read_model_file, save_model)
from reloc_ros.core.model.network import IMAGENET_MEAN, IMAGENET_STD, TASK_DIMS, ModelConfig, RelPoseNet, resize_rgb

__all__ = ["BACKBONES", "build_encoder", "ModelFileError", "ModelInfo", "code_version", "generic_model_path", "load_model",
           "read_model_file", "save_model", "IMAGENET_MEAN", "IMAGENET_STD", "TASK_DIMS", "ModelConfig",
           "RelPoseNet", "resize_rgb"]
