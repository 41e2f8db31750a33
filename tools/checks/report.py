"""How the checks here report: "ok: ..." lines, and "FAIL: ..." with exit status 1 at the first failure.
The Swift tests that run these scripts read the status and the lines."""
import sys


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def ok(message):
    print("ok: " + message, flush=True)
