import pytest
import simplejson

from proxy import json_limits
from proxy.errors import FhirError


def refused(raw: bytes) -> FhirError:
    with pytest.raises(FhirError) as e:
        json_limits.loads(raw)
    assert e.value.status == 400
    return e.value


def test_a_resource_within_the_limits_parses_with_exact_decimals():
    value = json_limits.loads(b'{"resourceType":"Observation","valueQuantity":{"value":1.50}}')
    assert str(value["valueQuantity"]["value"]) == "1.50"


def test_nesting_at_the_limit_passes():
    depth = json_limits.MAX_DEPTH - 1  # inside the resource's own object
    json_limits.loads(b'{"x":' + b"[" * depth + b"]" * depth + b"}")


def test_nesting_past_the_limit_is_refused_at_the_element():
    err = refused(b'{"resourceType":"Patient","extension":' + b"[" * 150 + b"]" * 150 + b"}")
    assert "nested" in err.diagnostics
    assert err.expression[0].startswith("Patient.extension[0][0]")


def test_nesting_past_pythons_recursion_limit_is_refused_not_crashed():
    err = refused(b"[" * 100_000 + b"]" * 100_000)
    assert "nested" in err.diagnostics


@pytest.mark.parametrize("number", [b"9" * 5000, b"1" + b"0" * 100])
def test_an_overlong_integer_is_refused(number):
    assert "longer than" in refused(b'{"v":' + number + b"}").diagnostics


@pytest.mark.parametrize("number", [b"1e999999999", b"1e400", b"-1.8e308", b"1e-1001", b"0e5000"])
def test_a_number_out_of_range_is_refused(number):
    assert "out of range" in refused(b'{"v":' + number + b"}").diagnostics


@pytest.mark.parametrize("number", [b"1e308", b"-1e-300", b"123456789012345678901234567890", b"0.1"])
def test_numbers_the_store_takes_pass(number):
    json_limits.loads(b'{"v":' + number + b"}")


def test_nan_is_not_json():
    with pytest.raises(simplejson.JSONDecodeError):
        json_limits.loads(b'{"v":NaN}')


@pytest.mark.parametrize("text", [b'"\\ud800"', b'"x\\udc00"', b'"\\uDBFF"'])
def test_a_lone_surrogate_is_refused_at_the_element(text):
    err = refused(b'{"resourceType":"Patient","name":[{"family":' + text + b"}]}")
    assert "surrogate" in err.diagnostics and err.expression == ["Patient.name[0].family"]


def test_a_lone_surrogate_in_a_key_is_refused():
    assert "surrogate" in refused(b'{"\\ud800":1}').diagnostics


def test_a_surrogate_pair_is_a_character_and_passes():
    assert json_limits.loads(b'{"v":"\\ud83d\\ude00"}')["v"] == "\U0001f600"


def test_an_empty_key_is_refused_at_its_object():
    err = refused(b'{"resourceType":"Patient","name":[{"":1}]}')
    assert "empty key" in err.diagnostics and err.expression == ["Patient.name[0]"]


def test_an_empty_key_at_the_root_points_at_the_resource():
    assert refused(b'{"resourceType":"Patient","":1}').expression == ["Patient"]


def test_invalid_utf8_is_left_to_the_caller_to_word():
    with pytest.raises(UnicodeDecodeError):
        json_limits.loads(b'{"v":"\xff"}')
