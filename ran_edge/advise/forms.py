"""Replacement blocks: which forms may fill a site, how each is built, and its cost graph.

Replacements are the search space's choices (inverted residual kernel 3/5/7 x expansion
2/4/6, or the collapsed dense 3x3 block) built with the site's own activation, so a
ReLU6 network stays a ReLU6 network. Each is costed exactly like a cost-table entry: in
a 1x1-conv sandwich at the site's slot, minus the slot's two frames (see
`ran_edge.search.graphs`), and so is the site's current block, which makes the two
figures comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ran_edge.advise.sites import ACTIVATIONS, BlockForm, Site
from ran_edge.blocks import CollapsedBlock, InvertedResidual
from ran_edge.models.ran_e_space import EXPANSIONS, KERNELS, Slot
from ran_edge.search.graphs import Sandwich

COLLAPSED_KERNEL = 3


def build_form(slot: Slot, form: BlockForm) -> nn.Module:
    """The block `form` describes, at `slot`, freshly initialised."""
    act = ACTIVATIONS[form.act]
    if form.kind == "collapsed":
        return CollapsedBlock(slot.cin, slot.cout, form.kernel, slot.stride, act=act)
    return InvertedResidual(slot.cin, slot.cout, slot.stride, form.expand, form.kernel, act=act)


def replacement_forms(site: Site, allow_smaller: bool) -> list[BlockForm]:
    """The forms that may replace `site`'s block, its current form excluded.

    By default an inverted residual may only grow (kernel and expansion at least the
    current ones), so advice never buys speed by cutting capacity; the collapsed block is
    always allowed: that is the RAN-e restructuring (dense MACs the NPU runs well, one
    activation instead of two, recovered by distillation). `allow_smaller` lifts the rule.
    """
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
