"""Computed fields and row filters of a source mapping: declarative, typed, evaluated vectorised; never ``eval``.

A dataset of a source may declare

- ``inputs``: source columns read only to compute or filter (``{Column: {name: n, type: date|decimal|text|flag}}``),
  parsed with the source's formats and checked like any field;
- ``computed``: canonical fields derived from others (``{field: expression}``);
- ``keep_if``: a condition; rows for which it is false are *filtered* (counted, neither staged nor quarantined).

Expressions are data, interpreted here: ``{const: "0"}``, ``{copy: field}``, ``{add: [a, b, ...]}``,
``{sub: [a, b]}`` (exact decimal arithmetic; an operand is a field name or an expression) and
``{if: condition, then: expression, else: expression}``. Conditions compare dates: ``{date: field, op: "<=",
than: as_of | field, if_empty: true | false}``, combined with ``{all: [...]}``, ``{any: [...]}``, ``{not: ...}``.

Everything that can be checked without data is checked when the config is loaded (:func:`check_dataset`): unknown
fields, type mismatches, a field both mapped and computed, references to fields computed later, YAML floats as
constants (inexact). What can only be decided per row fails closed: a condition that reads an empty value without
saying what empty means (``if_empty``) leaves the row *undecidable* (quarantined, naming the empty field); a
computed value goes through exactly the checks a read value does (see :mod:`writeoffs.ingest.validate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: Value types of expressions. Canonical field kinds map onto them (:func:`value_type`).
ValueType = Literal["decimal", "date", "text", "flag"]
AS_OF = "as_of"
#: Decimal values inside expressions: wide enough for any sum of NUMERIC(20, 4) amounts and 10-decimal rates.
DECIMAL_PRECISION, DECIMAL_SCALE = 36, 10  # 36: a sum of two still fits decimal128


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputColumn(_Model):
    """A source column read only to compute or filter: typed like a field, never stored."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    type: ValueType


# -- conditions ------------------------------------------------------------------------------------------------
class DateTest(_Model):
    date: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    than: str  # "as_of" (the business date) or a date field
    if_empty: bool | None = None  # the condition's value when a side is empty; None: such a row is undecidable


class AllOf(_Model):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Model):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Model):
    not_: Condition = Field(alias="not")


def _tag(keys: tuple[str, ...], types: dict[type, str]) -> Callable[[Any], str | None]:
    def tag(v: Any) -> str | None:
        if isinstance(v, dict):
            hits = [k for k in keys if k in v]
            return hits[0] if len(hits) == 1 else None
        return types.get(type(v))

    return tag


Condition = Annotated[
    Union[  # noqa: UP007 - the tagged union needs the Union form for Tag annotations
        Annotated[DateTest, Tag("date")],
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[NotOf, Tag("not")],
    ],
    Discriminator(
        _tag(("date", "all", "any", "not"), {DateTest: "date", AllOf: "all", AnyOf: "any", NotOf: "not"}),
        custom_error_type="condition",
        custom_error_message="a condition is {date: field, op: ..., than: as_of|field}, {all: [...]}, {any: [...]}"
        " or {not: ...}",
    ),
]


# -- expressions -----------------------------------------------------------------------------------------------
class Const(_Model):
    const: StrictBool | StrictInt | StrictStr

    @field_validator("const", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        # A YAML float (0.1) is a binary approximation, not the decimal the user wrote: refused, never rounded.
        if isinstance(v, float):
            raise ValueError(f'constant {v!r} is a YAML float (inexact): quote it, e.g. {{const: "{v}"}}')
        if not isinstance(v, str | int | bool):
            raise ValueError("a constant is text, an integer, a quoted decimal, an ISO date or true/false")
        return v


class Copy(_Model):
    copy_: str = Field(alias="copy")


def _operand(v: Any) -> Any:
    """In ``add`` / ``sub`` a bare name is a field; a bare number is refused (write ``{const: "1.50"}``)."""
    if isinstance(v, str):
        return {"copy": v}
    if isinstance(v, int | float) and not isinstance(v, bool):
        raise ValueError(f'write the number {v!r} as {{const: "{v}"}} (quoted: exact decimal)')
    return v


class Add(_Model):
    add: list[Annotated[Expression, BeforeValidator(_operand)]] = Field(min_length=2)


class Sub(_Model):
    sub: list[Annotated[Expression, BeforeValidator(_operand)]] = Field(min_length=2, max_length=2)


class If(_Model):
    if_: Condition = Field(alias="if")
    then: Expression
    else_: Expression = Field(alias="else")


Expression = Annotated[
    Union[  # noqa: UP007
        Annotated[Const, Tag("const")],
        Annotated[Copy, Tag("copy")],
        Annotated[Add, Tag("add")],
        Annotated[Sub, Tag("sub")],
        Annotated[If, Tag("if")],
    ],
    Discriminator(
        _tag(
            ("const", "copy", "add", "sub", "if"),
            {Const: "const", Copy: "copy", Add: "add", Sub: "sub", If: "if"},
        ),
        custom_error_type="expression",
        custom_error_message="an expression is {const: value}, {copy: field}, {add: [...]}, {sub: [a, b]} or"
        " {if: condition, then: ..., else: ...}",
    ),
]

for _m in (AllOf, AnyOf, NotOf, Add, Sub, If):
    _m.model_rebuild()


# -- static checks (config load) -------------------------------------------------------------------------------
def value_type(kind: str) -> ValueType:
    """The expression type of a canonical field kind (:mod:`writeoffs.ingest.fields`)."""
    return {"money": "decimal", "rate": "decimal", "date": "date", "flag": "flag"}.get(kind, "text")  # type: ignore[return-value]


def refs(node: Any) -> Iterator[str]:
    """Every field name an expression or condition reads."""
    if isinstance(node, Copy):
        yield node.copy_
    elif isinstance(node, DateTest):
        yield node.date
        if node.than != AS_OF:
            yield node.than
    elif isinstance(node, Add | Sub):
        for o in node.add if isinstance(node, Add) else node.sub:
            yield from refs(o)
    elif isinstance(node, If):
        yield from refs(node.if_)
        yield from refs(node.then)
        yield from refs(node.else_)
    elif isinstance(node, AllOf | AnyOf):
        for c in node.all if isinstance(node, AllOf) else node.any:
            yield from refs(c)
    elif isinstance(node, NotOf):
        yield from refs(node.not_)


def uses_as_of(node: Any) -> bool:
    if isinstance(node, DateTest):
        return node.than == AS_OF
    if isinstance(node, If):
        return uses_as_of(node.if_) or uses_as_of(node.then) or uses_as_of(node.else_)
    children = {AllOf: "all", AnyOf: "any", Add: "add", Sub: "sub"}
    for t, attr in children.items():
        if isinstance(node, t):
            return any(uses_as_of(c) for c in getattr(node, attr))
    return isinstance(node, NotOf) and uses_as_of(node.not_)


def check_const(value: Any, want: ValueType, where: str) -> None:
    ok = True
    if want == "decimal":
        try:
            ok = not isinstance(value, bool) and Decimal(str(value)).is_finite()
        except InvalidOperation:
            ok = False
    elif want == "date":
        try:
            date.fromisoformat(str(value))
        except ValueError:
            ok = False
        ok = ok and isinstance(value, str)
    elif want == "flag":
        ok = isinstance(value, bool)
    if not ok:
        shape = {"decimal": 'a quoted decimal ("12.50")', "date": 'an ISO date ("2026-01-31")', "flag": "true/false"}
        raise ValueError(f"{where}: constant {value!r} is not {shape.get(want, 'text')}")


def _check_condition(c: Any, env: dict[str, ValueType], where: str) -> None:
    if isinstance(c, DateTest):
        for name in (c.date, c.than):
            if name == AS_OF and name is c.than:
                continue
            if name not in env:
                raise ValueError(f"{where}: unknown field {name!r} (known: {sorted(env)})")
            if env[name] != "date":
                raise ValueError(f"{where}: {name!r} is {env[name]}, a date comparison needs dates")
    elif isinstance(c, AllOf | AnyOf):
        for k, sub in enumerate(c.all if isinstance(c, AllOf) else c.any):
            _check_condition(sub, env, f"{where}[{k}]")
    elif isinstance(c, NotOf):
        _check_condition(c.not_, env, where)


def _type_of(e: Any, env: dict[str, ValueType], want: ValueType, where: str) -> ValueType:
    """The expression's type; constants and mismatches are checked against ``want`` (the target's type)."""
    if isinstance(e, Const):
        check_const(e.const, want, where)
        return want
    if isinstance(e, Copy):
        if e.copy_ not in env:
            raise ValueError(f"{where}: unknown field {e.copy_!r} (known: {sorted(env)})")
        got = env[e.copy_]
    elif isinstance(e, Add | Sub):
        for k, o in enumerate(e.add if isinstance(e, Add) else e.sub):
            t = _type_of(o, env, "decimal", f"{where}[{k}]")
            if t != "decimal":
                raise ValueError(f"{where}[{k}]: arithmetic needs decimals, got {t}")
        got = "decimal"
    else:
        _check_condition(e.if_, env, f"{where}.if")
        _type_of(e.then, env, want, f"{where}.then")
        _type_of(e.else_, env, want, f"{where}.else")
        return want
    if got != want and want != "text":  # anything may be copied into a text field
        raise ValueError(f"{where}: {got} where {want} is needed")
    return want


def check_dataset(
    dataset: str,
    kinds: dict[str, str],
    mapped: set[str],
    inputs: dict[str, InputColumn],
    computed: dict[str, Any],
    keep_if: Any,
    constants: set[str],
) -> None:
    """Refuse (ValueError naming the place) anything a mapping cannot mean: see the module docstring."""
    where = f"datasets.{dataset}"
    names = [i.name for i in inputs.values()]
    for name in names:
        if name in kinds:
            raise ValueError(f"{where}.inputs: {name!r} is a canonical field; give the input another name")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}.inputs: two inputs share a name")
    env: dict[str, ValueType] = {i.name: i.type for i in inputs.values()}
    env.update({f: value_type(k) for f, k in kinds.items() if f not in computed})
    for target, expr in computed.items():
        here = f"{where}.computed.{target}"
        if target not in kinds:
            raise ValueError(f"{here}: not a field of {dataset} (fields: {sorted(kinds)})")
        if target in mapped:
            raise ValueError(f"{here}: the field is also mapped from a column; a field has one source")
        if target in constants:
            raise ValueError(f"{here}: the field also has a source-level constant (entity / default_currency)")
        if target in set(refs(expr)):
            raise ValueError(f"{here}: the expression reads the field it computes")
        _type_of(expr, env, value_type(kinds[target]), here)
        env[target] = value_type(kinds[target])
    if keep_if is not None:
        _check_condition(keep_if, env, f"{where}.keep_if")


# -- evaluation (vectorised) -----------------------------------------------------------------------------------
class Undecided:
    """Rows whose condition could not be decided, each with the (first) empty field that made it so."""

    def __init__(self) -> None:
        self.found: list[tuple[np.ndarray, str, str]] = []  # (row mask, field, condition as text)


def _cmp(op: str) -> Callable[..., Any]:
    import pyarrow.compute as pc

    return {
        "<": pc.less,
        "<=": pc.less_equal,
        ">": pc.greater,
        ">=": pc.greater_equal,
        "==": pc.equal,
        "!=": pc.not_equal,
    }[op]


def describe(c: Any) -> str:
    if isinstance(c, DateTest):
        return f"{c.date} {c.op} {c.than}"
    if isinstance(c, AllOf | AnyOf):
        word, parts = (" and ", c.all) if isinstance(c, AllOf) else (" or ", c.any)
        return "(" + word.join(describe(p) for p in parts) + ")"
    return f"not {describe(c.not_)}"


def condition(c: Any, values: dict[str, pa.Array], as_of: date | None, undecided: Undecided) -> pa.Array:
    """A boolean array, null where the condition cannot be decided; those rows (and only those: ``any`` of an
    undecidable part and a true one is true) are added to ``undecided`` with the empty field to blame."""
    import pyarrow.compute as pc

    leaves: list[tuple[np.ndarray, str, str]] = []
    out = _condition(c, values, as_of, leaves)
    top = pc.is_null(out).to_numpy(zero_copy_only=False)
    if top.any():
        undecided.found.extend((mask & top, name, text) for mask, name, text in leaves)
    return out


def _condition(
    c: Any, values: dict[str, pa.Array], as_of: date | None, leaves: list[tuple[np.ndarray, str, str]]
) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(c, DateTest):
        left = values[c.date]
        if c.than == AS_OF:
            if as_of is None:  # a code path without a business date: a bug, not a data problem
                raise RuntimeError(f"condition {describe(c)} needs the business date")
            right: Any = pa.scalar(as_of, pa.date32())
        else:
            right = values[c.than]
        out = _cmp(c.op)(left, right)
        if c.if_empty is not None:
            return pc.fill_null(out, c.if_empty)
        nulls = pc.is_null(out).to_numpy(zero_copy_only=False)
        if nulls.any():
            empty_left = pc.is_null(left).to_numpy(zero_copy_only=False)
            leaves.append((nulls & empty_left, c.date, describe(c)))
            if c.than != AS_OF:
                leaves.append((nulls & ~empty_left, c.than, describe(c)))
        return out
    if isinstance(c, AllOf | AnyOf):
        combine = pc.and_kleene if isinstance(c, AllOf) else pc.or_kleene
        parts = [_condition(p, values, as_of, leaves) for p in (c.all if isinstance(c, AllOf) else c.any)]
        out = parts[0]
        for p in parts[1:]:
            out = combine(out, p)
        return out
    return pc.invert(_condition(c.not_, values, as_of, leaves))


def decimal_type() -> pa.DataType:
    import pyarrow as pa

    return pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)


def _scalar(value: Any, want: ValueType) -> Any:
    import pyarrow as pa

    if want == "decimal":
        return pa.scalar(Decimal(str(value)), decimal_type())
    if want == "date":
        return pa.scalar(date.fromisoformat(str(value)), pa.date32())
    if want == "flag":
        return pa.scalar(bool(value), pa.bool_())
    return pa.scalar(str(value), pa.string())


def _as(arr: Any, want: ValueType) -> Any:

    if want == "decimal":
        return arr.cast(decimal_type())
    if want == "text":
        return as_text(arr)
    return arr


def evaluate(
    e: Any, want: ValueType, values: dict[str, pa.Array], as_of: date | None, n: int, undecided: Undecided
) -> pa.Array:
    """The expression's values for ``n`` rows, typed as ``want`` (decimals as decimal128(38, 10))."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(e, Const):
        return pa.repeat(_scalar(e.const, want), n) if n else pa.array([], _scalar(e.const, want).type)
    if isinstance(e, Copy):
        return _as(values[e.copy_], want)
    if isinstance(e, Add | Sub):
        ops = [evaluate(o, "decimal", values, as_of, n, undecided) for o in (e.add if isinstance(e, Add) else e.sub)]
        out = ops[0]
        for o in ops[1:]:
            # pyarrow widens the precision by one per operation; back to the common type so nesting stays bounded
            out = (pc.add if isinstance(e, Add) else pc.subtract)(out, o).cast(decimal_type())
        return out
    test = condition(e.if_, values, as_of, undecided)
    then = evaluate(e.then, want, values, as_of, n, undecided)
    other = evaluate(e.else_, want, values, as_of, n, undecided)
    return pc.if_else(test, then, other)


def as_text(arr: pa.Array) -> pa.Array:
    """A computed value as canonical text (``.`` decimals, ISO dates, ``true``/``false``) for the field parsers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_boolean(arr.type):
        return pc.if_else(arr, "true", "false")
    if pa.types.is_decimal(arr.type):
        # Arrow prints a zero with 10 decimals as "0E-10" (and |x| < 1e-6 in exponent form, which the money
        # parser then refuses as not a number: fail closed); zero is common (a paid invoice's balance).
        return pc.if_else(pc.equal(arr, pa.scalar(0, arr.type)), "0", arr.cast(pa.string()))
    return arr.cast(pa.string())
