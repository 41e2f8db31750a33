#!/usr/bin/env python3
"""The web console in a real browser: headless Chromium driven through Debian's chromedriver (Selenium),
against a running `presence serve --dev`. Run by Tests/EndToEndTests/ConsoleTests.swift, which starts the
server; this script asserts what a user sees and exits 1 with the reason on the first failure, printing
"ok: ..." lines as it goes.

    console_browser.py --url http://127.0.0.1:PORT --presence PATH/TO/presence --data DIR --screenshots DIR

The story: Alice signs in (the --dev form), starts a chat with Bob and writes to him; Bob signs in in a
second browser: Alice's header says "online" within a second, Bob sees the history, his answer appears at
Alice's; Bob signs out: Alice's header says "last seen today at ..." within a second. Then a gateway posts
Carol's sessions through the API, an operator opens the audit view: one bar per session of
`presence history`, placed at its start and end; the cursor dragged to a time shows what
`presence state --at` prints; the log panel counts what `presence log-info` counts.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from report import check, fail, ok  # the same directory

MINUTE = 60_000


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def browser(args):
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860",
                 "--lang=en-GB", "--no-first-run", "--disable-extensions"]:
        options.add_argument(flag)
    # Debian's own driver, of the same version: Selenium must not go looking for one on the network.
    return webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=options)


def wait(driver, condition, seconds, what):
    try:
        # The page redraws lists as pushes arrive: an element read just before a redraw is asked again.
        return WebDriverWait(driver, seconds, poll_frequency=0.02, ignored_exceptions=(StaleElementReferenceException,)) \
            .until(lambda d: condition(d))
    except TimeoutException:
        fail(f"after {seconds}s: {what}")


def click(driver, css):
    """Clicks the element; once more if the page redrew it in between."""
    for _ in range(5):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    fail(f"{css} kept being redrawn: it could not be clicked")


def text(driver, css):
    try:
        elements = driver.find_elements(By.CSS_SELECTOR, css)
        return elements[0].text if elements else ""
    except StaleElementReferenceException:
        return ""


def sign_in(driver, args, user, role="user"):
    driver.get(args.url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "dev-sign-in").is_displayed(), 10, "the --dev sign-in form is shown")
    driver.find_element(By.ID, "dev-user").send_keys(user)
    driver.find_element(By.CSS_SELECTOR, f'#dev-role option[value="{role}"]').click()
    driver.find_element(By.ID, "dev-submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "whoami").text.startswith(user), 10, f"{user} is signed in")


def cli(args, *arguments):
    result = subprocess.run([args.presence, *arguments], capture_output=True, text=True, timeout=60)
    check(result.returncode == 0, f"presence {' '.join(arguments)} failed: {result.stderr}")
    return result.stdout


def post_events(args, gateway, events):
    token = cli(args, "token", "--dev", "--user", gateway, "--gateway").strip()
    body = "".join(json.dumps(e) + "\n" for e in events).encode()
    request = urllib.request.Request(args.url + "/v1/events", data=body, method="POST",
                                     headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=10) as response:
        check(response.status == 200, f"posting {gateway}'s events: {response.status}")


def presence_words(driver):
    """The header's words for a last seen, decided in the browser's zone, at fixed "now"s."""
    cases = driver.execute_script("""
        const local = (y, mo, d, h, mi) => new Date(y, mo - 1, d, h, mi);
        const say = (now, seen) => [PL.presenceText({online: false, last_seen: seen.toISOString()}, now), PL.clock(seen)];
        const noon = local(2026, 1, 15, 12, 0);
        return {
            online: PL.presenceText({online: true, last_seen: null}, noon),
            never: PL.presenceText({online: false, last_seen: null}, noon),
            today: say(noon, local(2026, 1, 15, 9, 42)),
            yesterday: say(noon, local(2026, 1, 14, 21, 3)),
            justAfterMidnight: say(local(2026, 1, 15, 0, 20), local(2026, 1, 14, 23, 50)),
            newYear: say(local(2026, 1, 1, 10, 0), local(2025, 12, 31, 22, 0)),
            earlier: say(noon, local(2026, 1, 12, 8, 15)),
            lastYear: say(noon, local(2025, 1, 12, 8, 15)),
        };
    """)
    check(cases["online"] == "online" and cases["never"] == "offline", f"online / never seen: {cases}")
    for name, day in [("today", "today"), ("yesterday", "yesterday"), ("justAfterMidnight", "yesterday"), ("newYear", "yesterday")]:
        words, clock = cases[name]
        check(words == f"last seen {day} at {clock}", f"{name}: '{words}'")
    words, clock = cases["earlier"]
    check(words in (f"last seen 12 Jan at {clock}", f"last seen Jan 12 at {clock}"), f"three days before: '{words}'")
    words, clock = cases["lastYear"]
    check("2025" in words and words.endswith(f" at {clock}") and "12" in words, f"another year: '{words}'")
    ok(f"last seen words: {cases['today'][0]!r}, {cases['yesterday'][0]!r}, {cases['earlier'][0]!r}, {cases['lastYear'][0]!r}")


def chat(args, alice, bob):
    sign_in(alice, args, "alice")
    check(alice.find_element(By.ID, "chat").is_displayed(), "a user's token opens the chat view")
    presence_words(alice)
    alice.find_element(By.ID, "new-peer").send_keys("bob\n")
    wait(alice, lambda d: d.find_element(By.ID, "peer-name").text == "bob", 5, "Alice's new chat with Bob is open")
    wait(alice, lambda d: text(d, "#peer-presence") == "offline", 5, "Bob, never seen, shows offline")
    alice.find_element(By.ID, "message-input").send_keys("hi bob, are you there?\n")
    wait(alice, lambda d: "hi bob, are you there?" in text(d, "#messages li.mine .content"), 5, "Alice's message is shown once sent")
    ok("Alice started a chat with Bob and wrote to him; Bob shows offline")

    sign_in(bob, args, "bob")
    # Bob's socket is open once his page says "live" (the server sent "ready": his connect is on disk).
    wait(bob, lambda d: text(d, "#socket-status") == "live", 5, "Bob's socket is live")
    started = time.monotonic()
    wait(alice, lambda d: text(d, "#peer-presence") == "online", 1.0, "Alice's header says Bob is online within a second")
    ok(f"Alice's header said 'online' {time.monotonic() - started:.2f}s after Bob's socket opened")

    wait(bob, lambda d: len(d.find_elements(By.CSS_SELECTOR, '#conversations li')) == 1, 5, "Bob's inbox lists the chat")
    click(bob, "#conversations li")
    wait(bob, lambda d: "hi bob, are you there?" in text(d, "#messages li.theirs .content"), 5, "Bob sees Alice's message (the history)")
    wait(bob, lambda d: text(d, "#peer-presence") == "online", 5, "Bob sees Alice online (her socket is open)")
    bob.find_element(By.ID, "message-input").send_keys("on my way\n")
    started = time.monotonic()
    wait(alice, lambda d: "on my way" in [e.text for e in d.find_elements(By.CSS_SELECTOR, "#messages li.theirs .content")], 1.0,
         "Bob's answer appears at Alice's within a second")
    ok(f"Bob saw the history; his answer appeared at Alice's in {time.monotonic() - started:.2f}s")
    alice.find_element(By.ID, "message-input").send_keys("see you soon\n")
    started = time.monotonic()
    wait(bob, lambda d: "see you soon" in [e.text for e in d.find_elements(By.CSS_SELECTOR, "#messages li.theirs .content")], 1.0,
         "Alice's message appears at Bob's within a second")
    ok(f"Alice's next message appeared at Bob's in {time.monotonic() - started:.2f}s")
    seqs = bob.execute_script("return [...document.querySelectorAll('#messages li')].map((li) => Number(li.dataset.seq))")
    check(seqs == [1, 2, 3], f"Bob sees each message once, in order: seqs {seqs}")
    bob.save_screenshot(os.path.join(args.screenshots, "console-chat-bob.png"))

    bob.find_element(By.ID, "sign-out").click()
    started = time.monotonic()
    wait(alice, lambda d: text(d, "#peer-presence").startswith("last seen today at "), 1.0,
         "Alice's header says 'last seen today at ...' within a second of Bob signing out")
    shown = text(alice, "#peer-presence")
    ok(f"Bob signed out: Alice's header said '{shown}' after {time.monotonic() - started:.2f}s")
    # The time shown is Bob's last seen as the API gives it, in the browser's zone.
    snapshot_time = alice.execute_script("return Chat.presence.get('bob').last_seen")
    local_clock = alice.execute_script("return PL.clock(new Date(arguments[0]))", snapshot_time)
    check(shown == "last seen today at " + local_clock, f"'{shown}' names Bob's last seen {snapshot_time} ({local_clock})")
    alice.save_screenshot(os.path.join(args.screenshots, "console-chat-alice.png"))


def audit(args, driver):
    now = int(time.time() * 1000)
    t = lambda minutes: now - minutes * MINUTE  # noqa: E731
    post_events(args, "gw-1", [
        # A disconnect without a connect: the log began mid-session (its start is unknown).
        {"type": "disconnect", "user": "carol", "conn": "carol-watch", "gateway": "gw-1", "ts": t(55)},
        {"type": "connect", "user": "carol", "conn": "carol-phone", "gateway": "gw-1", "ts": t(50)},
        {"type": "connect", "user": "carol", "conn": "carol-laptop", "gateway": "gw-1", "ts": t(45)},
        {"type": "disconnect", "user": "carol", "conn": "carol-phone", "gateway": "gw-1", "ts": t(40)},
        {"type": "gateway_down", "gateway": "gw-1", "ts": t(30)},
        {"type": "connect", "user": "carol", "conn": "carol-phone", "gateway": "gw-1", "ts": t(20)},
    ])
    post_events(args, "gw-2", [
        {"type": "connect", "user": "carol", "conn": "carol-tablet", "gateway": "gw-2", "ts": t(35)},
        {"type": "disconnect", "user": "carol", "conn": "carol-tablet", "gateway": "gw-2", "ts": t(25)},
    ])
    window_from, window_to = t(60), now + MINUTE
    # The operator pastes a token minted by the CLI (the sign-in any server takes); it opens the audit view.
    driver.get(args.url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "token-input").is_displayed(), 10, "the token sign-in form is shown")
    driver.find_element(By.ID, "token-input").send_keys(cli(args, "token", "--dev", "--user", "ops", "--operator").strip())
    driver.find_element(By.CSS_SELECTOR, "#token-sign-in button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "whoami").text == "ops (operator)", 10, "the operator is signed in with the pasted token")
    wait(driver, lambda d: d.find_element(By.ID, "audit").is_displayed(), 5, "an operator's token opens the audit view")
    driver.get(f"{args.url}/#audit?user=carol&from={iso(window_from)}&to={iso(window_to)}")
    history = [json.loads(line) for line in cli(args, "history", "--data", args.data, "--user", "carol", "--format", "json",
                                                 "--from", iso(window_from), "--to", iso(window_to)).splitlines()]
    check(len(history) == 5, f"presence history lists Carol's 5 sessions: {history}")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline rect.session")) == len(history), 5,
         f"the timeline draws one bar per session ({len(history)})")
    svg = driver.find_element(By.ID, "timeline")
    left, plot_width = float(svg.get_attribute("data-left")), float(svg.get_attribute("data-plot-width"))
    x_of = lambda ms: left + (ms - window_from) / (window_to - window_from) * plot_width  # noqa: E731
    bars = []
    for bar in driver.find_elements(By.CSS_SELECTOR, "#timeline rect.session"):
        bars.append({"conn": bar.get_attribute("data-conn"), "gateway": bar.get_attribute("data-gateway"),
                     "start": bar.get_attribute("data-start") or None, "end": bar.get_attribute("data-end") or None,
                     "reason": bar.get_attribute("data-reason"), "x": float(bar.get_attribute("x")),
                     "width": float(bar.get_attribute("width")), "y": float(bar.get_attribute("y"))})
    expected = sorted((s["conn"], s["gateway"], s["start"], s["end"], s["end_reason"] or "open") for s in history)
    drawn = sorted((b["conn"], b["gateway"], b["start"], b["end"], b["reason"]) for b in bars)
    check(drawn == expected, f"the bars are presence history's sessions:\n drawn    {drawn}\n expected {expected}")
    for bar in bars:
        if bar["start"] is None:
            check(abs(bar["x"] - left) < 1.0, f"{bar['conn']}'s bar of unknown start begins at the window's start")
            continue
        start = datetime.datetime.fromisoformat(bar["start"].replace("Z", "+00:00")).timestamp() * 1000
        check(abs(bar["x"] - x_of(start)) < 1.0, f"{bar['conn']}'s bar starts where {bar['start']} is on the axis")
        if bar["end"]:
            end = datetime.datetime.fromisoformat(bar["end"].replace("Z", "+00:00")).timestamp() * 1000
            check(abs(bar["x"] + bar["width"] - x_of(end)) < 1.0, f"{bar['conn']}'s bar ends where {bar['end']} is on the axis")
    lanes = {b["conn"]: b["y"] for b in bars}
    check(len(set(lanes.values())) == 4 and all(lanes[b["conn"]] == b["y"] for b in bars), f"one lane per device: {bars}")
    colours = {b["reason"]: driver.execute_script("return getComputedStyle(arguments[0]).fill", e)
               for b, e in zip(bars, driver.find_elements(By.CSS_SELECTOR, "#timeline rect.session"))}
    check(len(set(colours.values())) == 3, f"each way of ending has its own colour: {colours}")
    ok(f"the timeline drew Carol's {len(bars)} sessions in 4 lanes, at presence history's starts and ends, coloured by end: {colours}")

    # The cursor, dragged with the mouse to times in and between sessions.
    cursor_handle = driver.find_element(By.CSS_SELECTOR, "#cursor .handle")
    for minutes, online, connections in [(43, True, 2), (32, True, 2), (27, True, 1), (22, False, 0), (10, True, 1)]:
        target = t(minutes)
        handle_x = cursor_handle.rect["x"] + cursor_handle.rect["width"] / 2
        svg_x = svg.rect["x"]
        ActionChains(driver).move_to_element(cursor_handle).click_and_hold() \
            .move_by_offset(int(round(svg_x + x_of(target) - handle_x)), 0).release().perform()
        panel = driver.find_element(By.ID, "cursor-state")
        wait(driver, lambda d: panel.get_attribute("data-state-at") == panel.get_attribute("data-at"), 10,
             "the state at the cursor's time is shown")
        at = int(panel.get_attribute("data-at"))
        check(abs(at - target) < (window_to - window_from) / plot_width * 2, f"the drag put the cursor near {iso(target)}: {iso(at)}")
        cli_state = json.loads(cli(args, "state", "--data", args.data, "--at", str(at), "--user", "carol", "--format", "json"))
        shown = {"online": panel.get_attribute("data-online") == "true", "connections": int(panel.get_attribute("data-connections")),
                 "last_seen": panel.get_attribute("data-last-seen") or None}
        check(shown == {k: cli_state[k] for k in shown}, f"at {iso(at)} the console shows {shown}; presence state --at says {cli_state}")
        check((shown["online"], shown["connections"]) == (online, connections), f"at {minutes} min ago Carol had {connections} connections: {shown}")
        words = text(driver, "#cursor-online")
        check(words == ("online" if online else "offline"), f"the panel says '{words}'")
        ok(f"cursor dragged to {iso(at)}: {shown}, as presence state --at prints")

    # The log panel counts what log-info counts.
    total = json.loads(cli(args, "log-info", "--data", args.data, "--json").splitlines()[-1])
    driver.execute_script("return Audit.loadLog()")
    wait(driver, lambda d: text(d, '[data-figure="events"]').replace(",", "") == str(total["events"]), 5,
         f"the log panel shows {total['events']} events, as log-info")
    segments = len(driver.find_elements(By.CSS_SELECTOR, "#segments tbody tr"))
    check(segments == len(cli(args, "log-info", "--data", args.data, "--json").splitlines()) - 1, "one row per segment")
    ok(f"the log panel shows {total['events']} events in {segments} segment(s), as log-info")
    # Hovering a bar shows its details.
    ActionChains(driver).move_to_element(driver.find_elements(By.CSS_SELECTOR, "#timeline rect.reason-gateway_down")[0]).perform()
    wait(driver, lambda d: "gateway_down" in text(d, "#tooltip"), 2, "hovering a bar shows how it ended")
    ok("hovering a bar shows its details")
    driver.execute_script("document.getElementById('tooltip').hidden = true")
    driver.save_screenshot(os.path.join(args.screenshots, "console-audit.png"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--presence", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)
    alice, bob = browser(args), browser(args)
    try:
        chat(args, alice, bob)
        audit(args, bob)
        # The page's policy held: nothing was refused or failed in either browser.
        for name, driver in [("alice", alice), ("bob", bob)]:
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            check(not errors, f"{name}'s browser console has errors: {errors}")
    finally:
        alice.quit()
        bob.quit()
    print("passed: console", flush=True)


if __name__ == "__main__":
    main()
