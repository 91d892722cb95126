# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .align_resize import AlignResize

__all__ = ['AlignResize']
