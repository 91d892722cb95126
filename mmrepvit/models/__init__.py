# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
