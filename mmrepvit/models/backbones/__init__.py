# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .repvit import RepViT

__all__ = ['RepViT']
