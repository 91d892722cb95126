# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
from .transforms import *  # noqa: F401,F403
