"""Parity reports and variant listings as pandas tables, and their terminal rendering."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from implementations.math_mode import DESCRIPTIONS
from implementations.parity import ParityReport
from implementations.spec import Architecture, forward_flops, infer, parameter_count


def _shape(shape: tuple[int, ...] | None) -> str:
    return "missing" if shape is None else "x".join(str(d) for d in shape)


def _count(value: int | None) -> str:
    return "missing" if value is None else f"{value:,}"


def parity_frame(report: ParityReport) -> pd.DataFrame:
    """One row per layer: shapes and parameters from both frameworks, neurons, difference, verdict."""
    rows = [
        {
            "layer": row.name,
            "keras_shape_hwc": _shape(row.keras_shape),
            "torch_shape_chw": _shape(row.torch_shape),
            "keras_params": row.keras_params,
            "torch_params": row.torch_params,
            "neurons": row.neurons,
            "paper_neurons": row.paper_neurons,
            "max_abs_diff": row.max_abs_diff,
            "rel_diff": row.rel_diff,
            "verdict": "ok" if row.ok else "; ".join(row.problems),
        }
        for row in report.layers
    ]
    return pd.DataFrame(rows)


def paper_notes(report: ParityReport) -> list[str]:
    """Where the paper's own figures disagree with what its architecture computes."""
    return [
        f"{row.name}: the paper lists {row.paper_neurons:,} neurons; its own {_shape(row.spec_shape)} "
        f"gives {row.neurons:,} (a known inconsistency in the paper, not a parity failure)"
        for row in report.layers
        if row.paper_neurons is not None and row.paper_neurons != row.neurons
    ]


def math_line(report: ParityReport) -> str:
    """The arithmetic and devices of a check, e.g. "math: fp32 strict (TF32 off) on torch cpu, ..."."""
    where = ", ".join(f"{name} {device}" for name, device in report.devices.items()) or "unrecorded devices"
    return f"math: {DESCRIPTIONS.get(report.math_mode, report.math_mode)} on {where}"


def render_parity(report: ParityReport, console: Console) -> None:
    frame = parity_frame(report)
    has_paper = frame["paper_neurons"].notna().any()
    table = Table(title=f"{report.variant} ({report.split_impl})", title_justify="left")
    for header in ("layer", "shape Keras (HWC)", "shape PyTorch (CHW)", "params Keras", "params PyTorch", "neurons"):
        table.add_column(header, justify="left" if header.startswith(("layer", "shape")) else "right")
    if has_paper:
        table.add_column("paper", justify="right")
    table.add_column("max |diff| (relative)", justify="right")
    table.add_column("verdict")
    for row in report.layers:
        cells = [
            row.name,
            _shape(row.keras_shape),
            _shape(row.torch_shape),
            _count(row.keras_params),
            _count(row.torch_params),
            f"{row.neurons:,}",
        ]
        if has_paper:
            flag = "" if row.paper_neurons in (None, row.neurons) else " (!)"
            cells.append("" if row.paper_neurons is None else f"{row.paper_neurons:,}{flag}")
        cells.append("not compared" if row.max_abs_diff is None else f"{row.max_abs_diff:.2e} ({row.rel_diff:.1e})")
        cells.append("[green]ok[/]" if row.ok else f"[red]{'; '.join(row.problems)}[/]")
        table.add_row(*cells)
    total_keras = sum(r.keras_params or 0 for r in report.layers)
    total_torch = sum(r.torch_params or 0 for r in report.layers)
    table.add_section()
    table.add_row("total", "", "", f"{total_keras:,}", f"{total_torch:,}", "", *([""] if has_paper else []), "", "")
    console.print(table)
    for note in paper_notes(report):
        console.print(f"  note: {note}")
    if report.logits_rel_diff is None:
        console.print("  logits: not compared")
    else:
        console.print(
            f"  logits: max |diff| {report.logits_max_abs_diff:.2e}, relative {report.logits_rel_diff:.2e} "
            f"(tolerance {report.rtol:g} relative to the largest logit)"
        )
    console.print(f"  {math_line(report)}", highlight=False)
    verdict = "[green]PASS[/]" if report.ok else f"[red]FAIL[/] at {report.first_failing_layer or 'weight transfer'}"
    console.print(f"  verdict: {verdict}\n")


def variants_frame(architectures: dict[str, Architecture | str]) -> pd.DataFrame:
    """Variants with input, classes, parameters and forward FLOPs; a string value is why it can't be built."""
    rows = []
    for name, arch in architectures.items():
        if isinstance(arch, str):
            rows.append(
                {
                    "variant": name,
                    "input_hwc": None,
                    "classes": None,
                    "parameters": None,
                    "forward_gflops": None,
                    "towers": None,
                    "note": f"cannot be built: {arch}",
                }
            )
            continue
        infer(arch)
        c, h, w = arch.input_shape
        rows.append(
            {
                "variant": name,
                "input_hwc": f"{h}x{w}x{c}",
                "classes": arch.classes,
                "parameters": parameter_count(arch),
                "forward_gflops": forward_flops(arch) / 1e9,
                "towers": 2 if arch.is_split else 1,
                "note": arch.description,
            }
        )
    return pd.DataFrame(rows)


def render_variants(frame: pd.DataFrame, console: Console) -> None:
    table = Table(title="AlexNet variants", title_justify="left")
    for header, justify in (
        ("variant", "left"),
        ("input (HxWxC)", "left"),
        ("classes", "right"),
        ("parameters", "right"),
        ("forward GFLOPs/image", "right"),
        ("towers", "right"),
    ):
        table.add_column(header, justify=justify)
    notes = []
    for row in frame.itertuples():
        if pd.isna(row.parameters):
            table.add_row(row.variant, "", "", "", "", "", style="yellow")
        else:
            table.add_row(
                row.variant,
                row.input_hwc,
                f"{int(row.classes)}",
                f"{int(row.parameters):,}",
                f"{row.forward_gflops:.3f}",
                f"{int(row.towers)}",
            )
        notes.append(f"  {row.variant}: {row.note}")
    console.print(table)
    console.print("\n".join(notes), highlight=False)
