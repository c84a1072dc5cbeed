from proxy.errors import FhirError, rebase_expression


def test_expression_moves_under_the_bundle_entry():
    assert rebase_expression("Task.status", "Bundle.entry[2].resource") == "Bundle.entry[2].resource.status"


def test_bare_root_becomes_the_entry_itself():
    assert rebase_expression("Task", "Bundle.entry[0].resource") == "Bundle.entry[0].resource"


def test_error_renders_an_operation_outcome_with_status_code():
    oo = FhirError(413, "too big").to_resource()
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0] == {"severity": "error", "code": "too-costly", "diagnostics": "too big"}
