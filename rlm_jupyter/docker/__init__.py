"""What the Docker sandbox ships besides its backend (``rlm_jupyter.sandbox.docker``): the
``Dockerfile`` users build the image from (its header has the one-line command),
:mod:`.portable`, which pickles pandas/numpy contexts so an image with other versions loads them,
and :mod:`.attach`, which turns the SDK's attach socket into the worker's stdin and stdout.
"""
