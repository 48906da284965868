"""Imports every model family so that each registers its name in ``models.registry``."""
from . import audiounet, tfnet  # noqa: F401
from . import bwe  # noqa: F401
