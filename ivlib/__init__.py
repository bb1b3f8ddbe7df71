"""ivlib: Imagen Video (Ho et al., 2022) rebuilt in JAX, one chapter at a time."""

__version__ = "0.1.0"
