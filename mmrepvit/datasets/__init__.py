# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .transforms import AlignResize

__all__ = ['AlignResize']
