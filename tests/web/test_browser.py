"""The counter page and dashboard in a real browser (system Chromium), against a real server."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from adapter.models import Budget, Redemption
from tests import factories
from tests.web.conftest import screenshot


def _count_redemptions(world) -> int:  # type: ignore[no-untyped-def]
    with world.db.read() as session:
        return session.execute(select(func.count(Redemption.id))).scalar_one()


def _balance(world) -> int:  # type: ignore[no-untyped-def]
    with world.db.read() as session:
        return session.get(Budget, world.budget_id).balance_cents


def _sign_in_and_scan(page, world, shot_prefix: str | None = None) -> None:  # type: ignore[no-untyped-def]
    page.goto(world.base_url + "/counter/")
    expect(page.locator("#api_key")).to_be_focused()
    if shot_prefix:
        screenshot(page, f"{shot_prefix}-sign-in")
    page.keyboard.type(world.api_key)
    page.keyboard.press("Enter")
    expect(page.locator("#pass_number")).to_be_focused()
    if shot_prefix:
        screenshot(page, f"{shot_prefix}-scan")
    _scanner_reads(page, world.pass_number)
    expect(page.locator("h1")).to_contain_text("Sanne")
    assert world.pass_number not in page.url


def _scanner_reads(page, pass_number: str) -> None:  # type: ignore[no-untyped-def]
    """A barcode scanner types the digits into whichever field has the focus, and presses Enter."""
    page.keyboard.type(pass_number)
    page.keyboard.press("Enter")


def _next_customer_scans(page, world) -> None:  # type: ignore[no-untyped-def]
    """From the receipt: the cashier goes on to the next customer, who holds the same pass."""
    page.locator("a.button").click()
    page.locator("#pass_number").fill(world.pass_number)
    page.keyboard.press("Enter")


def _pays(page, world, amount: str) -> None:  # type: ignore[no-untyped-def]
    page.locator("#amount-%d" % world.budget_id).fill(amount)
    page.keyboard.press("Enter")


def test_sign_in_scan_redeem_double_submit_partial_and_reverse(browser, web_world):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    page = context.new_page()
    responses: list = []
    page.on("response", lambda response: responses.append(response))
    _sign_in_and_scan(page, web_world, "counter")
    expect(page.locator(".balance").first).to_contain_text("€ 100,00")
    screenshot(page, "counter-balance")

    # Redeem 12,50 by typing and Enter; the receipt shows the id and what is left.
    _pays(page, web_world, "12,50")
    expect(page.locator(".remaining")).to_contain_text("€ 87,50")
    receipt_id = page.locator(".redemption-id").inner_text()
    assert len(receipt_id) == 36 and _balance(web_world) == 8_750
    screenshot(page, "counter-receipt")

    # Double click and a resubmission of the same form charge once.
    _next_customer_scans(page, web_world)
    form = page.locator("form[action$='/afrekenen']").first
    fields = {name: form.locator(f"input[name={name}]").get_attribute("value")
              for name in ("csrf_token", "pass_number", "budget_id", "idempotency_key")}
    page.locator("#amount-%d" % web_world.budget_id).fill("10")
    form.locator("button").dblclick()
    expect(page.locator(".remaining")).to_contain_text("€ 77,50")
    first_id = page.locator(".redemption-id").inner_text()
    resubmitted = page.request.post(web_world.base_url + "/counter/afrekenen", form={**fields, "amount": "10"})
    assert resubmitted.ok and first_id in resubmitted.text()
    assert _count_redemptions(web_world) == 2 and _balance(web_world) == 7_750

    # Too little left: the page says what the parent pays and offers the partial redemption.
    _next_customer_scans(page, web_world)
    _pays(page, web_world, "100.00")
    expect(page.locator("h1")).to_have_text("Te weinig tegoed")
    expect(page.locator(".pays-self")).to_contain_text("€ 22,50")
    screenshot(page, "counter-insufficient")
    assert _balance(web_world) == 7_750
    page.locator("form button", has_text="van het tegoed afschrijven").click()
    expect(page.locator(".remaining")).to_contain_text("€ 0,00")
    expect(page.locator(".pays-self")).to_contain_text("€ 22,50")
    assert _balance(web_world) == 0

    # Reverse today's 12,50 with a reason.
    page.locator("a.button").click()
    item = page.locator("li.card", has_text=receipt_id)
    item.locator("input[name=reason]").fill("artikel geruild")
    item.locator("button").click()
    expect(page.locator(".messages")).to_contain_text("Teruggeboekt: € 12,50")
    assert _balance(web_world) == 1_250
    screenshot(page, "counter-after-reversal")

    assert all(web_world.pass_number not in response.url for response in responses)
    context.close()


def test_phone_width_360px(browser, web_world):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    amount = page.locator("#amount-%d" % web_world.budget_id)
    for locator in (amount, page.locator("form[action$='/afrekenen'] button").first, page.locator("h1")):
        box = locator.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    screenshot(page, "counter-phone-balance")
    amount.fill("5")
    page.locator("form[action$='/afrekenen'] button").first.tap()
    expect(page.locator(".remaining")).to_contain_text("€ 95,00")
    screenshot(page, "counter-phone-receipt")
    context.close()


def test_keyboard_only(browser, web_world):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    expect(page.locator("#amount-%d" % web_world.budget_id)).to_be_focused()
    page.keyboard.type("7,25")
    page.keyboard.press("Enter")
    expect(page.locator(".remaining")).to_contain_text("€ 92,75")
    # The next customer's pass is scanned while the receipt still shows: it goes straight to that pass.
    expect(page.locator("#pass_number")).to_be_focused()
    _scanner_reads(page, web_world.pass_number)
    expect(page.locator("h1")).to_contain_text("Sanne")
    expect(page.locator(".balance").first).to_contain_text("€ 92,75")
    expect(page.locator("#amount-%d" % web_world.budget_id)).to_be_focused()
    page.locator("a", has_text="Naar de kassapagina").click()
    expect(page.locator("#pass_number")).to_be_focused()
    # The reversal form is reachable with Tab alone.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.locator("input[name=reason]:focus").count():
            break
    expect(page.locator("input[name=reason]").first).to_be_focused()
    page.keyboard.type("verkeerd bedrag")
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Teruggeboekt: € 7,25")
    context.close()


def test_dashboard_draws_charts_and_offers_csv(browser, web_world):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    _pays(page, web_world, "30")
    expect(page.locator(".remaining")).to_be_visible()

    page.goto(web_world.base_url + "/admin/")
    screenshot(page, "admin-sign-in")
    page.locator("#name").fill(web_world.admin_name)
    page.locator("#password").fill(web_world.admin_password)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("dashboard")
    assert page.locator("svg.chart").count() == 3
    assert page.locator("svg.chart rect.bar").count() >= 3
    expect(page.locator("#tabel-spending-by-category")).to_contain_text("30,00")
    screenshot(page, "admin-dashboard")
    href = page.locator("#tabel-budget-totals caption a").get_attribute("href")
    download = page.request.get(web_world.base_url + href)
    assert download.body().startswith("\ufeff".encode()) and b";" in download.body()
    context.close()


def test_back_and_reload_after_paying_show_the_balance_again_and_never_pay_twice(browser, web_world):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    _pays(page, web_world, "12,50")
    expect(page.locator(".remaining")).to_contain_text("€ 87,50")

    # Back: the balance page again, fetched afresh (not the browser's "send the form again?" error page).
    page.go_back()
    expect(page.locator("h1")).to_contain_text("Sanne")
    expect(page.locator(".balance").first).to_contain_text("€ 87,50")
    assert web_world.pass_number not in page.url and web_world.pass_number not in page.title()
    page.reload()
    expect(page.locator(".balance").first).to_contain_text("€ 87,50")
    page.go_forward()
    expect(page.locator(".remaining")).to_contain_text("€ 87,50")
    page.reload()
    expect(page.locator(".remaining")).to_contain_text("€ 87,50")
    assert _count_redemptions(web_world) == 1 and _balance(web_world) == 8_750

    # A mistyped amount, then a payment; then too much, and the part the budget still holds.
    _next_customer_scans(page, web_world)
    _pays(page, web_world, "12,5O")
    expect(page.locator("[role=alert]").first).to_contain_text("Vul een bedrag in euro")
    expect(page.locator("[role=alert]").first).to_contain_text("Er is niets afgeschreven")
    expect(page.locator("#amount-%d" % web_world.budget_id)).to_be_focused()
    page.keyboard.type("7,50")
    page.keyboard.press("Enter")
    expect(page.locator(".remaining")).to_contain_text("€ 80,00")
    page.go_back()
    expect(page.locator(".balance").first).to_contain_text("€ 80,00")
    _pays(page, web_world, "100")
    expect(page.locator("h1")).to_have_text("Te weinig tegoed")
    expect(page.locator(".pays-self")).to_contain_text("€ 20,00")
    page.reload()
    expect(page.locator(".pays-self")).to_contain_text("€ 20,00")
    page.locator("form button", has_text="van het tegoed afschrijven").click()
    expect(page.locator(".remaining")).to_contain_text("€ 0,00")
    expect(page.locator(".pays-self")).to_contain_text("€ 20,00")
    page.go_back()
    expect(page.locator("h1")).to_have_text("Te weinig tegoed")
    expect(page.locator(".message.error")).to_contain_text("er is nog € 0,00 beschikbaar")
    page.go_back()
    expect(page.locator(".balance").first).to_contain_text("€ 0,00")
    assert _count_redemptions(web_world) == 3 and _balance(web_world) == 0
    assert web_world.pass_number not in page.evaluate("location.href")
    context.close()


def test_a_scan_while_a_balance_shows_shows_the_next_pass_and_pays_nothing(browser, web_world, vault):  # type: ignore[no-untyped-def]
    next_child = factories.child_with_budget(web_world.db, vault, amount_cents=3_000)
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    # The amount field has focus; the next customer's card goes under the scanner.
    expect(page.locator("#amount-%d" % web_world.budget_id)).to_be_focused()
    _scanner_reads(page, next_child.pass_number)
    expect(page.locator("h1")).to_contain_text(next_child.pass_number[-4:])
    expect(page.locator(".balance").first).to_contain_text("€ 30,00")
    expect(page.locator("#amount-%d" % next_child.budget_id)).to_be_focused()
    assert next_child.pass_number not in page.url
    assert _count_redemptions(web_world) == 0 and _balance(web_world) == 10_000
    context.close()


def test_a_scan_while_too_little_shows_charges_nothing_and_shows_the_next_pass(browser, web_world, vault):  # type: ignore[no-untyped-def]
    next_child = factories.child_with_budget(web_world.db, vault, amount_cents=3_000)
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    _pays(page, web_world, "150")
    expect(page.locator("h1")).to_have_text("Te weinig tegoed")
    # The customer pays otherwise; the next card goes under the scanner, which types and presses Enter.
    expect(page.locator("#pass_number")).to_be_focused()
    _scanner_reads(page, next_child.pass_number)
    expect(page.locator("h1")).to_contain_text(next_child.pass_number[-4:])
    assert _count_redemptions(web_world) == 0 and _balance(web_world) == 10_000
    # By keyboard alone the offer is one Shift+Tab away from the scan field.
    page.go_back()
    expect(page.locator("h1")).to_have_text("Te weinig tegoed")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator(".pays-self")).to_contain_text("€ 50,00")
    assert _count_redemptions(web_world) == 1 and _balance(web_world) == 0
    context.close()


def test_a_returned_item_gives_back_only_its_price(browser, web_world):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    _pays(page, web_world, "30")
    expect(page.locator(".remaining")).to_contain_text("€ 70,00")
    page.locator("a.button").click()

    item = page.locator("li.card").first
    item.get_by_label("Reden terugboeking").fill("schrift teruggebracht")
    item.get_by_label("Bedrag terug in euro's").fill("7,50")
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Teruggeboekt: € 7,50")
    assert _balance(web_world) == 7_750
    item = page.locator("li.card").first
    expect(item).to_contain_text("Teruggeboekt: € 7,50")

    # More than is left of the payment: nothing happens, and the page says so in Dutch.
    item.get_by_label("Reden terugboeking").fill("nog een")
    item.get_by_label("Bedrag terug in euro's").fill("25")
    page.keyboard.press("Enter")
    expect(page.locator("[role=alert]").first).to_contain_text("Er is niets teruggeboekt")
    assert _balance(web_world) == 7_750

    # Left empty: all that is left.
    item = page.locator("li.card").first
    item.get_by_label("Reden terugboeking").fill("alles terug")
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Teruggeboekt: € 22,50")
    assert _balance(web_world) == 10_000
    context.close()


def test_a_screen_reader_hears_which_budget_each_amount_field_pays_from(browser, web_world):  # type: ignore[no-untyped-def]
    from adapter import ledger

    with web_world.db.write() as session:  # the same child also has a second school budget
        child = session.get(Budget, web_world.budget_id)
        extra = Budget(cardholder_id=child.cardholder_id, rule_code="extra", rule_name="Extra schoolgeld",
                       category="school", period_key=child.period_key, period_start=child.period_start,
                       period_end=child.period_end, granted_cents=0, balance_cents=0)
        session.add(extra)
        session.flush()
        ledger.grant(session, extra.id, 2_500, actor="test")
        second = extra.id
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    for budget_id, name, balance in ((web_world.budget_id, "Schoolspullen", "€ 100,00"),
                                     (second, "Extra schoolgeld", "€ 25,00")):
        field = page.locator(f"#amount-{budget_id}")
        expect(field).to_have_accessible_name("Bedrag in euro's")
        expect(field).to_have_accessible_description(re.compile(f"{name}.*{balance}"))
        button = page.locator(f"form:has(#amount-{budget_id}) button")
        expect(button).to_have_accessible_description(name)
    context.close()


def test_a_pass_with_nothing_for_this_shop_leaves_the_scan_field_ready_for_the_next(browser, web_world, vault):  # type: ignore[no-untyped-def]
    sports_only = factories.child_with_budget(web_world.db, vault, amount_cents=5_000, category="sport")
    context = browser.new_context()
    page = context.new_page()
    page.goto(web_world.base_url + "/counter/")
    expect(page.locator("#api_key")).to_be_focused()
    page.keyboard.type(web_world.api_key)
    page.keyboard.press("Enter")
    expect(page.locator("#pass_number")).to_be_focused()
    _scanner_reads(page, sports_only.pass_number)
    expect(page.locator(".message")).to_contain_text("geen tegoed dat uw winkel mag gebruiken")
    expect(page.locator(".card.budget")).to_have_count(0)  # the child's sport budget is not this shop's business
    expect(page.locator("#pass_number")).to_be_focused()
    _scanner_reads(page, web_world.pass_number)
    expect(page.locator(".balance").first).to_contain_text("€ 100,00")
    expect(page.locator("#amount-%d" % web_world.budget_id)).to_be_focused()
    assert page.locator("[autofocus]").count() == 1
    context.close()


def test_a_price_tags_whole_euros_pay_and_a_mistyped_pass_number_says_what_the_field_takes(browser, web_world):  # type: ignore[no-untyped-def]
    """A cashier types '12,-' from the tag; and the browser's own bubble for a pass number with a letter in it
    said only 'match the requested format', with no word of which (a title adds it)."""
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    _pays(page, web_world, "12,-")
    expect(page.locator(".remaining")).to_contain_text("€ 88,00")
    assert _balance(web_world) == 8_800
    scan = page.locator("#pass_number")
    scan.fill("60643A")
    assert scan.evaluate("field => field.validity.patternMismatch")
    # Chromium shows the title under its own words in the bubble (validationMessage holds only its own words).
    assert "Alleen de cijfers van het pasnummer" in (scan.get_attribute("title") or "")
    context.close()


def test_back_after_a_refused_payment_and_the_next_customers_payment_is_no_trap(browser, web_world, vault):  # type: ignore[no-untyped-def]
    """The balance page stayed open past the budget's last day (or the pass was blocked meanwhile): the payment is
    refused. The cashier serves the next customer from that page and presses Back twice: that must be the page
    again, not Chromium's 'send the form again?' error page (whose resubmission would try the old payment again)."""
    from datetime import timedelta

    from sqlalchemy import update

    from adapter.models import utcnow
    from adapter.periods import local_day

    next_child = factories.child_with_budget(web_world.db, vault, amount_cents=3_000)
    context = browser.new_context()
    page = context.new_page()
    _sign_in_and_scan(page, web_world)
    with web_world.db.write() as session:  # its last day passed while the page was open
        session.execute(update(Budget).where(Budget.id == web_world.budget_id)
                        .values(period_end=local_day(utcnow()) - timedelta(days=30)))
    _pays(page, web_world, "5")
    expect(page.locator(".message.error")).to_contain_text("Er is niets afgeschreven")
    refused_at = page.url
    expect(page.locator("#pass_number")).to_be_focused()
    _scanner_reads(page, next_child.pass_number)
    page.locator("#amount-%d" % next_child.budget_id).fill("10")
    page.keyboard.press("Enter")
    expect(page.locator(".remaining")).to_contain_text("€ 20,00")
    page.go_back()
    expect(page.locator(".balance").first).to_contain_text("€ 20,00")
    page.go_back()
    assert page.url == refused_at
    expect(page.locator("h1")).to_have_text("Stadspas scannen")
    assert _count_redemptions(web_world) == 1 and _balance(web_world) == 10_000
    context.close()


def _admin_signs_in(page, world) -> None:  # type: ignore[no-untyped-def]
    page.goto(world.base_url + "/admin/")
    page.locator("#name").fill(world.admin_name)
    page.locator("#password").fill(world.admin_password)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("dashboard")


def test_a_refused_night_says_in_dutch_what_it_means_and_its_reason_is_on_screen(browser, web_world):  # type: ignore[no-untyped-def]
    """The reason of a refused run was one unwrapped line starting some 1,700 px to the right, beyond a 1280 px
    screen, and only the row's red said something was wrong: now a notice above the table says it."""
    from adapter.models import SyncRun, SyncStatus

    reason = ("the source returned 2 records, fewer than 50% of the 10 of the last successful run: the export looks "
              "truncated. The previous data stays in force. Check the source; if the change is real, rerun with --force.")
    with web_world.db.write() as session:
        session.add(SyncRun(source="gemeente", status=SyncStatus.REFUSED, reason=reason))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    _admin_signs_in(page, web_world)
    notice = page.locator("#sync ~ .message.error")
    expect(notice).to_contain_text("bron gemeente")
    expect(notice).to_contain_text("is geweigerd: er is niets gewijzigd")
    expect(notice).to_contain_text("technisch beheerder")
    expect(notice).to_contain_text("Reden: the source returned 2 records")
    box = notice.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280, box
    expect(page.locator("#tabel-sync-rejected")).to_contain_text("De laatste run keurde geen records af.")
    screenshot(page, "admin-refused-sync")
    context.close()


def test_a_table_wider_than_the_screen_scrolls_with_the_keyboard_alone(browser, web_world):  # type: ignore[no-untyped-def]
    """At 200% zoom on a small laptop (1366 x 768 as 683 x 384) the sync table is wider than its box; its box took
    no focus, so arrow keys could not bring its right-hand columns into view without a mouse."""
    from adapter.models import SyncRun, SyncStatus

    with web_world.db.write() as session:
        session.add(SyncRun(source="gemeente", status=SyncStatus.SUCCEEDED))
    context = browser.new_context(viewport={"width": 683, "height": 384})
    page = context.new_page()
    _admin_signs_in(page, web_world)
    wrapper = page.locator("#tabel-sync-runs").locator("xpath=..")
    assert wrapper.evaluate("box => box.scrollWidth > box.clientWidth")
    for _ in range(10):
        page.keyboard.press("Tab")
        if wrapper.evaluate("box => box === document.activeElement"):
            break
    expect(wrapper).to_be_focused()
    expect(wrapper).to_have_attribute("aria-label", re.compile("synchronisatie"))
    page.keyboard.press("End")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("box => box.scrollLeft > 0", arg=wrapper.element_handle())
    context.close()
