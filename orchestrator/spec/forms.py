"""Value forms of a searchable spec field, and the number types fields are built from.

A searchable field holds a scalar or exactly one of the value forms
``{grid: [...]}``, ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}``, ``{lograndint: [lo, hi]}`` (both inclusive) and ``{pow2: [lo, hi]}``
(a choice over the powers of two from lo to hi); integer fields take ``randint`` and
``lograndint`` (sizes such as the rank also ``pow2``), real-valued ones ``uniform`` and
``loguniform``, and a range's ends must be allowed values of the field.
Numbers are strict: ``"16"`` (text) is not 16. A leaf module: it imports nothing of lorasweep's
but the wording of pydantic messages.
"""
from __future__ import annotations

import re

from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

T = TypeVar("T")

FORMS = ("grid", "choice", "uniform", "loguniform", "randint", "lograndint", "pow2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Grid(_Strict, Generic[T]):
    """Every value is run (a Cartesian product with the other grid axes)."""

    grid: Annotated[list[T], Field(min_length=1)]


class Choice(_Strict, Generic[T]):
    """One value per trial, picked by the search algorithm."""

    choice: Annotated[list[T], Field(min_length=1)]


class _Range(_Strict):
    _form: str

    @property
    def bounds(self) -> tuple:
        """(lo, hi) as written (both ends inclusive)."""
        return tuple(getattr(self, next(iter(type(self).model_fields))))

    @model_validator(mode="after")
    def _ordered(self):
        lo, hi = self.bounds
        if not lo < hi:
            raise ValueError(f"{self._form} needs [lo, hi] with lo < hi, got [{lo}, {hi}]")
        return self


Real = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int is a real too; text is not
Whole = Annotated[int, Field(strict=True)]  # neither text, nor 4.0, nor true


class Uniform(_Range):
    _form = "uniform"
    uniform: tuple[Real, Real]


class LogUniform(_Range):
    _form = "loguniform"
    loguniform: tuple[Annotated[Real, Field(gt=0)], Annotated[Real, Field(gt=0)]]


class RandInt(_Range):
    _form = "randint"
    randint: tuple[Whole, Whole]


class LogRandInt(RandInt):
    """An integer drawn log-uniformly (Optuna: an int parameter with ``log=True``): as many
    draws between 1 and 16 as between 16 and 256. A RandInt for everything that only needs
    its bounds; written ``{lograndint: [lo, hi]}`` (lo >= 1)."""

    _form = "lograndint"
    randint: tuple[Annotated[Whole, Field(ge=1)], Annotated[Whole, Field(ge=1)]] = Field(
        validation_alias="lograndint")


class Pow2(_Strict):
    """``{pow2: [lo, hi]}``: shorthand for a choice over lo, 2 lo, 4 lo, ..., hi, both ends
    powers of two. Validated into a :class:`PowersOfTwo` choice, so every algorithm treats it
    as the choice it stands for (grid runs every value, Optuna searches a categorical)."""

    pow2: tuple[Annotated[Whole, Field(ge=1)], Annotated[Whole, Field(ge=1)]]

    @model_validator(mode="after")
    def _powers(self):
        lo, hi = self.pow2
        bad = [end for end in (lo, hi) if end & (end - 1)]
        if bad:
            raise ValueError(f"pow2 needs powers of two as ends (1, 2, 4, ...), got {bad[0]}")
        if not lo < hi:
            raise ValueError(f"pow2 needs [lo, hi] with lo < hi, got [{lo}, {hi}]")
        return self

    def values(self) -> list[int]:
        lo, hi = self.pow2
        return [1 << k for k in range(lo.bit_length() - 1, hi.bit_length())]


class PowersOfTwo(Choice[int]):
    """The choice a ``{pow2: [lo, hi]}`` stands for; remembers how it was written."""

    @property
    def written(self) -> str:
        return f"{{pow2: [{self.choice[0]}, {self.choice[-1]}]}}"


def _pow2_choice(value: Pow2) -> PowersOfTwo:
    return PowersOfTwo(choice=value.values())


RANGES = {"uniform": Uniform, "loguniform": LogUniform, "randint": RandInt, "lograndint": LogRandInt,
          "pow2": Annotated[Pow2, AfterValidator(_pow2_choice)]}
# Every value-form class a validated spec can hold (pow2 is held as a PowersOfTwo choice).
FORM_TYPES = (Grid, Choice, Uniform, LogUniform, RandInt)


def form_of(value: Any) -> str:
    """The form a value is written in: ``value``, a key of :data:`FORMS`, or ``unknown-form``."""
    return _form_of(value)


def _form_of(value: Any) -> str:
    if isinstance(value, dict):
        keys = list(value)
        return keys[0] if len(keys) == 1 and keys[0] in FORMS else "unknown-form"
    if isinstance(value, PowersOfTwo):
        return "pow2"
    if isinstance(value, _Range):
        return value._form
    if isinstance(value, (Grid, Choice)):
        return next(f for f in FORMS if f in type(value).model_fields)
    return "value"


def Searchable(scalar: Any, *, ranges: tuple[str, ...] = ()) -> Any:
    """A field type: ``scalar`` or one of the value forms over ``scalar``.

    ``ranges`` names the range forms the field offers (``randint``, ``lograndint`` and
    ``pow2`` for integers, ``uniform`` and ``loguniform`` for reals); both ends of a range
    must be valid values of ``scalar``.
    """
    options = [
        Annotated[scalar, Tag("value")],
        Annotated[Grid[scalar], Tag("grid")],
        Annotated[Choice[scalar], Tag("choice")],
    ] + [Annotated[RANGES[form], Tag(form)] for form in ranges]
    return Annotated[Union[tuple(options)], Discriminator(_form_of), AfterValidator(_ends_within(scalar))]


def _ends_within(scalar: Any):
    adapter = TypeAdapter(scalar)

    def check(value):
        ends = value.bounds if isinstance(value, _Range) else value.choice if isinstance(value, PowersOfTwo) else ()
        if ends:
            form = value._form if isinstance(value, _Range) else "pow2"
            for end in (ends[0], ends[-1]):
                try:
                    adapter.validate_python(end)
                except ValidationError as exc:
                    raise PydanticCustomError(
                        "range_end",
                        "{form}: end {end} is not an allowed value ({allowed})",
                        {"form": form, "end": end, "allowed": _allowed(exc.errors()[0]["msg"])},
                    ) from None
        return value

    return check


PosInt = Annotated[Whole, Field(ge=1)]
NonNegInt = Annotated[Whole, Field(ge=0)]
PosFloat = Annotated[Real, Field(gt=0)]
NonNegFloat = Annotated[Real, Field(ge=0)]
Scaling = Literal["standard", "rslora"]
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32
INT_RANGES = ("randint", "lograndint")
SIZE_RANGES = INT_RANGES + ("pow2",)  # sizes, such as the rank, where powers of two are natural
SEED_RANGES = ("randint",)
REAL_RANGES = ("uniform", "loguniform")


_PHRASES = [
    (r"^Input should be greater than or equal to (.+)$", r"must be >= \1"),
    (r"^Input should be greater than (.+)$", r"must be > \1"),
    (r"^Input should be less than or equal to (.+)$", r"must be <= \1"),
    (r"^Input should be less than (.+)$", r"must be < \1"),
    (r"^Input should be a valid integer.*$", "must be an integer"),
    (r"^Input should be a valid number.*$", "must be a number"),
    (r"^Input should be a valid (\w+).*$", r"must be a \1"),
    (r"^Input should be (.+)$", r"must be \1"),
]


def _allowed(msg: str) -> str:
    """Pydantic's wording turned into 'must be ...'."""
    for pattern, replacement in _PHRASES:
        if re.match(pattern, msg):
            return re.sub(pattern, replacement, msg)
    return msg
