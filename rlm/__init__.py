"""Thin shim so ``%load_ext rlm`` and ``import rlm`` work.

Other packages (for example ``rlms``) also claim the top-level name ``rlm``; when they clash,
``%load_ext rlm_jupyter`` and ``import rlm_jupyter`` always work.
"""

from rlm_jupyter import *  # noqa: F401,F403
from rlm_jupyter import __all__, __getattr__, load_ipython_extension, unload_ipython_extension  # noqa: F401
