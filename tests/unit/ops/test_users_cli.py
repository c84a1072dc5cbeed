import io
import sys

import pytest

from console.accounts import AccountStore, SignIn
from ops import cli, users_cli
from tests.unit.console.conftest import ConsoleRedis

PASSWORD = "a long enough password"


def run(argv, redis, stdin="", monkeypatch=None):
    parser_args = None

    def capture(args, redis_=None):
        nonlocal parser_args
        parser_args = args
        return 0

    monkeypatch.setattr(users_cli, "run", capture)
    cli.main(argv)
    monkeypatch.undo()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return users_cli.run(parser_args, redis)


@pytest.fixture
def redis():
    return ConsoleRedis()


def test_add_disable_enable_reset_list(redis, monkeypatch, capsys):
    assert (
        run(
            ["users", "add", "alice", "--role", "operator", "--password-stdin"],
            redis,
            PASSWORD + "\n",
            monkeypatch,
        )
        == 0
    )
    store = AccountStore(redis)
    assert store.authenticate("alice", PASSWORD)[0] is SignIn.OK
    assert run(["users", "disable", "alice"], redis, monkeypatch=monkeypatch) == 0
    assert store.authenticate("alice", PASSWORD)[0] is SignIn.REFUSED
    assert run(["users", "enable", "alice"], redis, monkeypatch=monkeypatch) == 0
    assert (
        run(["users", "reset", "alice", "--password-stdin"], redis, "a new long password\n", monkeypatch) == 0
    )
    assert store.authenticate("alice", "a new long password")[0] is SignIn.OK
    capsys.readouterr()
    assert run(["users", "list"], redis, monkeypatch=monkeypatch) == 0
    assert "alice" in capsys.readouterr().out


def test_a_short_password_is_refused_with_exit_2(redis, monkeypatch, capsys):
    assert (
        run(["users", "add", "bob", "--role", "admin", "--password-stdin"], redis, "short\n", monkeypatch)
        == 2
    )
    assert "at least" in capsys.readouterr().err
    assert AccountStore(redis).get("bob") is None


def test_an_unknown_user_is_exit_1(redis, monkeypatch):
    assert run(["users", "disable", "nobody"], redis, monkeypatch=monkeypatch) == 1
