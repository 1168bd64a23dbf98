"""Log lines stay lines: nothing a request carries can start a forged one."""

from __future__ import annotations

import logging

from chatapp.logs import install_one_line_records, one_line


def test_control_characters_and_line_separators_are_escaped():
    assert one_line("a\nb\rc\x1b[31md\u2028e") == "a\\nb\\rc\\x1b[31md\\u2028e"


def test_every_record_is_one_line_whoever_logs_it(caplog):
    install_one_line_records()
    with caplog.at_level(logging.INFO):
        logging.getLogger("somebody.else").info("user %s", "eve\n2026-01-01 INFO forged")
    [record] = caplog.records
    assert record.getMessage() == "user eve\\n2026-01-01 INFO forged"


async def test_request_path_with_a_newline_does_not_forge_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = await client.post(
            "/register/%0A2026-12-02%20INFO%20chatapp:%20forged", data={"csrf_token": "x"}
        )
    assert response.status == 403
    messages = [r.getMessage() for r in caplog.records]
    assert any("CSRF check failed" in m and "\\n2026-12-02 INFO" in m for m in messages)
    assert not any("\n" in m for m in messages)
    assert "\n2026-12-02 INFO chatapp: forged" not in caplog.text
