"""The loopback sshd the ssh self-tests stand on: it logs in through its ssh_config and through testinfra's
ssh backend, and the failures an operator meets (key refused, host silent, command hanging) are clear and
bounded in time."""
from __future__ import annotations

import socket
import subprocess

import pytest
import testinfra

from sshd import LoopbackSSHD, SSHDMissing, free_port, keygen, start_or_skip, timed


def ssh(config, alias, command, timeout=15):
    return subprocess.run(["ssh", "-F", str(config), alias, command], capture_output=True, text=True,
                          timeout=timeout)


def test_ssh_through_the_config_runs_a_command(sshd):
    done = ssh(sshd.ssh_config, sshd.alias, "id -un; echo $SSH_CONNECTION")
    assert done.returncode == 0, done.stderr
    user, connection = done.stdout.splitlines()
    assert user == sshd.user
    assert connection.endswith(f"127.0.0.1 {sshd.port}")  # the loopback server, not the machine's own sshd


def test_testinfra_ssh_backend(sshd):
    host = testinfra.get_host(sshd.host_spec)
    assert host.backend.NAME == "ssh"
    assert host.run("echo hi").stdout == "hi\n"
    assert host.check_output("id -un") == sshd.user
    keys = host.file(str(sshd.folder / "authorized_keys"))
    assert keys.exists and sshd.client_key.with_suffix(".pub").read_text().split()[1] in keys.content_string
    assert host.process.get(pid=sshd.process.pid).comm == "sshd"
    # The same host given the ssh_config as an argument instead of in the spec.
    other = testinfra.get_host(f"ssh://{sshd.alias}", ssh_config=str(sshd.ssh_config))
    assert other.check_output("echo $SSH_CONNECTION").endswith(str(sshd.port))


def test_a_key_the_host_refuses_fails_fast(sshd):
    unknown = keygen(sshd.folder / "unknown_ed25519_key")
    config = sshd.write_ssh_config("ssh_config_unknown_key", identity=unknown)
    done, took = timed(lambda: ssh(config, sshd.alias, "true"))
    assert done.returncode == 255 and "Permission denied (publickey)" in done.stderr, done.stderr
    assert took < 10
    error, took = timed(lambda: testinfra.get_host(sshd.spec(config)).run("true"))
    assert isinstance(error, RuntimeError) and "Permission denied (publickey)" in str(error)
    assert took < 10


def test_a_port_nothing_listens_on_is_refused_at_once(sshd):
    config = sshd.write_ssh_config("ssh_config_closed", port=free_port())
    error, took = timed(lambda: testinfra.get_host(sshd.spec(config)).run("true"))
    assert isinstance(error, RuntimeError) and "Connection refused" in str(error)
    assert took < 8  # the 2 s timeout, and slack for a busy 2-core machine


def test_a_host_that_does_not_answer_fails_within_the_connect_timeout(sshd):
    # A port that takes the TCP connection and never says a word, like a hung or firewalled host:
    # ssh's ConnectTimeout covers the banner exchange too.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        config = sshd.write_ssh_config("ssh_config_silent", port=silent.getsockname()[1])
        error, took = timed(lambda: testinfra.get_host(sshd.spec(config, timeout=2)).run("true"))
    assert isinstance(error, RuntimeError) and "timed out during banner exchange" in str(error), error
    assert 1.5 < took < 12


def test_a_command_that_hangs_is_bounded(sshd):
    # On the host: coreutils' timeout ends the command (exit 124); this is what stops it there.
    result, took = timed(lambda: testinfra.get_host(sshd.host_spec).run("timeout 1 sleep 30"))
    assert result.rc == 124 and took < 10
    # Here: a timeout on the ssh client only gives the run back; the remote command would run on without the
    # remote timeout (sshd does not signal a command without a terminal when the client goes away).
    error, took = timed(lambda: ssh(sshd.ssh_config, sshd.alias, "timeout 3 sleep 30", timeout=1))
    assert isinstance(error, subprocess.TimeoutExpired) and took < 8


def test_stop_removes_everything():
    server = start_or_skip(LoopbackSSHD())
    with server:
        folder, port = server.folder, server.port
        assert ssh(server.ssh_config, server.alias, "true").returncode == 0
    assert not folder.exists() and server.process is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_missing_sshd_skips_here_and_fails_in_ci(monkeypatch):
    absent = "/nonexistent/sbin/sshd"
    with pytest.raises(SSHDMissing, match="openssh-server.*.ci/run must install it"):
        LoopbackSSHD(sshd=absent).start()
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="openssh-server"):
        start_or_skip(LoopbackSSHD(sshd=absent))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs sshd: .*openssh-server"):
        start_or_skip(LoopbackSSHD(sshd=absent))
