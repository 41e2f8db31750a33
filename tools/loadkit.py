"""Helpers shared by the load tools (load-push.py, storm.py, soak.py, load-fanout.py): HS256 tokens minted
like `presence token`, a `presence serve` of the tool's own on 127.0.0.1 with a fresh data folder and
secret, the server's resident memory, percentiles, and the checks and progress lines the tools print. Run the tools with the .venv Python (scripts/setup.sh --python)."""
import base64
import hashlib
import hmac
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# The checks that failed so far (`check`): a tool exits 1 when any did.
FAILED = []


def check(condition, what, detail=""):
    """Prints "passed: WHAT" or "FAILED: WHAT: DETAIL" (and notes the failure); returns the condition."""
    if condition:
        print(f"passed: {what}", flush=True)
    else:
        print(f"FAILED: {what}" + (f": {detail}" if detail else ""), flush=True)
        FAILED.append(what)
    return condition


def progress(message):
    """A timestamped line on standard error."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, user, role="user", ttl=3600):
    """An HS256 JWT for `user` signed with `secret`, as `presence token` mints it."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": user, "exp": int(time.time()) + ttl, "role": role}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def rss_mib(pid):
    """The process's resident memory (VmRSS) in MiB, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def cpu_seconds(pid):
    """User + system CPU time the process has used, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        return 0.0


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def raise_file_limit():
    """Lets this process hold as many sockets as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """`presence serve` on 127.0.0.1 with a data folder and a secret of its own, in a temp dir that
    `cleanup` removes. `start` waits (bounded) for "listening on"; a restart keeps the port and data.
    With `log=True` the server's standard error is appended to `server.log` in that dir (every start)."""

    def __init__(self, binary, prefix, extra=(), log=False):
        self.binary = binary
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.secret = "storm-secret-" + os.urandom(16).hex()
        self.secret_file = os.path.join(self.dir, "secret")
        with open(self.secret_file, "w") as f:
            f.write(self.secret)
        self.data = os.path.join(self.dir, "data")
        self.port = 0
        self.process = None
        self.log_path = os.path.join(self.dir, "server.log") if log else None

    def start(self, timeout=120):
        command = [self.binary, "serve", "--data", self.data, "--host", "127.0.0.1", "--port", str(self.port),
                   "--secret-file", self.secret_file, *self.extra]
        errors = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        finally:
            if self.log_path:
                errors.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.time()))
            if not ready:
                break
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"presence serve exited with {self.process.wait()} before listening")
            if line.startswith("listening on"):
                self.port = int(line.strip().rsplit(":", 1)[1])
                return self.port
        self.process.kill()
        raise RuntimeError(f"presence serve did not listen within {timeout} s")

    def stop(self, sig=signal.SIGTERM, timeout=120):
        """Sends `sig` and waits for the exit; returns the exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def cpu(self):
        return cpu_seconds(self.process.pid) if self.alive() else 0.0

    def rss(self):
        return rss_mib(self.process.pid) if self.alive() else 0.0

    def token(self, user, role="user"):
        return mint(self.secret, user, role)

    def cleanup(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
