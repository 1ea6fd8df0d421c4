"""Switch values as the report sees them, read only from ``dgg_tf.config.CHOICES``
(the first value of a switch is the original code's). Nothing here lists a switch's
values, so a third value, or a new switch, needs no change in the report.

Comparisons keep their historical keys (``gradient_cosine``) while a switch has one
alternative; with several, ``keyed`` names each one (``gradient_cosine [b]``)."""
from __future__ import annotations

from dgg_tf.core import config


def choices(switch):
    """The allowed values of ``switch``, code value first (looked up at call time)."""
    return tuple(config.CHOICES[switch])


def code_value(switch):
    """The original code's value of ``switch``."""
    return choices(switch)[0]


def alternatives(switch, value):
    """Every allowed value of ``switch`` except ``value``, in CHOICES order."""
    return [v for v in choices(switch) if v != value]


def ordered(switch, a, b):
    """The two values ``a`` and ``b`` in CHOICES order (so keys do not depend on which
    one is configured)."""
    allowed = choices(switch)
    return (a, b) if allowed.index(a) <= allowed.index(b) else (b, a)


def keyed(key, alt, alts):
    """``key`` when ``alt`` is the only alternative, else ``key [alt]``."""
    return key if len(alts) == 1 else f"{key} [{alt}]"


def switch_line(switch):
    """The 'Switch:' line of a quirk: ``name: code value (code) / other / ...``."""
    first, *others = choices(switch)
    label = first if first == "code" else f"{first} (code)"
    return f"{switch}: " + " / ".join(str(v) for v in [label, *others])
