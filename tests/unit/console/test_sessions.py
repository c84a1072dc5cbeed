import time

from console.sessions import Sessions, cookie_options


def test_every_start_is_a_new_id(redis):
    sessions = Sessions(redis, idle_s=60, max_s=600)
    a, _ = sessions.start("alice", "validator")
    b, _ = sessions.start("alice", "validator")
    assert a != b and len(a) >= 40


def test_a_session_resumes_with_its_person(redis):
    sessions = Sessions(redis, idle_s=60, max_s=600)
    sid, _ = sessions.start("alice", "admin")
    session = sessions.resume(sid)
    assert (session.username, session.role) == ("alice", "admin")


def test_an_idle_session_is_over(redis):
    sessions = Sessions(redis, idle_s=60, max_s=600)
    sid, _ = sessions.start("alice", "admin")
    assert sessions.resume(sid, now=time.time() + 61) is None
    assert sessions.resume(sid) is None  # and gone, not just refused once


def test_a_busy_session_still_ends_at_its_absolute_limit(redis):
    sessions = Sessions(redis, idle_s=60, max_s=120)
    sid, _ = sessions.start("alice", "admin")
    t = time.time()
    for step in (50, 100):
        assert sessions.resume(sid, now=t + step) is not None
    assert sessions.resume(sid, now=t + 121) is None


def test_sign_out_ends_it(redis):
    sessions = Sessions(redis, idle_s=60, max_s=600)
    sid, _ = sessions.start("alice", "admin")
    sessions.end(sid)
    assert sessions.resume(sid) is None


def test_an_unknown_or_absurd_cookie_is_no_session(redis):
    sessions = Sessions(redis, idle_s=60, max_s=600)
    assert sessions.resume(None) is None
    assert sessions.resume("x" * 5000) is None
    assert sessions.resume("made-up") is None


def test_the_csrf_token_must_match_exactly(redis):
    _, session = Sessions(redis, idle_s=60, max_s=600).start("alice", "admin")
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None)
    assert not session.csrf_ok("")
    assert not session.csrf_ok(session.csrf[:-1])


def test_cookies_are_http_only_secure_and_same_site_lax():
    options = cookie_options(None)
    assert (
        options["httponly"] and options["secure"] and options["samesite"] == "Lax" and options["path"] == "/"
    )
