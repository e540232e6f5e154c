from .launch import apply_common_args, build_runner, load_config

__all__ = ['apply_common_args', 'build_runner', 'load_config']
