import pickle

from adapter.connector import CheckBuilder, ConnectorConfigError, SourceFault, redact


def test_redact_removes_bsns_and_pass_numbers_from_source_text():
    text = "BSN 999993653 onbekend voor pas 6064366011000001 (gemeente 0599)"
    assert redact(text) == "BSN [number removed] onbekend voor pas [number removed] (gemeente 0599)"


def test_connector_errors_say_what_where_and_what_next_and_pickle():
    error = SourceFault("gws", "the service answered a SOAP Fault (code soap:Client)", "Check the arguments")
    assert str(error) == "source 'gws': the service answered a SOAP Fault (code soap:Client). Check the arguments"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    config_error = ConnectorConfigError("demo", ["path: Field required", "delimter: unknown option"])
    assert "2 problem(s)" in str(config_error) and "delimter" in str(config_error)


def test_check_steps_after_a_failure_are_marked_skipped():
    check = CheckBuilder("demo", "csv")
    check.passed("settings", "options are valid")
    check.failed_with("connection", "the export does not exist")
    result = check.result()
    assert not result.ok
    assert [(step.name, step.ok) for step in result.steps] == [
        ("settings", True), ("connection", False), ("credentials", None)]
    assert "[FAIL] connection: the export does not exist" in result.render()
    only_skipped = CheckBuilder("demo", "csv").result()
    assert not only_skipped.ok
