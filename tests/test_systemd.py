"""Running under systemd: socket activation (a real listening socket passed as fd 3 to a
real ``tlspolicy serve socketmap`` child, queried with Debian's ``postmap``), readiness
notification received on a datagram socket the test binds, and SO_REUSEPORT with two
real server processes on one port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postfix_support import postmap_config_dir, postmap_query, requires_postmap
from tlspolicy.postfix.netstring import encode_netstring
from tlspolicy.servers.systemd import SystemdError, listen_sockets, notify

pytestmark = pytest.mark.timeout(120)

REQUIRED = '[global]\ntls = "required"\n'          # answers "encrypt ..."
OPPORTUNISTIC = '[global]\ntls = "ifavailable"\n'  # answers "may ..."

_SERVE = """
import sys
from tlspolicy.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

# What systemd does before exec: the socket on fd 3, LISTEN_PID = the pid that execs.
_ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "tlspolicy.socket"
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], *sys.argv[3:]])
"""


def _config(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _spawn(args: list[str], *, env: dict[str, str] | None = None,
           pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            pass_fds=pass_fds,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _wait_listening(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("listening on "):
            return line.strip().removeprefix("listening on ")
    process.kill()
    _out, err = process.communicate(timeout=10)
    pytest.fail(f"server did not start: {err}")


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)
        raise
    assert process.returncode == 0, err
    return err


def _ask(address: tuple[str, int] | str, key: str, family: int = socket.AF_INET) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(address)
        sock.sendall(encode_netstring(f"default {key}".encode()))
        data = b""
        while not data.endswith(b","):
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    return data.partition(b":")[2][:-1].decode()


@pytest.fixture
def postmap_dir(tmp_path: Path) -> Path:
    return postmap_config_dir(tmp_path / "postmap")


def _activated(listener: socket.socket, *serve_args: str,
               env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    fd = listener.fileno()
    return _spawn([sys.executable, "-c", _ACTIVATE, str(fd), _SERVE, "serve", "socketmap",
                   *serve_args], env=env, pass_fds=(fd,))


# ------------------------------------------------------------------ socket activation


@requires_postmap
def test_socket_activation_tcp_answers_postmap(tmp_path: Path, postmap_dir: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    process = _activated(listener, "--config", str(_config(tmp_path, REQUIRED)))
    listener.close()  # the child holds it now, as systemd would
    try:
        assert _wait_listening(process) == f"127.0.0.1:{port}"
        result = postmap_query(postmap_dir, f"socketmap:inet:127.0.0.1:{port}:default",
                               "example.com")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("encrypt")
    finally:
        _stop(process)


@requires_postmap
def test_socket_activation_unix_answers_postmap(tmp_path: Path, postmap_dir: Path) -> None:
    path = tmp_path / "tlspolicy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    process = _activated(listener, "--config", str(_config(tmp_path, REQUIRED)))
    listener.close()
    try:
        assert _wait_listening(process) == f"unix:{path}"
        result = postmap_query(postmap_dir, f"socketmap:unix:{path}:default", "example.com")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("encrypt")
    finally:
        _stop(process)
    # The socket file belongs to the socket unit: the server leaves it in place.
    assert path.exists()


def test_socket_activation_refuses_a_remote_socket_and_listen_twice(tmp_path: Path) -> None:
    config = str(_config(tmp_path, REQUIRED))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    try:
        process = _activated(listener, "--config", config)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 2
        assert "refusing to serve the passed socket" in err and "Traceback" not in err
        process = _activated(listener, "--listen", "127.0.0.1:0", "--config", config)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 2
        assert "--listen must not be given" in err
    finally:
        listener.close()


def test_listen_sockets_ignores_another_pid_and_checks_the_count() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert listen_sockets(env) == []
    assert env == {}  # unset, so no child inherits them
    with pytest.raises(SystemdError, match="LISTEN_FDS"):
        listen_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"})
    # Digits str.isdigit() takes and int() refuses: no activation, or no count.
    assert listen_sockets({"LISTEN_PID": "\u00b2", "LISTEN_FDS": "1"}) == []
    with pytest.raises(SystemdError, match="LISTEN_FDS"):
        listen_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "\u00b2"})


def test_a_passed_descriptor_that_is_not_a_listening_socket_is_refused(tmp_path: Path) -> None:
    # A connected socket where systemd would pass a listening one, in a child started as
    # systemd starts one.  Never in this process: descriptor 3 here belongs to the test
    # runner (pytest-xdist's channel to its controller), and swapping it even for a
    # moment can end that channel.
    a, b = socket.socketpair()
    try:
        process = _spawn([sys.executable, "-c", _ACTIVATE, str(a.fileno()), _SERVE, "serve",
                          "socketmap", "--config", str(_config(tmp_path, REQUIRED))],
                         pass_fds=(a.fileno(),))
        _out, err = process.communicate(timeout=30)
    finally:
        a.close()
        b.close()
    assert process.returncode == 2, err
    assert "file descriptor 3 passed by systemd is not a listening stream socket" in err, err
    assert "Traceback" not in err, err


def test_no_listen_without_activation_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _SERVE, "serve", "socketmap", "--config",
                             str(_config(tmp_path, REQUIRED))],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--listen is required" in result.stderr


# --------------------------------------------------------------------- sd_notify


def _notify_socket(where: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(where)
    sock.settimeout(20)
    return sock


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_then_stopping_are_notified(tmp_path: Path, abstract: bool) -> None:
    name = f"tlspolicy-test-{os.getpid()}-{time.monotonic_ns()}"
    where = "@" + name if abstract else str(tmp_path / "notify.sock")
    receiver = _notify_socket("\0" + name if abstract else where)
    process = _spawn([sys.executable, "-c", _SERVE, "serve", "socketmap", "--listen",
                      "127.0.0.1:0", "--config", str(_config(tmp_path, REQUIRED))],
                     env={"NOTIFY_SOCKET": where})
    try:
        address = _wait_listening(process)
        ready = receiver.recv(4096).decode().split("\n")
        assert ready[0] == "READY=1"
        assert f"STATUS=listening on {address}" in ready
        assert f"MAINPID={process.pid}" in ready
        process.send_signal(signal.SIGTERM)
        assert receiver.recv(4096).decode() == "STOPPING=1"
        # One SIGTERM only, as systemd sends: wait for the exit it started.
        _out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            _stop(process)
        receiver.close()


def test_notify_without_a_socket_does_nothing() -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify.sock"}) is False


# ------------------------------------------------------------------- SO_REUSEPORT


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[str]]]]:
    from postfix_support import free_port

    port = free_port()
    processes = []
    try:
        for name, text in (("a.toml", REQUIRED), ("b.toml", OPPORTUNISTIC)):
            process = _spawn([sys.executable, "-c", _SERVE, "serve", "socketmap", "--listen",
                              f"127.0.0.1:{port}", "--reuse-port", "--config",
                              str(_config(tmp_path, text, name))])
            processes.append(process)
            assert _wait_listening(process) == f"127.0.0.1:{port}"
        yield port, processes
    finally:
        for process in processes:
            if process.poll() is None:
                _stop(process)


def test_two_processes_with_reuse_port_both_answer(
        two_servers: tuple[int, list[subprocess.Popen[str]]]) -> None:
    port, processes = two_servers
    # Each new connection goes to one of the two (the kernel hashes the 4-tuple); with
    # different policies the answers show which process served it.
    levels = {_ask(("127.0.0.1", port), "example.com").split(" ")[1] for _ in range(200)}
    assert levels == {"encrypt", "may"}
    # One process stopping (a rolling restart) leaves the port served by the other.
    _stop(processes[0])
    levels = {_ask(("127.0.0.1", port), "example.com").split(" ")[1] for _ in range(50)}
    assert levels == {"may"}


def test_without_reuse_port_the_second_process_is_refused(tmp_path: Path) -> None:
    from postfix_support import free_port

    port = free_port()
    config = str(_config(tmp_path, REQUIRED))
    first = _spawn([sys.executable, "-c", _SERVE, "serve", "socketmap", "--listen",
                    f"127.0.0.1:{port}", "--reuse-port", "--config", config])
    try:
        _wait_listening(first)
        second = subprocess.run([sys.executable, "-c", _SERVE, "serve", "socketmap", "--listen",
                                 f"127.0.0.1:{port}", "--config", config],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert "in use" in second.stderr
    finally:
        _stop(first)


def test_reuse_port_with_a_unix_socket_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _SERVE, "serve", "socketmap", "--listen",
                             f"unix:{tmp_path / 's.sock'}", "--reuse-port", "--config",
                             str(_config(tmp_path, REQUIRED))],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--reuse-port applies to --listen HOST:PORT only" in result.stderr


@requires_postmap
def test_systemd_socket_activate_passes_its_socket(tmp_path: Path, postmap_dir: Path) -> None:
    """systemd's own socket-activation tool (the protocol a .socket unit uses) binds the
    port, then execs the real command with LISTEN_FDS; postmap queries it."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    from postfix_support import free_port

    port = free_port()
    activator = subprocess.Popen(
        [tool, "-l", f"127.0.0.1:{port}", "-E", "PYTHONUNBUFFERED=1", sys.executable, "-c",
         _SERVE, "serve", "socketmap", "--config", str(_config(tmp_path, REQUIRED))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            # The tool binds, then execs the server: a connection is queued by the kernel
            # as soon as the port is bound, and the server meets it as a client that left.
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        result = postmap_query(postmap_dir, f"socketmap:inet:127.0.0.1:{port}:default",
                               "example.com")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("encrypt")
        assert _wait_listening(activator) == f"127.0.0.1:{port}"
    finally:
        _stop(activator)


def test_documented_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    page = (Path(__file__).parent.parent / "docs" / "daemon.md").read_text()
    units: dict[str, str] = {}
    for block in re.findall(r"```ini\n(.*?)```", page, flags=re.S):
        first, _, _rest = block.partition("\n")
        match = re.fullmatch(r"# /etc/systemd/system/(\S+)", first)
        if match:
            units[match.group(1)] = block
    assert set(units) == {"tlspolicy.socket", "tlspolicy.service"}
    command = shutil.which("tlspolicy") or sys.executable
    paths = []
    for name, text in units.items():
        # The documented install path may not exist here; verify checks it is executable.
        path = tmp_path / name
        path.write_text(text.replace("/usr/local/bin/tlspolicy", command))
        paths.append(str(path))
    result = subprocess.run([tool, "verify", *paths], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert not complaints, complaints
