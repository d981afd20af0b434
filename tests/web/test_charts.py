"""The server-drawn charts: each axis label is the value at its line's height."""

from __future__ import annotations

import re

from adapter.web.charts import Series, bar_chart


def _axis_labels(chart: object) -> list[str]:
    return re.findall(r'<text [^>]*text-anchor="end"[^>]*>([^<]*)</text>', str(chart))


def _halfway_line_y(chart: object) -> float:
    lines = sorted({float(y) for y in re.findall(r'<line [^>]*y1="([\d.]+)"', str(chart))})
    return lines[1]


def test_the_halfway_line_of_children_is_labelled_with_the_count_at_its_height():
    # A peak of 5 children put its halfway line at 2.5 and labelled it "2": a bar of 2 stood below its own label.
    chart = bar_chart("Bereik", ["a", "b"], [Series("kinderen met tegoed", [5, 2])])
    labels = _axis_labels(chart)
    assert labels == ["0", "3", "6"]
    bar_tops = [float(y) for y in re.findall(r'<rect class="bar" x="[\d.]+" y="([\d.]+)"', str(chart))]
    assert bar_tops[1] > _halfway_line_y(chart)  # 2 children: below the line labelled 3


def test_money_axes_have_whole_euros_halfway():
    chart = bar_chart("Tegoeden", ["12"], [Series("toegekend", [288_935])], money=True)
    assert _axis_labels(chart) == ["€ 0,00", "€ 1.445,00", "€ 2.890,00"]


def test_a_chart_without_figures_says_so_instead_of_drawing_an_axis_of_one_cent():
    chart = bar_chart("Netto besteed per categorie", [], [Series("netto besteed", [])], money=True)
    assert _axis_labels(chart) == ["€ 0,00"]
    assert "Geen gegevens in deze periode." in str(chart)


def test_the_page_groups_thousands_and_the_csv_does_not(db, vault):
    """A city's totals read as '60000000,00' on the page: one digit too many or too few is not seen. The CSV keeps
    them ungrouped, which Dutch Excel reads as a number."""
    from datetime import date

    from adapter import reports
    from adapter.periods import parse_period
    from tests import factories

    factories.child_with_budget(db, vault, amount_cents=123_456_789, period=(date(2026, 1, 1), date(2026, 12, 31)))
    with db.read() as session:
        table = reports.budgets_by_status(session, parse_period("2026"))
    assert table.formatted_rows(grouped=True)[0][4] == "1.234.567,89"
    assert "1234567,89" in table.csv_bytes().decode("utf-8-sig")
