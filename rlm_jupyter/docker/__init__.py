"""What the Docker sandbox ships besides its backend (``rlm_jupyter.sandbox.docker``): the
``Dockerfile`` users build the image from (its header has the one-line command), and
:mod:`.portable`, which pickles pandas/numpy contexts so an image with other versions loads them.
"""
