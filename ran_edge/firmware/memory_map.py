"""Where the model and its arena go, and whether they fit the target's declared budget.

Shared_Sram: model in flash, arena in SRAM. Sram_Only: both in SRAM. Dedicated_Sram: model
and arena in DRAM, Vela's fast scratch (the SRAM cache) in the NPU's SRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

ARENA_ALIGN = 16
MARGIN_ROUND = 1024


def align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Region:
    memory: str  # "SRAM", "flash", "DRAM"
    needed_bytes: int
    budget_bytes: int | None
    contents: str

    @property
    def fits(self) -> bool | None:
        return None if self.budget_bytes is None else self.needed_bytes <= self.budget_bytes


@dataclass(frozen=True)
class MemoryPlan:
    memory_mode: str
    tensor_arena_bytes: int
    fast_memory_bytes: int
    margin_bytes: int
    regions: tuple[Region, ...]

    @property
    def overflows(self) -> list[Region]:
        return [r for r in self.regions if r.fits is False]


def plan_memory(
    *,
    memory_mode: str,
    model_bytes: int,
    scratch_bytes: int,
    scratch_fast_bytes: int,
    tflm_persistent_bytes: int,
    sram_budget: int | None,
    flash_budget: int | None,
    dram_budget: int | None,
) -> MemoryPlan:
    """Arena = Vela scratch + TFLM's measured persistent overhead (rounded up to 1 KiB)."""
    margin = align(max(tflm_persistent_bytes, 1), MARGIN_ROUND)
    arena = align(scratch_bytes + margin, ARENA_ALIGN)
    fast = align(scratch_fast_bytes, ARENA_ALIGN)
    model = align(model_bytes, ARENA_ALIGN)
    if memory_mode == "Sram_Only":
        regions = (
            Region("SRAM", arena + fast + model, sram_budget, "tensor arena + model"),
            Region("flash", model, flash_budget, "model image (copied to SRAM at boot)"),
        )
    elif memory_mode.startswith("Dedicated_Sram"):
        regions = (
            Region("SRAM", fast, sram_budget, "NPU fast scratch (Vela's SRAM cache)"),
            Region("DRAM", arena + model, dram_budget, "tensor arena + model"),
        )
    else:  # Shared_Sram and anything else that keeps the model in flash
        regions = (
            Region("SRAM", arena + fast, sram_budget, "tensor arena"),
            Region("flash", model, flash_budget, "model"),
        )
    return MemoryPlan(memory_mode, arena, fast, margin, regions)


def render_memory_map(
    plan: MemoryPlan, *, model_name: str, target_name: str, budget_source: str
) -> str:
    """Markdown a firmware engineer can read next to the linker script."""
    lines = [
        f"# Memory map: {model_name} on {target_name}",
        "",
        f"Memory mode: {plan.memory_mode}. Budgets from: {budget_source or 'command line / none'}.",
        "",
        "| memory | needed (bytes) | budget (bytes) | headroom | holds |",
        "|---|---:|---:|---:|---|",
    ]
    for r in plan.regions:
        if r.budget_bytes is None:
            budget, headroom = "not declared", "not checked"
        else:
            budget = f"{r.budget_bytes:,}"
            headroom = f"{r.budget_bytes - r.needed_bytes:,}" + (
                "" if r.fits else " **DOES NOT FIT**"
            )
        lines.append(f"| {r.memory} | {r.needed_bytes:,} | {budget} | {headroom} | {r.contents} |")
    lines += [
        "",
        f"- Tensor arena: {plan.tensor_arena_bytes:,} B = Vela `scratch` + TFLM margin "
        f"{plan.margin_bytes:,} B, aligned to {ARENA_ALIGN} B. The margin is TFLM's persistent "
        f"allocations measured on the int8 model (tensor and node structs, per-channel "
        f"quantization data), rounded up to {MARGIN_ROUND} B: an upper bound, since the "
        "compiled model hands most layers to the single ethos-u op.",
        f"- Fast memory (Vela `scratch_fast`): {plan.fast_memory_bytes:,} B"
        + (" (none: single arena)" if plan.fast_memory_bytes == 0 else "."),
        "- Undeclared budgets are not checked: declare them in the target profile's `[memory]` "
        "table or pass `--sram-budget` / `--flash-budget` / `--dram-budget`.",
    ]
    return "\n".join(lines) + "\n"
