"""Replacements: which forms may fill a site, how each is built, and its cost graph.

A block site's replacements are the search space's choices (inverted residual kernel
3/5/7 x expansion 2/4/6, or the collapsed dense 3x3 block) built with the site's own
activation, so a ReLU6 network stays a ReLU6 network. A conv site's replacements are the
cheaper operators of `ran_edge.blocks.cheap_convs` (separable, grouped, low-rank, ghost)
with the conv's kernel and stride. Each is costed exactly like a cost-table entry: in a
1x1-conv sandwich at the site's slot, minus the slot's two frames (see
`ran_edge.search.graphs`), and so is the site's current form, which makes the two figures
comparable. The costs are the target's: Vela on Ethos-U, the CPU estimator on Cortex-A.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ran_edge.advise.request import CONV_FORMS
from ran_edge.advise.sites import ACTIVATIONS, BlockForm, Site
from ran_edge.blocks import CollapsedBlock, InvertedResidual
from ran_edge.blocks.cheap_convs import (
    GhostConv,
    LowRankConv,
    SeparableConv,
    grouped_from_dense,
)
from ran_edge.models.ran_e_space import EXPANSIONS, KERNELS, Slot
from ran_edge.search.graphs import Sandwich

COLLAPSED_KERNEL = 3
# Conv stand-ins' parameters, and the least width a stand-in must keep: below it a
# depthwise or grouped part has too few channels per group to learn anything useful.
GROUPS = (2, 4)
RANKS = (0.5, 0.25)
MIN_CHANNELS = 8


def build_form(slot: Slot, form: BlockForm, like: nn.Module | None = None) -> nn.Module:
    """The block or conv `form` describes, at `slot`: a conv stand-in replacing a dense
    conv `like` starts at the closest fit to its weights (`from_dense`), anything else
    freshly initialised."""
    module = _new_form(slot, form)
    if isinstance(like, nn.Conv2d) and form.is_conv and form.kind != "conv":
        if form.kind == "grouped":
            return grouped_from_dense(module, like)
        return module.from_dense(like)
    return module


def _new_form(slot: Slot, form: BlockForm) -> nn.Module:
    cin, cout, k, s = slot.cin, slot.cout, form.kernel, slot.stride
    if form.kind == "conv":
        return nn.Conv2d(cin, cout, k, s, k // 2)
    if form.kind == "separable":
        return SeparableConv(cin, cout, k, s)
    if form.kind == "grouped":
        return nn.Conv2d(cin, cout, k, s, k // 2, groups=int(form.expand))
    if form.kind == "lowrank":
        return LowRankConv(cin, cout, k, s, rank=_rank(slot, form.expand))
    if form.kind == "ghost":
        return GhostConv(cin, cout, k, s)
    act = ACTIVATIONS[form.act]
    if form.kind == "collapsed":
        return CollapsedBlock(cin, cout, k, s, act=act)
    return InvertedResidual(cin, cout, s, form.expand, k, act=act)


def _low_rank_fits(slot: Slot, k: int, fraction: float) -> bool:
    """Rank of at least MIN_CHANNELS, and fewer MACs than the dense conv: k(cin + cout)r
    against k^2 cin cout (on a 1- or 3-channel stem a low-rank pair costs more)."""
    rank = _rank(slot, fraction)
    return rank >= MIN_CHANNELS and rank * (slot.cin + slot.cout) < k * slot.cin * slot.cout


def _rank(slot: Slot, fraction: float) -> int:
    return max(1, round(slot.cout * fraction))


def conv_stand_ins(site: Site, kinds: tuple[str, ...] = CONV_FORMS) -> list[BlockForm]:
    """The cheaper operators that may replace a dense conv site, among `kinds`: each only
    where it keeps at least MIN_CHANNELS per group / in its narrow part, and a low-rank
    pair only where it has fewer MACs than the conv. (Vela runs a
    grouped conv as one NPU conv per group, and the cost says what that is worth.)"""
    slot, k = site.slot, site.form.kernel
    forms = []
    for kind in CONV_FORMS:
        if kind not in kinds:
            continue
        if kind == "separable" and slot.cin >= MIN_CHANNELS:
            forms.append(BlockForm(kind, k, 1.0, ""))
        if kind == "grouped":
            forms += [
                BlockForm(kind, k, float(g), "")
                for g in GROUPS
                if slot.cin % g == 0
                and slot.cout % g == 0
                and min(slot.cin, slot.cout) // g >= MIN_CHANNELS
            ]
        if kind == "lowrank":
            forms += [BlockForm(kind, k, r, "") for r in RANKS if _low_rank_fits(slot, k, r)]
        if kind == "ghost" and slot.cout >= 2 * MIN_CHANNELS:
            forms.append(BlockForm(kind, k, 1.0, ""))
    return forms


def replacement_forms(
    site: Site,
    allow_smaller: bool,
    conv_kinds: tuple[str, ...] = CONV_FORMS,
) -> list[BlockForm]:
    """The forms that may replace `site`, its current form excluded.

    A conv site gets the cheaper operators in `conv_kinds` (see `conv_stand_ins`): they
    cut capacity by design, which distillation recovers; whether one is faster is the
    target's cost to say. A block site:

    by default an inverted residual may only grow (kernel and expansion at least the
    current ones), so advice never buys speed by cutting capacity; the collapsed block is
    always allowed: that is the RAN-e restructuring (dense MACs the NPU runs well, one
    activation instead of two, recovered by distillation). `allow_smaller` lifts the rule.
    """
    if site.form.is_conv:
        return conv_stand_ins(site, conv_kinds)
    act = site.form.act
    forms = [BlockForm("collapsed", COLLAPSED_KERNEL, 1.0, act)]
    for kernel in KERNELS:
        for expand in EXPANSIONS:
            form = BlockForm("ir", kernel, float(expand), act)
            if form == site.form:
                continue
            if allow_smaller or (kernel >= site.form.kernel and expand >= site.form.expand):
                forms.append(form)
    return forms


@dataclass(frozen=True)
class FormGraph:
    """A block form in its sandwich at a slot: a graph spec the cost table can compile."""

    slot: Slot
    form: BlockForm

    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.slot.cin, self.slot.size, self.slot.size)

    def module(self) -> nn.Module:
        return Sandwich(self.slot, build_form(self.slot, self.form))
