"""Real Rspamd, spamd and Redis daemons for tests and the accuracy bench.

    with running_redis() as redis, running_rspamd(redis=redis) as rspamd:
        ...                                 # rspamd.url, .controller_url, .password
    with running_spamd() as spamd:          # spamd.host, .port, .sa_learn(...)
        ...

Each daemon gets its own configuration and data directory in a fresh temporary directory and
listens on 127.0.0.1 ephemeral ports. Nothing reaches beyond loopback: Rspamd asks a DNS server
on loopback (an empty one unless the test serves records, so DNS checks and map downloads fail
at once), its fuzzy, RBL and update modules are off, and spamd runs local tests only. Run as
root, each daemon drops to its Debian system user. `missing()` names the binaries that are not
installed, for a skip reason.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.dns_server import DnsServer
from tests.support.processes import free_port, wait_for_port

RSPAMD_USER = "_rspamd"
SPAMD_USER = "debian-spamd"
REDIS_USER = "redis"
CONTROLLER_PASSWORD = "controller-test-password"
INSTALL_HINT = "install them with scripts/install-spam-daemons (CI does)"


def missing(*binaries: str) -> str:
    """'' when every binary is installed, else a skip reason naming the missing ones."""
    absent = [name for name in binaries if not _which(name)]
    return f"not installed: {', '.join(absent)}; {INSTALL_HINT}" if absent else ""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass(frozen=True)
class RedisDaemon:
    host: str
    port: int

    def command(self, *words: str) -> str | int | None:
        """One command over Redis's own protocol (RESP): a status, integer or string reply."""
        request = b"*%d\r\n" % len(words) + b"".join(
            b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words)
        with socket.create_connection((self.host, self.port), timeout=30) as conn:
            conn.sendall(request)
            reply = conn.makefile("rb")
            line = reply.readline().decode().rstrip("\r\n")
            kind, rest = line[:1], line[1:]
            if kind == "-":
                raise RuntimeError(f"redis: {rest}")
            if kind == ":":
                return int(rest)
            if kind == "$":
                return None if int(rest) < 0 else reply.read(int(rest)).decode()
            return rest


@dataclass(frozen=True)
class RspamdDaemon:
    url: str
    controller_url: str
    password: str
    log: Path
    redis: RedisDaemon | None = None

    def bayes_learns(self) -> dict[str, int]:
        """Messages Rspamd's Bayes has learned, per class (from its Redis store)."""
        assert self.redis is not None, "Rspamd runs without Redis: no Bayes"
        return {kind: int(self.redis.command("HGET", "RS", f"learns_{kind}") or 0)
                for kind in ("spam", "ham")}

    def forget_bayes(self) -> None:
        """Empty the Bayes store (every key in its Redis)."""
        assert self.redis is not None, "Rspamd runs without Redis: no Bayes"
        self.redis.command("FLUSHALL")


@dataclass(frozen=True)
class SpamdDaemon:
    host: str
    port: int
    log: Path
    site_config: Path  # its --siteconfigpath: sa-learn with it sees the same Bayes database

    def sa_learn(self, *args: str) -> str:
        """Run sa-learn on spamd's Bayes database, as spamd's user; returns its output."""
        argv = [str(_which("sa-learn")), "--siteconfigpath", str(self.site_config), *args]
        if _drops_to(SPAMD_USER):
            argv = ["runuser", "-u", SPAMD_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"sa-learn {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def bayes_counts(self) -> dict[str, int]:
        """Messages learned, {"nspam": N, "nham": N}, from `sa-learn --dump magic`."""
        counts = {"nspam": 0, "nham": 0}
        if not any((self.site_config.parent / "bayes").glob("bayes_toks*")):
            return counts  # nothing learned yet: no database to dump
        for line in self.sa_learn("--dump", "magic").splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[-1] in counts:
                counts[fields[-1]] = int(fields[2])
        return counts


# --- process handling ----------------------------------------------------------------------------


@contextmanager
def _workdir(name: str) -> Iterator[Path]:
    """A fresh directory under the system temp dir (its parents must be traversable by the
    daemon's user, which a test's tmp_path is not), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"mailcloak-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _give_to(path: Path, user: str) -> None:
    """Let the daemon's user own its directory when we run as root and drop to that user."""
    if _drops_to(user):
        entry = pwd.getpwnam(user)
        for item in [path, *path.rglob("*")]:
            os.chown(item, entry.pw_uid, entry.pw_gid)


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _drops_to(user: str) -> bool:
    return os.geteuid() == 0 and _user_exists(user)


@contextmanager
def _daemon(argv: list[str], log: Path, ports: list[int], *, name: str,
            timeout: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv`, wait until every port accepts connections, stop it afterwards."""
    with log.open("ab") as handle:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": "/"}
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(process, ports, log, name=name, timeout=timeout)
        yield process
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], ports: list[int], log: Path, *, name: str,
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {_tail(log)}")
            try:
                wait_for_port("127.0.0.1", port, timeout=0.5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready on port {port}: {_tail(log)}") from None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the daemon's process group (workers and children too), then SIGKILL if needed."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(5)


def _tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --- Redis (Rspamd's Bayes store) ------------------------------------------------------------


@contextmanager
def running_redis() -> Iterator[RedisDaemon]:
    with _workdir("redis") as root:
        _give_to(root, REDIS_USER)
        port = free_port()
        argv = [str(_which("redis-server")), "--bind", "127.0.0.1", "--port", str(port),
                "--dir", str(root), "--save", "", "--appendonly", "no"]
        if _drops_to(REDIS_USER):
            argv = ["runuser", "-u", REDIS_USER, "--", *argv]
        with _daemon(argv, root / "redis.log", [port], name="redis-server"):
            yield RedisDaemon("127.0.0.1", port)


# --- Rspamd --------------------------------------------------------------------------------------

_RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "warning";
}}
worker "normal" {{
    .include "$CONFDIR/worker-normal.inc"
    bind_socket = "127.0.0.1:{normal_port}";
    count = 1;
}}
worker "controller" {{
    bind_socket = "127.0.0.1:{controller_port}";
    count = 1;
    password = "{password}";
    enable_password = "{password}";
}}
"""

# local.d files: DNS from a loopback server, no hyperscan compilation (slow on small machines), no
# modules that talk to rspamd.com, and GTUBE's quarantine and no-action variants enabled.
_RSPAMD_LOCAL = {
    "options.inc": """\
dns {{ nameserver = ["{nameserver}"]; timeout = 1s; retransmits = 1; }}
disable_hyperscan = {no_hyperscan};
enable_test_patterns = true;
local_addrs = [];
""",
    "fuzzy_check.conf": "enabled = false;\n",
    "rbl.conf": "enabled = false;\n",
    "rspamd_update.conf": "enabled = false;\n",
    "greylist.conf": "enabled = false;\n",
    "ratelimit.conf": "enabled = false;\n",
    "neural.conf": "enabled = false;\n",
    "history_redis.conf": "enabled = false;\n",
    "reputation.conf": "enabled = false;\n",
    "asn.conf": "enabled = false;\n",
    "classifier-bayes.conf": "min_learns = {min_learns};\n",
}


# Rspamd's host checks that need the SMTP envelope or working DNS: off to compare content
# classification on corpora, which have neither (every message would score the same for them).
_RSPAMD_NO_HOST_CHECKS = ("helo_enabled = false; hostname_enabled = false; from_enabled = false;\n"
                          "rcpt_enabled = false; url_enabled = false;\n")


@contextmanager
def running_rspamd(*, redis: RedisDaemon | None = None, nameserver: str = "",
                   hyperscan: bool = False, min_learns: int = 200,
                   host_checks: bool = True) -> Iterator[RspamdDaemon]:
    """Rspamd with a normal worker and a controller; Bayes learning needs `redis`.

    `nameserver` (`127.0.0.1:PORT`, a tests.support.dns_server.DnsServer) answers Rspamd's
    DNS; by default an empty one does, so every lookup fails at once with NXDOMAIN.
    `host_checks=False` turns off the checks on the sending host (`_RSPAMD_NO_HOST_CHECKS`)."""
    with _workdir("rspamd") as root, _nameserver(nameserver) as dns_address:
        normal_port, controller_port = free_port(), free_port()
        values = {"normal_port": normal_port, "controller_port": controller_port,
                  "password": CONTROLLER_PASSWORD, "nameserver": dns_address,
                  "no_hyperscan": "false" if hyperscan else "true", "min_learns": min_learns}
        _write_rspamd_config(root, values, redis)
        if not host_checks:
            (root / "local" / "local.d" / "hfilter.conf").write_text(_RSPAMD_NO_HOST_CHECKS)
        argv = [str(_which("rspamd")), "--no-fork", "--config", str(root / "rspamd.conf"),
                f"--var=LOCAL_CONFDIR={root / 'local'}", f"--var=DBDIR={root / 'db'}",
                f"--var=RUNDIR={root / 'run'}", f"--var=LOGDIR={root / 'log'}"]
        if _drops_to(RSPAMD_USER):
            argv += ["-u", RSPAMD_USER, "-g", RSPAMD_USER]
        elif os.geteuid() == 0:
            argv.append("--insecure")
        log = root / "log" / "rspamd.log"
        with _daemon(argv, log, [normal_port, controller_port], name="rspamd"):
            yield RspamdDaemon(f"http://127.0.0.1:{normal_port}",
                               f"http://127.0.0.1:{controller_port}", CONTROLLER_PASSWORD, log,
                               redis)


@contextmanager
def _nameserver(address: str) -> Iterator[str]:
    if address:
        yield address
        return
    with DnsServer() as server:
        yield server.nameserver


def _write_rspamd_config(root: Path, values: dict[str, object], redis: RedisDaemon | None) -> None:
    local = root / "local" / "local.d"
    local.mkdir(parents=True)
    for sub in ("db", "run", "log"):
        (root / sub).mkdir()
    (root / "rspamd.conf").write_text(_RSPAMD_CONF.format(**values))
    for name, text in _RSPAMD_LOCAL.items():
        (local / name).write_text(text.format(**values))
    if redis is not None:
        (local / "redis.conf").write_text(f'servers = "{redis.host}:{redis.port}";\n')
    _give_to(root, RSPAMD_USER)


# --- spamd (SpamAssassin) ------------------------------------------------------------------------

_SPAMD_SITE_CONFIG = """\
use_bayes 1
bayes_auto_learn 0
bayes_path {bayes}/bayes
bayes_file_mode 0770
bayes_min_ham_num {min_learns}
bayes_min_spam_num {min_learns}
lock_method flock
"""


@contextmanager
def running_spamd(*, min_learns: int = 200) -> Iterator[SpamdDaemon]:
    """spamd with local tests only, TELL allowed, and its own Bayes database."""
    with _workdir("spamd") as root:
        site = root / "site"
        site.mkdir()
        (root / "bayes").mkdir()
        (site / "local.cf").write_text(_SPAMD_SITE_CONFIG.format(bayes=root / "bayes",
                                                                 min_learns=min_learns))
        for pre in Path("/etc/spamassassin").glob("*.pre"):
            shutil.copy(pre, site / pre.name)  # plugin loading lives in the .pre files
        _give_to(root, SPAMD_USER)
        port = free_port()
        argv = [str(_which("spamd")), "--listen", f"127.0.0.1:{port}",
                "--allowed-ips", "127.0.0.1", "--allow-tell", "--nouser-config", "--local",
                "--max-children", "2", "--siteconfigpath", str(site),
                "--pidfile", str(root / "spamd.pid"), "--syslog", "stderr"]
        if _drops_to(SPAMD_USER):
            argv += ["--username", SPAMD_USER, "--groupname", SPAMD_USER]
        log = root / "spamd.log"
        with _daemon(argv, log, [port], name="spamd"):
            yield SpamdDaemon("127.0.0.1", port, log, site)


# --- a daemon that answers one fixed reply ------------------------------------------------------


@contextmanager
def canned_server(reply: bytes | None) -> Iterator[int]:
    """A loopback TCP server (in a thread) that reads a request and sends `reply`, or with
    None never answers; yields its port. For the replies a healthy daemon never gives."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        held: list[socket.socket] = []
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError):
                _read_request(conn)
                if reply is not None:
                    conn.sendall(reply)
            if reply is None:
                held.append(conn)  # keep it open and silent
            else:
                conn.close()
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(5)
        listener.close()


def _read_request(conn: socket.socket) -> None:
    """Read until the client is done (end of file) or quiet for a moment."""
    conn.settimeout(0.3)
    with contextlib.suppress(TimeoutError):
        while conn.recv(65536):
            pass


# --- messages to feed them ------------------------------------------------------------------------

_GTUBE_BODY = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# Today, not a fixed day: the daemons score a Date that has gone far into the past (Rspamd's
# DATE_IN_PAST), which turned a clean message into a quarantined one a day later. One value
# per run, so that a message made twice is the same message.
_DATE = email.utils.formatdate(usegmt=True)


def message(subject: str, body: str, *, sender: str = "Ada Lovelace <ada@sender.test>",
            extra: str = "") -> bytes:
    message_id = hashlib.sha1(body.encode()).hexdigest()[:16]
    head = (f"From: {sender}\nTo: Owner <k3v9@alias.test>\nSubject: {subject}\n"
            f"Date: {_DATE}\nMessage-ID: <{message_id}@sender.test>\n"
            f"MIME-Version: 1.0\n{extra}")
    if "Content-Type" not in extra:
        head += "Content-Type: text/plain; charset=utf-8\n"
    return (head + "\n" + body).replace("\n", "\r\n").encode()


GTUBE = message("Test pattern", f"This is the GTUBE, the\n{_GTUBE_BODY}\ntest pattern.\n")
# Rspamd's "add header" variant, which Mailcloak quarantines (with test patterns enabled).
GTUBE_QUARANTINE = message("Test pattern", f"Quarantine test:\n{'Y' + _GTUBE_BODY[1:]}\n")


def ham() -> bytes:
    return message("Minutes of Tuesday's meeting", (
        "Hi all,\n\nthanks for coming on Tuesday. As agreed, Grace will look at the build\n"
        "failures on the older compilers, and I will write up the notes on the new release\n"
        "schedule before the end of the week. The next meeting is on the 12th, same room.\n\n"
        "If I missed anything, please reply to this message and I will add it.\n\nAda\n"))


def spammy() -> bytes:
    html = ("<html><body><p><b>CONGRATULATIONS!!!</b> You have been selected to receive a "
            "<font color=red>FREE</font> prize of $1,000,000 USD. Act now, this offer expires "
            "today! Click <a href=\"http://198.51.100.7/claim?id=1\">here</a> to claim your "
            "money, 100% guaranteed, no risk, cash bonus.</p></body></html>\n")
    return message("CONGRATULATIONS YOU ARE A WINNER!!! $$$", html,
                   sender="Lottery Board <winner@prizes.test>",
                   extra="Content-Type: text/html; charset=utf-8\n")
