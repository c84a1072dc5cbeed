import random

from proxy.rewrite import stream_replace

OLD = b"http://127.0.0.1:8090/fhir"
NEW = b"https://hub.example.nhs.uk/fhir"


def test_replaces_an_occurrence_split_across_chunks():
    chunks = [b'{"url":"http://127.0.0', b".1:8090/fh", b'ir/Patient/1"}']
    assert (
        b"".join(stream_replace(chunks, OLD, NEW)) == b'{"url":"https://hub.example.nhs.uk/fhir/Patient/1"}'
    )


def test_leaves_a_near_miss_alone():
    chunks = [b"http://127.0.0.1:8090/fh", b"x"]
    assert b"".join(stream_replace(chunks, OLD, NEW)) == b"http://127.0.0.1:8090/fhx"


def test_matches_plain_replace_for_any_chunking():
    rng = random.Random(7)
    pieces = [OLD, b"xx", b"http", b"/", b"h", OLD[:-3], b'{"a":1}']
    for _ in range(500):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 8))))
        chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert b"".join(stream_replace(chunks, OLD, NEW)) == data.replace(OLD, NEW)


def test_holds_back_no_more_than_a_partial_match():
    out = list(stream_replace([b"abc" * 1000], OLD, NEW))
    assert out == [b"abc" * 1000]
