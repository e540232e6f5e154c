from .color_jitter import ColorJitter  # noqa: F401
