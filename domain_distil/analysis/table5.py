"""Table 5's layout: one row per encoder variant, milliseconds per message at each length; and the
tokenizer-coverage section for encoders whose tokenizer differs from the first one's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from domain_distil.analysis.coverage import Coverage
from domain_distil.analysis.speed import SpeedRow


def table5(rows: Sequence[SpeedRow], lengths: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    """Table 5's layout, extended: Model | Params (M) | ms at each length | realistic | agreement."""
    header = ["Model", "Params (M)", "Size (MB)", *(f"ms @{n}" for n in lengths), "ms realistic", "max |Δ| fp32", "Note"]
    body = []
    for row in rows:
        def ms(key: str, row: SpeedRow = row) -> str:
            value = row.ms.get(key)
            return "unavailable" if value is None else f"{value:.2f}"

        body.append([
            row.model, f"{row.params_m:.1f}", "–" if row.size_mb is None else f"{row.size_mb:.1f}",
            *(ms(str(n)) for n in lengths), ms("realistic"),
            "–" if row.agreement is None else f"{row.agreement:.2e}", row.note,
        ])
    return header, body


def coverage_table(reference: str, coverages: Mapping[str, Coverage]) -> tuple[list[str], list[list[str]]]:
    """Tokenizer coverage on held-out text, per encoder whose tokenizer differs from ``reference``'s."""
    header = ["Model", "Words", f"Tokenised as {reference} (%)", "[UNK] pieces (%)", f"{reference} [UNK] (%)"]
    body = [[name, str(c.words), f"{100 * c.identical_share:.2f}", f"{100 * c.unk_share:.2f}",
             f"{100 * c.reference_unk_share:.2f}"] for name, c in coverages.items()]
    return header, body
