"""Thin shim so ``%load_ext rlm`` and ``import rlm`` work.

Other packages (for example ``rlms``) also claim the top-level name ``rlm``; when they clash,
``%load_ext rlm_jupyter`` and ``import rlm_jupyter`` always work.

No ``import *`` here: it would resolve every lazy name (and import litellm) at load time,
which ``%load_ext rlm`` must not pay. ``__getattr__`` forwards lazily instead.
"""

from rlm_jupyter import (  # noqa: F401
    __all__,
    __getattr__,
    __version__,
    load_ipython_extension,
    unload_ipython_extension,
)
