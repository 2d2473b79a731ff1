"""Checkpoint layouts: which registered family and which of its sources a state dict comes from, and its
names mapped to timm's, vitdeploy's canonical layout.

Generic: every family declares its layouts (and the input each source expects) in its
:class:`~vitdeploy.models.Family` row and recognises and maps them in its module (``layout_of``,
``to_canonical``; LeViT: timm, timm-conv, official, hf; MobileViT: timm, cvnets, hf). Nothing here
names a family.
"""

from __future__ import annotations

from ..errors import CheckpointError
from ..models import Family, families, family


def layout_names() -> tuple[str, ...]:
    """Every registered family's layouts, each once, in registration order."""
    return tuple(dict.fromkeys(name for fam in families() for name in fam.layout_names()))


def detect_layout(sd: dict) -> tuple[str, str]:
    """(layout, family) of a state dict, from its key names: the one family whose sources write it."""
    claims = [(layout, fam) for fam in families() if (layout := _claimed_layout(fam, sd)) is not None]
    if len(claims) > 1:
        which = ", ".join(f"{fam.name} ({layout})" for layout, fam in claims)
        raise CheckpointError(f"ambiguous checkpoint: its keys fit several families' layouts: {which}")
    if not claims:
        sample = ", ".join(sorted(sd.keys())[:4])
        raise CheckpointError(f"not a {_titles()} checkpoint: unrecognised keys ({len(sd)} keys, e.g. {sample})")
    layout, fam = claims[0]
    return layout, fam.name


def to_canonical(sd: dict, layout: str, family_name: str | None = None) -> dict:
    """Rename (and where needed reshape or split/merge) tensors into timm's layout; the family is the one
    :func:`detect_layout` finds when not given."""
    fam = family(family_name) if family_name is not None else family(detect_layout(sd)[1])
    if layout not in fam.layout_names():
        known = ", ".join(fam.layout_names())
        raise CheckpointError(f"unknown layout '{layout}' for {fam.name}; known: {known}")
    return fam.to_canonical(sd, layout)


def _claimed_layout(fam: Family, sd: dict) -> str | None:
    layout = fam.layout_of(sd)
    if layout is not None and layout not in fam.layout_names():
        # A family's module and its registry row disagree: a bug in the family, said where it is.
        raise TypeError(f"{fam.module}.layout_of returned '{layout}', which the {fam.name} Family row does not "
                        f"declare (layouts: {', '.join(fam.layout_names())})")
    return layout


def _titles() -> str:
    """'LeViT or MobileViT' (and 'A, B or C' for more families)."""
    titles = [fam.title for fam in families()]
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} or {titles[-1]}"
