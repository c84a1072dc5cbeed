import pytest

from console.accounts import KEY, AccountStore, SignIn

PASSWORD = "a long enough password"


@pytest.fixture
def accounts(redis) -> AccountStore:
    return AccountStore(redis, lockout_failures=3, lockout_s=600)


def test_a_password_is_kept_only_as_an_argon2id_hash(accounts, redis):
    accounts.add("alice", "validator", PASSWORD)
    raw = redis.hget(KEY, "alice").decode()
    assert "$argon2id$" in raw and PASSWORD not in raw


def test_the_right_password_signs_in(accounts):
    accounts.add("alice", "operator", PASSWORD)
    result, account = accounts.authenticate("alice", PASSWORD)
    assert result is SignIn.OK and account.role == "operator"


def test_a_wrong_password_and_an_unknown_name_answer_alike(accounts):
    accounts.add("alice", "validator", PASSWORD)
    assert accounts.authenticate("alice", "wrong password!!") == (SignIn.REFUSED, None)
    assert accounts.authenticate("nobody", PASSWORD) == (SignIn.REFUSED, None)


def test_repeated_failures_lock_even_the_right_password_out(accounts):
    accounts.add("alice", "validator", PASSWORD)
    assert accounts.authenticate("alice", "wrong 1 password")[0] is SignIn.REFUSED
    assert accounts.authenticate("alice", "wrong 2 password")[0] is SignIn.REFUSED
    assert accounts.authenticate("alice", "wrong 3 password")[0] is SignIn.LOCKED
    assert accounts.authenticate("alice", PASSWORD)[0] is SignIn.LOCKED


def test_an_unknown_name_locks_like_a_known_one(accounts):
    results = [accounts.authenticate("ghost", "whatever pass")[0] for _ in range(3)]
    assert results[-1] is SignIn.LOCKED


def test_a_success_clears_the_failure_count(accounts):
    accounts.add("alice", "validator", PASSWORD)
    accounts.authenticate("alice", "wrong 1 password")
    accounts.authenticate("alice", "wrong 2 password")
    assert accounts.authenticate("alice", PASSWORD)[0] is SignIn.OK
    assert accounts.authenticate("alice", "wrong 3 password")[0] is SignIn.REFUSED


def test_reset_sets_a_new_password_and_lifts_the_lock(accounts):
    accounts.add("alice", "validator", PASSWORD)
    for i in range(3):
        accounts.authenticate("alice", f"wrong {i} password")
    assert accounts.reset("alice", "another long password")
    assert accounts.authenticate("alice", PASSWORD)[0] is SignIn.REFUSED
    assert accounts.authenticate("alice", "another long password")[0] is SignIn.OK


def test_a_disabled_account_is_refused_with_its_right_password(accounts):
    accounts.add("alice", "validator", PASSWORD)
    accounts.set_enabled("alice", False)
    assert accounts.authenticate("alice", PASSWORD) == (SignIn.REFUSED, None)


@pytest.mark.parametrize(
    "name,role,password",
    [("alice", "validator", "short"), ("Alice Smith", "validator", PASSWORD), ("bob", "spoke", PASSWORD)],
)
def test_bad_accounts_are_refused(accounts, name, role, password):
    with pytest.raises(ValueError):
        accounts.add(name, role, password)


def test_adding_a_name_twice_is_refused(accounts):
    accounts.add("alice", "validator", PASSWORD)
    with pytest.raises(ValueError, match="exists"):
        accounts.add("alice", "admin", PASSWORD)
    assert accounts.get("alice").role == "validator"
