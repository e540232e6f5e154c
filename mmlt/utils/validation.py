"""Argument checks shared by mmlt's components: one style, one message form.

Each returns the checked value, so a constructor reads
``self.num_classes = check_int('num_classes', num_classes)``; each raises
``ValueError`` naming the argument, what is expected and what was given.
"""
import math
from numbers import Integral, Real
from typing import Optional, Sequence, TypeVar

T = TypeVar('T')


def check_int(name: str, value, minimum: Optional[int] = 1) -> int:
    """An int (not a bool) >= ``minimum`` (None: any int)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or (
            minimum is not None and value < minimum):
        bound = '' if minimum is None else f' >= {minimum}'
        raise ValueError(f'{name} must be an int{bound}, got {value!r}')
    return int(value)


def check_number(name: str,
                 value,
                 minimum: Optional[float] = None,
                 strictly_above: Optional[float] = None,
                 strictly_below: Optional[float] = None,
                 finite: bool = True) -> float:
    """A real number (not a bool), optionally bounded and finite."""
    if isinstance(value, bool) or not isinstance(value, Real) or (
            finite and not math.isfinite(value)) or (
                minimum is not None and not value >= minimum) or (
                    strictly_above is not None
                    and not value > strictly_above) or (
                        strictly_below is not None
                        and not value < strictly_below):
        bounds = []
        if minimum is not None:
            bounds.append(f'>= {minimum}')
        if strictly_above is not None:
            bounds.append(f'> {strictly_above}')
        if strictly_below is not None:
            bounds.append(f'< {strictly_below}')
        if finite:
            bounds.append('finite')
        raise ValueError(f'{name} must be a number ({", ".join(bounds)}), '
                         f'got {value!r}')
    return float(value)


def check_choice(name: str, value: T, choices: Sequence[T]) -> T:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(
            f'{name}={value!r}; expected one of {tuple(choices)}')
    return value
